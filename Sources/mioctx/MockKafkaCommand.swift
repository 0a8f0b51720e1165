import ArgumentParser
import Foundation
import Kafka
import Logging
import ServiceLifecycle
import Settings
import UnixSignals

/// `mioctx mock-kafka`: librdkafka's mock cluster on loopback, for the demo, tests and laptops.
struct MockKafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-kafka",
        abstract: "Run a mock Kafka cluster on loopback (librdkafka's, real protocol) until SIGTERM or SIGINT.",
        discussion: """
            The first line of standard output is the cluster's bootstrap servers and nothing else, so a script \
            can read it: BOOTSTRAP=$(mioctx mock-kafka --topic jobs:6 | head -n1). Logs go to standard error, at \
            the settings' log.level (--log-level, MIOCTX_LOG_LEVEL or the file's).
            """
    )

    @Option(help: "Number of brokers.")
    var brokers: Int = 3

    @Option(name: .customLong("topic"), help: "A topic to create, as NAME:PARTITIONS[:REPLICATION]. Repeatable.")
    var topics: [String] = []

    func validate() throws {
        guard brokers > 0 else {
            throw ValidationError("--brokers must be at least 1, got \(brokers)")
        }
        for topic in topics {
            _ = try Self.parseTopic(topic, brokers: brokers)
        }
    }

    func run() async throws {
        let settings = try await CommandSettings.load(requiring: [])
        let logger = makeStandardErrorLogger(label: "mioctx.mock-kafka", level: LogSetup(settings).level)
        let cluster = try KafkaMockCluster(brokers: brokers, logger: logger)
        for topic in try topics.map({ try Self.parseTopic($0, brokers: brokers) }) {
            try cluster.createTopic(topic.name, partitions: topic.partitions, replicationFactor: topic.replicationFactor)
        }
        let bootstrapServers = cluster.bootstrapServers
        let brokerCount = brokers
        // Announced from inside the group, once its signal handlers are installed: a parent that reads the
        // line and sends SIGTERM at once still gets a clean exit.
        let announce = AnnounceThenWaitForShutdown {
            printFirstLine(bootstrapServers)
            logger.info(
                "mock Kafka cluster running",
                metadata: ["kafka.bootstrapServers": "\(bootstrapServers)", "kafka.brokers": "\(brokerCount)"]
            )
        }
        let group = ServiceGroup(
            services: [announce],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        try await group.run()
        logger.info("mock Kafka cluster stopped")
        withExtendedLifetime(cluster) {}
    }

    static func parseTopic(_ text: String, brokers: Int) throws -> KafkaNewTopic {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), !parts[0].isEmpty,
            let partitions = Int(parts[1]), partitions > 0
        else {
            throw ValidationError("--topic '\(text)' must be NAME:PARTITIONS[:REPLICATION] with PARTITIONS >= 1")
        }
        let replication = parts.count == 3 ? Int(parts[2]) : 1
        guard let replication, (1...brokers).contains(replication) else {
            throw ValidationError("--topic '\(text)': REPLICATION must be between 1 and the broker count (\(brokers))")
        }
        return KafkaNewTopic(name: parts[0], partitions: partitions, replicationFactor: replication)
    }
}

/// A service that announces that the process is ready, then waits for the group's graceful shutdown.
struct AnnounceThenWaitForShutdown: Service {
    let announce: @Sendable () -> Void

    func run() async throws {
        announce()
        try? await gracefulShutdown()
    }
}
