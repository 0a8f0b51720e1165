/// Appends JSON tokens to a byte array; commas between members are inserted automatically.
///
/// Used for the messages written on every job (Mio's request body, the job's result, a file's rejects), where a
/// `JSONEncoder` would cost more than the rest of the encoding.
public struct JSONWriter: Sendable {
    /// The JSON text written so far (UTF-8).
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    /// Creates an empty writer.
    /// - Parameter capacity: Bytes to reserve up front (the expected size of the text).
    public init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    /// Writes `{`.
    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    /// Writes `}`.
    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// Writes a member name and its colon.
    /// - Parameter name: The name, written as it is: it must need no escape.
    public mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        bytes.append(contentsOf: "\":".utf8)
        needsComma = false
    }

    /// Writes a string value, escaped (``JSONString/appendQuoted(_:to:)``).
    /// - Parameter value: The string.
    public mutating func string(_ value: String) {
        separate()
        JSONString.appendQuoted(value, to: &bytes)
        needsComma = true
    }

    /// Writes an integer value.
    /// - Parameter value: The integer.
    public mutating func integer(_ value: Int64) {
        separate()
        bytes.append(contentsOf: String(value).utf8)
        needsComma = true
    }

    /// Writes JSON text as it is (`null`, `true`, ...).
    /// - Parameter text: One valid JSON value.
    public mutating func raw(_ text: StaticString) {
        separate()
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        needsComma = true
    }

    /// Writes JSON text as it is (a value received and validated earlier, echoed byte for byte).
    /// - Parameter json: One valid JSON value, UTF-8.
    public mutating func raw(_ json: [UInt8]) {
        separate()
        bytes.append(contentsOf: json)
        needsComma = true
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }
}
