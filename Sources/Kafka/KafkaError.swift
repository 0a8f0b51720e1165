/// An error from the Kafka module.
///
/// The `code` says what kind of operation failed (a short, stable string that serves as a metric label);
/// the rest carries context: librdkafka's error code and name, the property or topic involved, and whether
/// retrying the same operation can help.
public struct KafkaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case configuration
            case clientCreation
            case produce
            case delivery
            case commit
            case subscription
            case partitionControl
            case admin
            case mockCluster
            case shutdown
            case timeout
            case consumer
        }

        fileprivate let base: Base

        /// A configuration property is unknown or its value is invalid.
        public static let configuration = Code(base: .configuration)
        /// librdkafka could not create a client handle.
        public static let clientCreation = Code(base: .clientCreation)
        /// A message could not be enqueued for sending.
        public static let produce = Code(base: .produce)
        /// The broker did not acknowledge a message (the delivery report carried an error).
        public static let delivery = Code(base: .delivery)
        /// An offset commit failed.
        public static let commit = Code(base: .commit)
        /// Subscribing to topics failed.
        public static let subscription = Code(base: .subscription)
        /// Pausing, resuming or querying partitions failed.
        public static let partitionControl = Code(base: .partitionControl)
        /// An admin operation (such as creating a topic) failed.
        public static let admin = Code(base: .admin)
        /// An operation on the mock cluster failed.
        public static let mockCluster = Code(base: .mockCluster)
        /// The client is shutting down or was shut down.
        public static let shutdown = Code(base: .shutdown)
        /// An operation did not finish in time.
        public static let timeout = Code(base: .timeout)
        /// The consumer reported an error while polling.
        public static let consumer = Code(base: .consumer)

        public var description: String { base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable explanation, including librdkafka's own message where there is one.
    public var message: String
    /// librdkafka's numeric error code (its response error enum), when librdkafka reported one.
    public var rdKafkaErrorCode: Int32?
    /// librdkafka's symbolic error name (for example `MSG_SIZE_TOO_LARGE`), when there is one.
    public var rdKafkaErrorName: String?
    /// Whether retrying the same operation may succeed.
    public var isRetriable: Bool
    /// Whether the client is unusable after this error and must be recreated.
    public var isFatal: Bool
    /// Whether the error is about one message itself (`MSG_SIZE_TOO_LARGE`, `INVALID_RECORD`, record-level
    /// errors): sending that message again cannot succeed, while other messages can.
    public var refusesMessage: Bool

    /// Creates an error.
    public init(
        code: Code,
        message: String,
        rdKafkaErrorCode: Int32? = nil,
        rdKafkaErrorName: String? = nil,
        isRetriable: Bool = false,
        isFatal: Bool = false,
        refusesMessage: Bool = false
    ) {
        self.code = code
        self.message = message
        self.rdKafkaErrorCode = rdKafkaErrorCode
        self.rdKafkaErrorName = rdKafkaErrorName
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.refusesMessage = refusesMessage
    }

    public var description: String {
        var text = "KafkaError.\(code): \(message)"
        if let rdKafkaErrorName {
            text += " [\(rdKafkaErrorName)]"
        }
        if isFatal {
            text += " (fatal)"
        } else if isRetriable {
            text += " (retriable)"
        }
        return text
    }
}
