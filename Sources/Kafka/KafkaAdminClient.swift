import CRdKafka
public import Logging

/// A topic to create.
public struct KafkaNewTopic: Sendable, Hashable {
    /// The topic's name.
    public var name: String
    /// How many partitions it has.
    public var partitions: Int
    /// How many replicas each partition has.
    public var replicationFactor: Int

    /// Describes a topic to create.
    public init(name: String, partitions: Int, replicationFactor: Int = 1) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
    }
}

/// Administrative operations on a cluster.
public final class KafkaAdminClient: Sendable {
    private let client: RDKafkaClient

    /// Creates an admin client.
    ///
    /// - Throws: ``KafkaError`` with code `configuration` naming a property librdkafka refused.
    public init(configuration: KafkaConfiguration, logger: Logger) throws(KafkaError) {
        self.client = try RDKafkaClient(
            kind: .producer,
            properties: configuration.properties,
            context: RDKafkaCallbackContext(logger: logger)
        )
    }

    /// Creates topics; a topic that already exists is not an error when `ignoreExisting` is true.
    ///
    /// - Throws: ``KafkaError`` with code `admin` naming the first topic that could not be created, or
    ///   `timeout` when the cluster did not answer within `timeout`.
    public func createTopics(
        _ topics: [KafkaNewTopic],
        ignoreExisting: Bool = true,
        timeout: Duration = .seconds(30)
    ) async throws(KafkaError) {
        guard !topics.isEmpty else { return }
        let client = self.client
        let failure = await runBlocking {
            Self.createTopicsBlocking(client: client, topics: topics, ignoreExisting: ignoreExisting, timeout: timeout)
        }
        if let failure {
            throw failure
        }
    }

    private static func createTopicsBlocking(
        client: RDKafkaClient,
        topics: [KafkaNewTopic],
        ignoreExisting: Bool,
        timeout: Duration
    ) -> KafkaError? {
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
        let queue = rd_kafka_queue_new(client.pointer)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(client.pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errorText = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, Int32(timeout.milliseconds), &errorText, errorText.count)
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(client.pointer, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, Int32(timeout.milliseconds + 1000)) else {
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
