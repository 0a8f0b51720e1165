import Foundation

/// The figures mioctx reads from librdkafka's statistics (`statistics.interval.ms`), per assigned partition.
public struct KafkaStatistics: Sendable, Hashable {
    /// Figures of one partition.
    public struct Partition: Sendable, Hashable {
        /// Messages between the partition's end (high watermark, or last stable offset with `read_committed`) and
        /// the group's committed offset; `nil` while librdkafka does not know one of them.
        public var consumerLag: Int64?

        /// Creates the figures.
        public init(consumerLag: Int64?) {
            self.consumerLag = consumerLag
        }
    }

    /// The partitions librdkafka reported on (those the client fetches or knows), without the internal
    /// unassigned partition `-1`.
    public var partitions: [KafkaTopicPartition: Partition]

    /// Creates statistics.
    public init(partitions: [KafkaTopicPartition: Partition] = [:]) {
        self.partitions = partitions
    }

    /// Parses librdkafka's statistics JSON (`topics.<topic>.partitions.<n>.consumer_lag`).
    ///
    /// - Parameter json: the document librdkafka's statistics callback received.
    /// - Returns: the statistics, or `nil` when the document is not the expected JSON object.
    public static func parse(_ json: some Collection<UInt8>) -> KafkaStatistics? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else { return nil }
        var statistics = KafkaStatistics()
        let topics = object["topics"] as? [String: Any] ?? [:]
        for (topic, value) in topics {
            guard let partitions = (value as? [String: Any])?["partitions"] as? [String: Any] else { continue }
            for (key, value) in partitions {
                guard let number = Int32(key), number >= 0, let partition = value as? [String: Any] else { continue }
                let lag = (partition["consumer_lag"] as? NSNumber)?.int64Value
                statistics.partitions[KafkaTopicPartition(topic: topic, partition: number)] = Partition(
                    consumerLag: lag.flatMap { $0 >= 0 ? $0 : nil }
                )
            }
        }
        return statistics
    }
}
