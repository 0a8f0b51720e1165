/// A Kafka record header: a name and an optional byte value.
public struct KafkaHeader: Sendable, Hashable {
    /// The header's name.
    public var key: String
    /// The header's value; `nil` is a null value, distinct from an empty one.
    public var value: [UInt8]?

    /// Creates a header with a byte value.
    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// Creates a header whose value is the UTF-8 bytes of `value`.
    public init(key: String, value: String) {
        self.key = key
        self.value = Array(value.utf8)
    }

    /// The value decoded as UTF-8, if it is valid UTF-8.
    public var stringValue: String? {
        value.flatMap { String(validating: $0, as: UTF8.self) }
    }
}

/// One partition of one topic.
public struct KafkaTopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The topic's name.
    public var topic: String
    /// The partition's number.
    public var partition: Int32

    /// Creates a topic-partition pair.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// Orders by topic, then partition.
    ///
    /// - Parameters:
    ///   - lhs: a partition.
    ///   - rhs: another partition.
    /// - Returns: whether `lhs` comes first.
    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    /// `topic[partition]`.
    public var description: String { "\(topic)[\(partition)]" }
}

/// An offset within one partition: for commits, the next offset to read.
public struct KafkaTopicPartitionOffset: Sendable, Hashable, CustomStringConvertible {
    /// The partition.
    public var topicPartition: KafkaTopicPartition
    /// The offset. For a commit, this is the offset of the next message to consume (last done + 1).
    public var offset: Int64

    /// Creates an offset for `topic`/`partition`.
    public init(topic: String, partition: Int32, offset: Int64) {
        self.topicPartition = KafkaTopicPartition(topic: topic, partition: partition)
        self.offset = offset
    }

    /// Creates an offset for a partition.
    public init(_ topicPartition: KafkaTopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }

    /// `topic[partition]@offset`.
    public var description: String { "\(topicPartition)@\(offset)" }
}

/// A message read from Kafka.
public struct KafkaMessage: Sendable, Hashable {
    /// The topic it was read from.
    public var topic: String
    /// The partition it was read from.
    public var partition: Int32
    /// Its offset within the partition.
    public var offset: Int64
    /// Its key, or `nil` when it has none.
    public var key: [UInt8]?
    /// Its value, or `nil` for a tombstone.
    public var value: [UInt8]?
    /// Its headers, in order.
    public var headers: [KafkaHeader]
    /// Its timestamp in milliseconds since the Unix epoch, when the broker or producer set one.
    public var timestampMilliseconds: Int64?
    /// The size of its value when the consumer did not copy it (``value`` is then `nil`) because it is larger
    /// than ``KafkaConsumer/Options/maxValueBytes``.
    public var droppedValueBytes: Int?

    /// Creates a message (mainly for tests of code that consumes messages).
    public init(
        topic: String,
        partition: Int32,
        offset: Int64,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [KafkaHeader] = [],
        timestampMilliseconds: Int64? = nil,
        droppedValueBytes: Int? = nil
    ) {
        self.droppedValueBytes = droppedValueBytes
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }

    /// The partition the message came from.
    public var topicPartition: KafkaTopicPartition {
        KafkaTopicPartition(topic: topic, partition: partition)
    }

    /// The bytes the message holds in memory: its key, value and headers (for the consumer's byte bound).
    public var heldBytes: Int {
        var total = 64 + (key?.count ?? 0) + (value?.count ?? 0)
        for header in headers {
            total += 32 + header.key.utf8.count + (header.value?.count ?? 0)
        }
        return total
    }

    /// The first header named `key`, if any.
    public func header(_ key: String) -> KafkaHeader? {
        headers.first { $0.key == key }
    }
}

/// The broker's acknowledgement of a produced message.
public struct KafkaDeliveryReport: Sendable, Hashable {
    /// The topic the message was written to.
    public var topic: String
    /// The partition the message was written to.
    public var partition: Int32
    /// The offset the broker assigned to it.
    public var offset: Int64
}
