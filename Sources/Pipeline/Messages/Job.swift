import JSON

/// Where a job came from: a Kafka topic partition and offset, or a file and line number.
///
/// The processor never interprets it; it is carried from the input item to the job, the result sink and the
/// completion event so that the caller can commit the offset or report the line.
public struct JobSource: Hashable, Sendable, CustomStringConvertible {
    /// The partition (or file) the job was read from.
    public var partition: PartitionID
    /// The Kafka offset of the message, or the line number in a file.
    public var offset: Int64

    /// Creates a source position.
    /// - Parameters:
    ///   - partition: The partition (or file) the job was read from.
    ///   - offset: The Kafka offset, or the line number in a file.
    public init(partition: PartitionID, offset: Int64) {
        self.partition = partition
        self.offset = offset
    }

    /// `topic[partition]@offset`.
    public var description: String { "\(partition)@\(offset)" }
}

/// A Kafka topic partition, or a file (with partition 0) for file inputs.
public struct PartitionID: Hashable, Sendable, CustomStringConvertible {
    /// The topic name, or the file path.
    public var topic: String
    /// The partition number within the topic; 0 for a file.
    public var partition: Int32

    /// Creates a partition identifier.
    /// - Parameters:
    ///   - topic: The topic name, or the file path.
    ///   - partition: The partition number within the topic; 0 for a file.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// `topic[partition]`.
    public var description: String { "\(topic)[\(partition)]" }
}

/// A context request: the decoded, validated value of one input message.
///
/// Wire format (UTF-8 JSON, unknown fields ignored):
/// `{"id": "...", "userId": "...", "query": "...", "op": "context", "metadata": {...}}`.
/// See docs/messages.md and config/schemas/job.schema.json.
public struct Job: Sendable, Hashable {
    /// What the job asks Mio for.
    public enum Operation: String, Sendable, Hashable, CaseIterable {
        /// `getContext(query:)`: context for a query (the default).
        case context
        /// `getContextSummary()`: the user's context summary; no query.
        case summary
    }

    /// Largest `id` and `userId`, in UTF-8 bytes.
    public static let maxIdentifierBytes = 256
    /// Largest `query`, in UTF-8 bytes (16 KiB).
    public static let maxQueryBytes = 16 * 1024
    /// Largest `metadata`, in bytes of its JSON text (16 KiB).
    public static let maxMetadataBytes = 16 * 1024
    /// Largest input message, in bytes (256 KiB): far above the largest valid job (its fields at their limits,
    /// every character escaped). A transport does not read a larger message's value: it dead-letters it as
    /// ``InvalidJob/Code/messageTooLarge``.
    public static let maxMessageBytes = 256 * 1024

    /// The producer's job id, echoed in the result.
    public var id: String
    /// The user whose context is requested.
    public var userID: String
    /// What to ask Mio for.
    public var operation: Operation
    /// The query for ``Operation/context``; `nil` for ``Operation/summary``.
    public var query: String?
    /// The job's `metadata` object exactly as it was received, echoed back unchanged in the result.
    public var metadata: RawJSON?
    /// Where the job was read from, attached by the caller.
    public var source: JobSource?

    /// Creates a job from already validated values.
    /// - Parameters:
    ///   - id: The producer's job id.
    ///   - userID: The user whose context is requested.
    ///   - operation: What to ask Mio for.
    ///   - query: The query; required for ``Operation/context``.
    ///   - metadata: An object echoed back in the result.
    ///   - source: Where the job was read from.
    public init(
        id: String,
        userID: String,
        operation: Operation = .context,
        query: String?,
        metadata: RawJSON? = nil,
        source: JobSource? = nil
    ) {
        self.id = id
        self.userID = userID
        self.operation = operation
        self.query = query
        self.metadata = metadata
        self.source = source
    }

    /// Decodes and validates the raw value of an input message.
    ///
    /// Strict: the bytes must be UTF-8, one JSON object (RFC 8259, nothing after it), with `id` and `userId`
    /// non-empty strings of at most 256 bytes, `op` absent, null, `"context"` or `"summary"`, `query` a non-empty
    /// string of at most 16 KiB for `"context"`, and `metadata` absent, null or an object of at most 16 KiB.
    /// Unknown fields are ignored (but must be valid JSON). A repeated field takes its last value.
    /// - Parameters:
    ///   - bytes: The message value.
    ///   - source: Where the message was read from, kept in ``source``.
    /// - Throws: ``InvalidJob`` naming the reason and the field.
    public init(decoding bytes: [UInt8], source: JobSource? = nil) throws(InvalidJob) {
        guard bytes.count <= Self.maxMessageBytes else {
            throw InvalidJob.messageTooLarge(bytes: bytes.count)
        }
        let result = bytes.withUnsafeBufferPointer { JobParser.parse($0) }
        switch result {
        case .success(var job):
            job.source = source
            self = job
        case .failure(let invalid):
            throw invalid
        }
    }
}

/// A piece of JSON text kept byte for byte as it was received (already validated).
public struct RawJSON: Sendable, Hashable, CustomStringConvertible {
    /// The UTF-8 JSON text.
    public let bytes: [UInt8]

    /// Wraps JSON text after checking that it is exactly one valid JSON value.
    /// - Parameter bytes: UTF-8 JSON text.
    /// - Returns: `nil` if the bytes are not one valid JSON value.
    public init?(_ bytes: [UInt8]) {
        guard bytes.withUnsafeBufferPointer({ JSONReader.isValidJSON($0) }) else { return nil }
        self.bytes = bytes
    }

    init(validatedBytes bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The JSON text.
    public var description: String { String(decoding: bytes, as: UTF8.self) }
}
