/// Why an input message is not a valid ``Job``: a stable machine code and a message naming the field.
///
/// The message names fields and limits only; it never quotes the input, so it is safe for logs and for the
/// dead-letter headers.
public struct InvalidJob: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable reason. Its ``description`` is the snake_case code used in dead-letter headers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case notUTF8 = "not_utf8"
            case notJSON = "not_json"
            case notObject = "not_object"
            case missingField = "missing_field"
            case wrongType = "wrong_type"
            case emptyField = "empty_field"
            case fieldTooLarge = "field_too_large"
            case unknownOp = "unknown_op"
            case duplicateField = "duplicate_field"
            case messageTooLarge = "message_too_large"
            case resultRefused = "result_refused"
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The bytes are not valid UTF-8.
        public static let notUTF8 = Code(.notUTF8)
        /// The bytes are not one valid JSON value.
        public static let notJSON = Code(.notJSON)
        /// Valid JSON, but not an object.
        public static let notObject = Code(.notObject)
        /// A required field (`id`, `userId`, `query` for op `context`) is absent.
        public static let missingField = Code(.missingField)
        /// A field has the wrong JSON type.
        public static let wrongType = Code(.wrongType)
        /// A required string field is empty.
        public static let emptyField = Code(.emptyField)
        /// A field is over its size limit.
        public static let fieldTooLarge = Code(.fieldTooLarge)
        /// `op` is a string other than `context` or `summary`.
        public static let unknownOp = Code(.unknownOp)
        /// A field of the job (`id`, `userId`, `query`, `op`, `metadata`) appears more than once in the object.
        public static let duplicateField = Code(.duplicateField)

        /// The whole message is larger than ``Job/maxMessageBytes``: its value was not read (nor kept).
        public static let messageTooLarge = Code(.messageTooLarge)
        /// A valid job whose result the output refused for what it is (for Kafka: its size, or an invalid record):
        /// the job goes to the dead-letter destination instead, so that its partition goes on.
        public static let resultRefused = Code(.resultRefused)

        /// Every code, for documentation and tests.
        public static let allCases: [Code] = [
            .notUTF8, .notJSON, .notObject, .missingField, .wrongType, .emptyField, .fieldTooLarge, .unknownOp,
            .duplicateField,
            .messageTooLarge, .resultRefused,
        ]

        /// The snake_case code, e.g. `missing_field`.
        public var description: String { value.rawValue }
    }

    /// The reason.
    public var code: Code
    /// The field concerned (`id`, `userId`, `query`, `op`, `metadata`), or `nil` for the whole message.
    public var field: String?
    /// A human-readable explanation naming the field.
    public var message: String

    /// Creates a reason.
    /// - Parameters:
    ///   - code: The machine code.
    ///   - field: The field concerned, if any.
    ///   - message: A human-readable explanation; must not quote the input.
    public init(code: Code, field: String? = nil, message: String) {
        self.code = code
        self.field = field
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    /// The reason of a message larger than ``Job/maxMessageBytes``.
    /// - Parameter bytes: The message's size.
    /// - Returns: A ``Code/messageTooLarge`` reason giving the size and the limit.
    public static func messageTooLarge(bytes: Int) -> InvalidJob {
        InvalidJob(
            code: .messageTooLarge,
            message: "the message is \(bytes) bytes, over the limit of \(Job.maxMessageBytes) bytes for a job"
        )
    }
}
