import CRdKafka
import Logging

/// Owns one librdkafka mock cluster (`rd_kafka_mock_cluster_t`) and the client handle it runs on.
///
/// `@unchecked Sendable` is safe because the mock cluster's functions are thread-safe (they post operations to
/// the cluster's own thread) and the pointers never change after `init`. `deinit` destroys the cluster before
/// the handle it runs on (the handle goes with ``client``).
final class RDKafkaMockCluster: @unchecked Sendable {
    /// Where clients connect (`rd_kafka_mock_cluster_bootstraps`).
    let bootstrapServers: String
    private let client: RDKafkaClient
    private let cluster: OpaquePointer

    /// Starts a cluster of `brokers` brokers on loopback.
    ///
    /// - Throws: ``KafkaError`` with code `mockCluster` when librdkafka cannot start it.
    init(brokers: Int, logger: Logger) throws(KafkaError) {
        // The cluster runs on a client handle's threads; this handle exists only to host it. Without
        // bootstrap servers it makes no connection of its own.
        let client = try RDKafkaClient(kind: .producer, properties: ["log_level": "4"], callbacks: RDKafkaCallbacks(logger: logger))
        guard let cluster = rd_kafka_mock_cluster_new(client.pointer, Int32(brokers)) else {
            throw KafkaError(code: .mockCluster, message: "could not start a mock cluster of \(brokers) brokers")
        }
        self.client = client
        self.cluster = cluster
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    func createTopic(_ name: String, partitions: Int, replicationFactor: Int) -> KafkaError? {
        check(
            rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor)),
            "could not create topic '\(name)'"
        )
    }

    func setBrokerDown(_ brokerID: Int32) -> KafkaError? {
        check(rd_kafka_mock_broker_set_down(cluster, brokerID), "could not take broker \(brokerID) down")
    }

    func setBrokerUp(_ brokerID: Int32) -> KafkaError? {
        check(rd_kafka_mock_broker_set_up(cluster, brokerID), "could not bring broker \(brokerID) up")
    }

    func setBrokerRoundTrip(_ brokerID: Int32, _ roundTrip: Duration) -> KafkaError? {
        check(
            rd_kafka_mock_broker_set_rtt(cluster, brokerID, roundTrip.rdKafkaMilliseconds),
            "could not set the round trip of broker \(brokerID)"
        )
    }

    /// Pushes one successful answer delayed by `delay` onto broker `brokerID`'s stack for ApiKey `apiKey`.
    func delayResponse(apiKey: Int16, ofBroker brokerID: Int32, by delay: Duration) -> KafkaError? {
        check(
            mioctx_rd_kafka_mock_push_request_error_rtt(
                cluster, brokerID, apiKey, RD_KAFKA_RESP_ERR_NO_ERROR, delay.rdKafkaMilliseconds
            ),
            "could not delay the responses of broker \(brokerID)"
        )
    }

    /// Makes the next requests of ApiKey `apiKey` fail with Kafka protocol error `codes`, in order.
    func pushRequestErrors(apiKey: Int16, _ codes: [Int32]) {
        let errors = codes.map { rd_kafka_resp_err_t(rawValue: $0) }
        errors.withUnsafeBufferPointer { buffer in
            rd_kafka_mock_push_request_errors_array(cluster, apiKey, buffer.count, buffer.baseAddress)
        }
    }

    func clearRequestErrors(apiKey: Int16) {
        rd_kafka_mock_clear_request_errors(cluster, apiKey)
    }

    /// Makes metadata requests report Kafka protocol error `code` for `topic` (0 clears it).
    func setTopicError(_ topic: String, _ code: Int32) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: code))
    }

    func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) -> KafkaError? {
        check(
            rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerID),
            "could not move the leader of \(topic)[\(partition)] to broker \(brokerID)"
        )
    }

    private func check(_ error: rd_kafka_resp_err_t, _ context: String) -> KafkaError? {
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .mockCluster, context: context)
        }
        return nil
    }
}
