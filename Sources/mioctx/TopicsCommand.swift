import ArgumentParser
import Kafka
import Logging
import Settings

/// `mioctx topics`: creates the worker's topics (input, output, dead letters) from the configuration.
struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Create the input, output and dead-letter topics the configuration names (idempotent).",
        discussion: """
            Creates kafka.inputTopic, kafka.outputTopic and kafka.deadLetterTopic with kafka.topicPartitions \
            partitions (--partitions) and kafka.topicReplicationFactor replicas (--replication-factor; -1 takes \
            the brokers' default.replication.factor), through the same librdkafka properties as `mioctx run` \
            (SASL, SSL). A topic that already exists is left as it is. Exits 0 when every topic exists afterwards; \
            run it before the workers start (a consumer does not make the brokers create its topic).


            """ + SettingsReference.flagsHelp
    )

    @Option(help: "How long to wait for the cluster's answer, in seconds.")
    var timeout: Int = 30

    func validate() throws {
        guard (1...600).contains(timeout) else {
            throw ValidationError("--timeout must be 1 to 600 seconds, got \(timeout)")
        }
    }

    func run() async throws {
        let settings = try await CommandSettings.load(requiring: [])
        let logger = makeStandardErrorLogger(label: "mioctx.topics", level: LogSetup(settings).level)
        let topics = Self.topics(settings)
        let admin = try KafkaAdminClient(
            configuration: KafkaConfiguration(
                bootstrapServers: settings[\.kafka.bootstrapServers], properties: settings.kafkaProperties
            ),
            logger: logger
        )
        try await admin.createTopics(topics, ignoreExisting: true, timeout: .seconds(timeout))
        for topic in topics {
            let replicas = topic.replicationFactor < 0 ? "the brokers' default" : "\(topic.replicationFactor)"
            print("\(topic.name): ready (created with \(topic.partitions) partitions, \(replicas) replicas, if new)")
        }
    }

    /// The three topics of a worker's configuration, each with the configured partitions and replicas.
    static func topics(_ settings: EffectiveSettings) -> [KafkaNewTopic] {
        [settings[\.kafka.inputTopic], settings[\.kafka.outputTopic], settings[\.kafka.deadLetterTopic]].map {
            KafkaNewTopic(
                name: $0,
                partitions: settings[\.kafka.topicPartitions],
                replicationFactor: settings[\.kafka.topicReplicationFactor]
            )
        }
    }
}
