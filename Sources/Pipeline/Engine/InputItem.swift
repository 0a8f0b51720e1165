/// A message header (Kafka) carried from an input item to its result or dead-letter copy.
public struct MessageHeader: Sendable, Hashable {
    /// The header name, e.g. `traceparent`.
    public var name: String
    /// The header value; `nil` for a header without a value.
    public var value: [UInt8]?

    /// Creates a header.
    /// - Parameters:
    ///   - name: The header name.
    ///   - value: The header value, if any.
    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }
}

/// One raw input message: the bytes of a job as read from Kafka or a file, not yet decoded.
public struct InputItem: Sendable {
    /// The message value (the job's JSON).
    public var value: [UInt8]
    /// The message key, if any (Kafka); the ordering key with ``SchedulingConfiguration/Ordering/key``.
    public var key: [UInt8]?
    /// The message headers.
    public var headers: [MessageHeader]
    /// Where the message was read from; identifies the item in the engine's events.
    public var source: JobSource

    /// Creates an input item.
    /// - Parameters:
    ///   - value: The message value.
    ///   - key: The message key, if any.
    ///   - headers: The message headers.
    ///   - source: Where the message was read from.
    public init(value: [UInt8], key: [UInt8]? = nil, headers: [MessageHeader] = [], source: JobSource) {
        self.value = value
        self.key = key
        self.headers = headers
        self.source = source
    }

    /// The value of the first header with this name.
    /// - Parameter name: The header name (compared exactly).
    /// - Returns: Its value, or `nil` if absent or valueless.
    public func header(_ name: String) -> [UInt8]? {
        headers.first { $0.name == name }?.value
    }
}
