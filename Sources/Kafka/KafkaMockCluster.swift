public import Logging

/// librdkafka's mock Kafka cluster, running inside this process and listening on loopback.
///
/// It speaks the real Kafka protocol, so any client (this module, kcat, confluent-kafka) can use it through
/// ``bootstrapServers``. Tests use it to run without a Kafka installation, and to inject failures: brokers
/// going down, request errors, round-trip delays. The cluster stops when the object is released.
public final class KafkaMockCluster: Sendable {
    /// A Kafka protocol request kind (ApiKey), for error injection.
    public struct RequestKind: Hashable, Sendable {
        /// The Kafka protocol ApiKey.
        public var apiKey: Int16

        /// Creates a request kind from its Kafka protocol ApiKey.
        public init(apiKey: Int16) {
            self.apiKey = apiKey
        }

        /// Produce (ApiKey 0).
        public static let produce = RequestKind(apiKey: 0)
        /// Fetch (ApiKey 1).
        public static let fetch = RequestKind(apiKey: 1)
        /// ListOffsets (ApiKey 2): a partition's start or end offset.
        public static let listOffsets = RequestKind(apiKey: 2)
        /// Metadata (ApiKey 3).
        public static let metadata = RequestKind(apiKey: 3)
        /// OffsetCommit (ApiKey 8).
        public static let offsetCommit = RequestKind(apiKey: 8)
        /// OffsetFetch (ApiKey 9).
        public static let offsetFetch = RequestKind(apiKey: 9)
        /// FindCoordinator (ApiKey 10).
        public static let findCoordinator = RequestKind(apiKey: 10)
        /// JoinGroup (ApiKey 11).
        public static let joinGroup = RequestKind(apiKey: 11)
        /// Heartbeat (ApiKey 12).
        public static let heartbeat = RequestKind(apiKey: 12)
        /// LeaveGroup (ApiKey 13).
        public static let leaveGroup = RequestKind(apiKey: 13)
        /// SyncGroup (ApiKey 14).
        public static let syncGroup = RequestKind(apiKey: 14)
        /// InitProducerId (ApiKey 22).
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

        /// `CORRUPT_MESSAGE` (2).
        public static let corruptMessage = BrokerError(code: 2)
        /// `UNKNOWN_TOPIC_OR_PARTITION` (3).
        public static let unknownTopicOrPartition = BrokerError(code: 3)
        /// `NOT_LEADER_OR_FOLLOWER` (6).
        public static let notLeaderForPartition = BrokerError(code: 6)
        /// `REQUEST_TIMED_OUT` (7).
        public static let requestTimedOut = BrokerError(code: 7)
        /// `MESSAGE_TOO_LARGE` (10).
        public static let messageSizeTooLarge = BrokerError(code: 10)
        /// `COORDINATOR_NOT_AVAILABLE` (15).
        public static let coordinatorNotAvailable = BrokerError(code: 15)
        /// `NOT_COORDINATOR` (16).
        public static let notCoordinator = BrokerError(code: 16)
        /// `NOT_ENOUGH_REPLICAS` (19).
        public static let notEnoughReplicas = BrokerError(code: 19)
        /// `ILLEGAL_GENERATION` (22): the group's generation has moved on.
        public static let illegalGeneration = BrokerError(code: 22)
        /// `UNKNOWN_MEMBER_ID` (25): the coordinator does not know the member.
        public static let unknownMemberID = BrokerError(code: 25)
        /// `REBALANCE_IN_PROGRESS` (27).
        public static let rebalanceInProgress = BrokerError(code: 27)
        /// `TOPIC_AUTHORIZATION_FAILED` (29).
        public static let topicAuthorizationFailed = BrokerError(code: 29)
    }

    /// Where clients connect: a `bootstrap.servers` value such as `127.0.0.1:40001,127.0.0.1:40002`.
    public var bootstrapServers: String { cluster.bootstrapServers }
    /// The number of brokers (their ids are 1 through `brokerCount`).
    public let brokerCount: Int

    private let cluster: RDKafkaMockCluster

