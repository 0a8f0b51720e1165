import CRdKafka

extension RDKafkaClient {
    /// Creates topics and waits for the cluster's answer (blocking: off the cooperative pool).
    ///
    /// - Returns: the first failure (an invalid topic, a refused request, no answer within `timeout`, a topic
    ///   the cluster could not create), or `nil` when every topic was created (or already existed, with
    ///   `ignoreExisting`).
    func createTopics(_ topics: [KafkaNewTopic], ignoreExisting: Bool, timeout: Duration) -> KafkaError? {
        var newTopics: [OpaquePointer?] = []
        defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
        for topic in topics {
            var buffer = [CChar](repeating: 0, count: 512)
            guard
                let newTopic = rd_kafka_NewTopic_new(
                    topic.name,
                    Int32(topic.partitions),
                    Int32(topic.replicationFactor),
                    &buffer,
                    buffer.count
                )
            else {
                let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                return KafkaError(code: .admin, message: "invalid topic '\(topic.name)': \(message)")
            }
            newTopics.append(newTopic)
        }
        let queue = rd_kafka_queue_new(pointer)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errorText = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout.rdKafkaMilliseconds, &errorText, errorText.count)
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(pointer, buffer.baseAddress, buffer.count, options, queue)
        }
        let pollTimeout = timeout + .seconds(1)
        guard let event = rd_kafka_queue_poll(queue, pollTimeout.rdKafkaMilliseconds) else {
            return KafkaError(code: .timeout, message: "creating topics \(topics.map(\.name)) got no answer within \(timeout)")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .rdKafka(eventError, code: .admin, context: "creating topics \(topics.map(\.name)) failed")
        }
        var count = 0
        guard let result = rd_kafka_event_CreateTopics_result(event),
            let results = rd_kafka_CreateTopics_result_topics(result, &count)
        else {
            return KafkaError(code: .admin, message: "creating topics \(topics.map(\.name)) returned no result")
        }
        for index in 0..<count {
            let topicResult = results[index]
            let error = rd_kafka_topic_result_error(topicResult)
            if error == RD_KAFKA_RESP_ERR_NO_ERROR || (ignoreExisting && error == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                continue
            }
            let name = String(cString: rd_kafka_topic_result_name(topicResult))
            let detail = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
            return .rdKafka(error, code: .admin, context: "could not create topic '\(name)' (\(detail))")
        }
        return nil
    }
}
