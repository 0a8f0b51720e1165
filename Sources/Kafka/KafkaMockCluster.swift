import CRdKafka
public import Logging

/// librdkafka's mock Kafka cluster, running inside this process and listening on loopback.
///
/// It speaks the real Kafka protocol, so any client (this module, kcat, confluent-kafka) can use it through
/// ``bootstrapServers``. Tests use it to run without a Kafka installation, and to inject failures: brokers
/// going down, request errors, round-trip delays. The cluster stops when the object is released.
public final class KafkaMockCluster: @unchecked Sendable {
    // @unchecked Sendable: the mock cluster's functions are thread-safe (they post operations to the
    // cluster's own thread), and the pointers never change after init.

    /// A Kafka protocol request kind (ApiKey), for error injection.
    public struct RequestKind: Hashable, Sendable {
        /// The Kafka protocol ApiKey.
        public var apiKey: Int16

        /// Creates a request kind from its Kafka protocol ApiKey.
        public init(apiKey: Int16) {
            self.apiKey = apiKey
        }

        public static let produce = RequestKind(apiKey: 0)
        public static let fetch = RequestKind(apiKey: 1)
        public static let listOffsets = RequestKind(apiKey: 2)
        public static let metadata = RequestKind(apiKey: 3)
        public static let offsetCommit = RequestKind(apiKey: 8)
        public static let offsetFetch = RequestKind(apiKey: 9)
        public static let findCoordinator = RequestKind(apiKey: 10)
        public static let joinGroup = RequestKind(apiKey: 11)
        public static let heartbeat = RequestKind(apiKey: 12)
        public static let leaveGroup = RequestKind(apiKey: 13)
        public static let syncGroup = RequestKind(apiKey: 14)
        public static let initProducerID = RequestKind(apiKey: 22)
    }

    /// A Kafka protocol error code, for error injection.
    public struct BrokerError: Hashable, Sendable {
        /// The Kafka protocol error code.
        public var code: Int32

        /// Creates an error from its Kafka protocol code.
        public init(code: Int32) {
            self.code = code
        }

        public static let corruptMessage = BrokerError(code: 2)
        public static let unknownTopicOrPartition = BrokerError(code: 3)
        public static let notLeaderForPartition = BrokerError(code: 6)
        public static let requestTimedOut = BrokerError(code: 7)
        public static let messageSizeTooLarge = BrokerError(code: 10)
        public static let coordinatorNotAvailable = BrokerError(code: 15)
        public static let notCoordinator = BrokerError(code: 16)
        public static let notEnoughReplicas = BrokerError(code: 19)
        public static let rebalanceInProgress = BrokerError(code: 27)
        public static let topicAuthorizationFailed = BrokerError(code: 29)
    }

    /// Where clients connect: a `bootstrap.servers` value such as `127.0.0.1:40001,127.0.0.1:40002`.
    public let bootstrapServers: String
    /// The number of brokers (their ids are 1 through `brokerCount`).
    public let brokerCount: Int

    private let client: RDKafkaClient
    private let cluster: OpaquePointer

    /// Starts a cluster of `brokers` brokers on loopback.
    ///
    /// - Throws: ``KafkaError`` with code `mockCluster` when librdkafka cannot start it.
    public init(brokers: Int = 3, logger: Logger) throws(KafkaError) {
        guard brokers > 0 else {
            throw KafkaError(code: .mockCluster, message: "a mock cluster needs at least one broker, not \(brokers)")
        }
        // The cluster runs on a client handle's threads; this handle exists only to host it. Without
        // bootstrap servers it makes no connection of its own.
        self.client = try RDKafkaClient(
            kind: .producer,
            properties: ["log_level": "4"],
            context: RDKafkaCallbackContext(logger: logger)
        )
        guard let cluster = rd_kafka_mock_cluster_new(client.pointer, Int32(brokers)) else {
            throw KafkaError(code: .mockCluster, message: "could not start a mock cluster of \(brokers) brokers")
        }
        self.cluster = cluster
        self.brokerCount = brokers
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        // The cluster must go before the handle it runs on.
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// Creates a topic.
    ///
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        let error = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw .rdKafka(error, code: .mockCluster, context: "could not create topic '\(name)'")
        }
    }

    /// Takes a broker down: its connections close and it accepts none until ``setBrokerUp(_:)``.
    public func setBrokerDown(_ brokerID: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_down(cluster, brokerID), "could not take broker \(brokerID) down")
    }

    /// Brings a broker back up.
    public func setBrokerUp(_ brokerID: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_up(cluster, brokerID), "could not bring broker \(brokerID) up")
    }

    /// Delays every response of a broker by `roundTrip`.
    public func setBrokerRoundTrip(_ brokerID: Int32, _ roundTrip: Duration) throws(KafkaError) {
        try check(
            rd_kafka_mock_broker_set_rtt(cluster, brokerID, Int32(roundTrip.milliseconds)),
            "could not set the round trip of broker \(brokerID)"
        )
    }

    /// Delays broker `brokerID`'s answers to its next requests of `kind`, one delay per request, in order; the
    /// requests succeed. Later requests are answered at once again.
    public func delayResponses(_ kind: RequestKind, ofBroker brokerID: Int32, by delays: [Duration]) throws(KafkaError) {
        for delay in delays {
            try check(
                mioctx_rd_kafka_mock_push_request_error_rtt(
                    cluster, brokerID, kind.apiKey, RD_KAFKA_RESP_ERR_NO_ERROR, Int32(delay.milliseconds)
                ),
                "could not delay the responses of broker \(brokerID)"
            )
        }
    }

    /// Makes the next requests of `kind` fail, one error per request, in order.
    public func pushRequestErrors(_ kind: RequestKind, _ errors: [BrokerError]) {
        let codes = errors.map { rd_kafka_resp_err_t(rawValue: $0.code) }
        codes.withUnsafeBufferPointer { buffer in
            rd_kafka_mock_push_request_errors_array(cluster, kind.apiKey, buffer.count, buffer.baseAddress)
        }
    }

    /// Forgets errors pushed for `kind` that have not been used yet.
    public func clearRequestErrors(_ kind: RequestKind) {
        rd_kafka_mock_clear_request_errors(cluster, kind.apiKey)
    }

    /// Makes metadata requests report `error` for `topic` (or clears it with `nil`).
    public func setTopicError(_ topic: String, _ error: BrokerError?) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: error?.code ?? 0))
    }

    /// Moves the leadership of a partition to `brokerID`.
    public func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) throws(KafkaError) {
        try check(
            rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerID),
            "could not move the leader of \(topic)[\(partition)] to broker \(brokerID)"
        )
    }

    private func check(_ error: rd_kafka_resp_err_t, _ context: String) throws(KafkaError) {
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw .rdKafka(error, code: .mockCluster, context: context)
        }
    }
}
