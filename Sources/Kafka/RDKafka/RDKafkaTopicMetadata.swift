import CRdKafka

/// What the cluster's metadata says about one topic.
enum RDKafkaTopicMetadata: Sendable, Equatable {
    /// The topic exists with this many partitions.
    case exists(partitions: Int)
    /// The cluster does not know the topic.
    case unknown
}

extension RDKafkaClient {
    /// Asks the cluster for one topic's metadata (blocking: call it off the cooperative pool).
    ///
    /// The topic handle created for the request is kept for the client's lifetime (see ``keepTopic(_:)``), so
    /// the client keeps the topic's partitions and leaders known from then on.
    func topicMetadata(_ name: String, timeout: Duration) -> Result<RDKafkaTopicMetadata, KafkaError> {
        guard let topic = keepTopic(name) else {
            let error = rd_kafka_last_error()
            return .failure(.rdKafka(error, code: .admin, context: "could not create a handle for topic '\(name)'"))
        }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(pointer, 0, topic, &metadata, timeout.rdKafkaMilliseconds)
        defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
        if error == RD_KAFKA_RESP_ERR__TIMED_OUT {
            return .failure(KafkaError(code: .timeout, message: "no metadata for topic '\(name)' within \(timeout)"))
        }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .failure(.rdKafka(error, code: .admin, context: "metadata request for topic '\(name)' failed"))
        }
        guard let metadata, metadata.pointee.topic_cnt > 0, let topics = metadata.pointee.topics else {
            return .success(.unknown)
        }
        let entry = topics[0]
        switch entry.err {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            return .success(.exists(partitions: Int(entry.partition_cnt)))
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
            return .success(.unknown)
        default:
            return .failure(.rdKafka(entry.err, code: .admin, context: "the cluster reported an error for topic '\(name)'"))
        }
    }
}
