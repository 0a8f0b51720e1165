/// A sink's delivery failure, classified by the sink, which knows its destination: what the engine does next
/// depends on ``Kind``. A sink may throw any other error too; that one is retried within
/// ``ProcessingEngine/Configuration/delivery`` and then stops the run.
public struct DeliveryFailure: Error, Sendable, CustomStringConvertible {
    /// What the failure means for the item and for the run.
    public enum Kind: String, Sendable, Hashable {
        /// The destination refused this message for what it is (its size, its content): sending it again cannot
        /// succeed, while other messages can. A result refused so sends its job to the dead-letter destination,
        /// with the reason, and the run goes on; a dead-letter copy refused so stops the run.
        case refused
        /// The destination cannot be reached, or is busy: the delivery is retried with backoff for as long as some
        /// delivery succeeded within ``ProcessingEngine/Configuration/maxOutage``; past it, the run stops.
        case unavailable
        /// Nothing can be delivered any more (for Kafka: a fatal producer error): the run stops at once.
        case fatal
    }

    /// What the failure means.
    public var kind: Kind
    /// A short machine code of the reason, e.g. `msg_size_too_large`, for dead-letter headers and metrics.
    public var code: String
    /// The sink's error; its description must not contain a token.
    public var underlying: any Error & Sendable

    /// Creates a classified failure.
    /// - Parameters:
    ///   - kind: What it means.
    ///   - code: A short machine code of the reason.
    ///   - underlying: The sink's error.
    public init(_ kind: Kind, code: String, underlying: any Error & Sendable) {
        self.kind = kind
        self.code = code
        self.underlying = underlying
    }

    /// The underlying error's description.
    public var description: String { String(describing: underlying) }
}
