import CRdKafka

/// Conversions between Swift partition values and `rd_kafka_topic_partition_list_t`.
enum RDKafkaTopicPartitionList {
    /// Calls `body` with a new list of `partitions`, destroyed when `body` returns.
    static func with<R>(
        _ partitions: [KafkaTopicPartition],
        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> R
    ) -> R {
        let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for partition in partitions {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)
        }
        return body(list)
    }

    /// Calls `body` with a new list holding an offset on each entry, destroyed when `body` returns.
    static func with<R>(
        _ offsets: [KafkaTopicPartitionOffset],
        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> R
    ) -> R {
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for offset in offsets {
            let entry = rd_kafka_topic_partition_list_add(list, offset.topicPartition.topic, offset.topicPartition.partition)!
            entry.pointee.offset = offset.offset
        }
        return body(list)
    }

    static func partitions(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [KafkaTopicPartition] {
        entries(list).map(\.topicPartition)
    }

    static func entries(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> UnsafeBufferPointer<rd_kafka_topic_partition_t> {
        UnsafeBufferPointer(start: list.pointee.elems, count: Int(list.pointee.cnt))
    }

    /// The first per-partition error in `list`, if any.
    static func firstError(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> (KafkaTopicPartition, rd_kafka_resp_err_t)? {
        for entry in entries(list) where entry.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            return (entry.topicPartition, entry.err)
        }
        return nil
    }
}

extension rd_kafka_topic_partition_t {
    /// The topic and partition of this entry.
    var topicPartition: KafkaTopicPartition {
        KafkaTopicPartition(topic: String(cString: topic), partition: partition)
    }
}
