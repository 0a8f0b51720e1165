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
            callbacks: RDKafkaCallbacks(logger: logger)
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
            client.createTopics(topics, ignoreExisting: ignoreExisting, timeout: timeout)
        }
        if let failure {
            throw failure
        }
    }
}