    /// Starts a cluster of `brokers` brokers on loopback.
    ///
    /// - Parameters:
    ///   - brokers: how many brokers (ids 1 through `brokers`).
    ///   - logger: receives librdkafka's log lines.
    /// - Throws: ``KafkaError`` with code `mockCluster` when librdkafka cannot start it.
    public init(brokers: Int = 3, logger: Logger) throws(KafkaError) {
        guard brokers > 0 else {
            throw KafkaError(code: .mockCluster, message: "a mock cluster needs at least one broker, not \(brokers)")
        }
        self.cluster = try RDKafkaMockCluster(brokers: brokers, logger: logger)
        self.brokerCount = brokers
    }

    /// Creates a topic.
    ///
    /// - Parameters:
    ///   - name: the topic's name.
    ///   - partitions: its partition count.
    ///   - replicationFactor: replicas per partition.
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        try check(cluster.createTopic(name, partitions: partitions, replicationFactor: replicationFactor))
    }

    /// Takes a broker down: its connections close and it accepts none until ``setBrokerUp(_:)``.
    ///
    /// - Parameter brokerID: the broker (1 through ``brokerCount``).
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func setBrokerDown(_ brokerID: Int32) throws(KafkaError) {
        try check(cluster.setBrokerDown(brokerID))
    }

    /// Brings a broker back up.
    ///
    /// - Parameter brokerID: the broker (1 through ``brokerCount``).
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func setBrokerUp(_ brokerID: Int32) throws(KafkaError) {
        try check(cluster.setBrokerUp(brokerID))
    }

    /// Delays every response of a broker by `roundTrip`.
    ///
    /// - Parameters:
    ///   - brokerID: the broker (1 through ``brokerCount``).
    ///   - roundTrip: the delay added to each response.
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func setBrokerRoundTrip(_ brokerID: Int32, _ roundTrip: Duration) throws(KafkaError) {
        try check(cluster.setBrokerRoundTrip(brokerID, roundTrip))
    }

    /// Delays broker `brokerID`'s answers to its next requests of `kind`, one delay per request, in order; the
    /// requests succeed. Later requests are answered at once again.
    ///
    /// - Parameters:
    ///   - kind: the request kind.
    ///   - brokerID: the broker (1 through ``brokerCount``).
    ///   - delays: one delay per request.
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func delayResponses(_ kind: RequestKind, ofBroker brokerID: Int32, by delays: [Duration]) throws(KafkaError) {
        for delay in delays {
            try check(cluster.delayResponse(apiKey: kind.apiKey, ofBroker: brokerID, by: delay))
        }
    }

    /// Makes the next requests of `kind` fail, one error per request, in order.
    ///
    /// - Parameters:
    ///   - kind: the request kind.
    ///   - errors: one error per request.
    public func pushRequestErrors(_ kind: RequestKind, _ errors: [BrokerError]) {
        cluster.pushRequestErrors(apiKey: kind.apiKey, errors.map(\.code))
    }

    /// Forgets errors pushed for `kind` that have not been used yet.
    ///
    /// - Parameter kind: the request kind.
    public func clearRequestErrors(_ kind: RequestKind) {
        cluster.clearRequestErrors(apiKey: kind.apiKey)
    }

    /// Makes metadata requests report `error` for `topic` (or clears it with `nil`).
    ///
    /// - Parameters:
    ///   - topic: the topic.
    ///   - error: the error to report, or `nil` for none.
    public func setTopicError(_ topic: String, _ error: BrokerError?) {
        cluster.setTopicError(topic, error?.code ?? 0)
    }

    /// Moves the leadership of a partition to `brokerID`.
    ///
    /// - Parameters:
    ///   - topic: the topic.
    ///   - partition: the partition.
    ///   - brokerID: the new leader (1 through ``brokerCount``).
    /// - Throws: ``KafkaError`` with code `mockCluster` when the mock refuses it.
    public func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) throws(KafkaError) {
        try check(cluster.setPartitionLeader(topic: topic, partition: partition, brokerID: brokerID))
    }

    private func check(_ failure: KafkaError?) throws(KafkaError) {
        if let failure {
            throw failure
        }
    }
}
