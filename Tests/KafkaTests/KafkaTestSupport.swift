import Foundation
import Kafka
import Logging
import MioctxTestSupport
import Testing

/// Group timeouts that make rebalances on the mock cluster take seconds, not minutes.
let fastGroupProperties: [String: String] = [
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "500",
    "max.poll.interval.ms": "10000",
]

func testLogger(_ label: String = "kafka-tests") -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

/// A mock cluster with topics, for one test.
func makeCluster(brokers: Int = 1, topics: [String: Int]) throws -> KafkaMockCluster {
    let cluster = try KafkaMockCluster(brokers: brokers, logger: testLogger())
    for (topic, partitions) in topics {
        try cluster.createTopic(topic, partitions: partitions)
    }
    return cluster
}

/// Runs a producer for the duration of `body`, then shuts it down.
func withProducer<T: Sendable>(
    _ cluster: KafkaMockCluster,
    properties: [String: String] = [:],
    _ body: @Sendable (KafkaProducer) async throws -> T
) async throws -> T {
    let producer = try KafkaProducer(
        configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, properties: properties),
        logger: testLogger()
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await producer.run() }
        defer { producer.shutdown() }
        return try await body(producer)
    }
}

/// A consumer running in the background; ``stop()`` closes it and waits for its run loop to end.
final class RunningConsumer: Sendable {
    let consumer: KafkaConsumer
    private let task: Task<Void, any Error>

    init(
        _ cluster: KafkaMockCluster,
        group: String,
        topics: [String],
        properties: [String: String] = [:],
        options: KafkaConsumer.Options = .init(),
        onRevoke: KafkaConsumer.RevocationHandler? = nil
    ) throws {
        let consumer = try KafkaConsumer(
            configuration: KafkaConfiguration(
                bootstrapServers: cluster.bootstrapServers,
                properties: fastGroupProperties.merging(properties) { _, new in new }
            ),
            groupID: group,
            topics: topics,
            options: options,
            logger: testLogger(),
            onRevoke: onRevoke
        )
        self.consumer = consumer
        self.task = Task { try await consumer.run() }
    }

    func stop() async throws {
        consumer.close()
        try await task.value
    }

    /// Reads `count` messages.
    func read(_ count: Int) async throws -> [KafkaMessage] {
        let messages = consumer.messages
        return try await withPatience("\(count) messages") {
            var received: [KafkaMessage] = []
            for await message in messages {
                received.append(message)
                if received.count == count {
                    break
                }
            }
            return received
        }
    }
}

/// Produces `count` messages to one partition, values "prefix-0" ... and waits for every acknowledgement.
func produce(_ producer: KafkaProducer, topic: String, partition: Int32?, count: Int, prefix: String) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<count {
            group.addTask {
                _ = try await producer.send(
                    topic: topic,
                    partition: partition,
                    key: Array("key-\(index)".utf8),
                    value: Array("\(prefix)-\(index)".utf8)
                )
            }
        }
        try await group.waitForAll()
    }
}

extension KafkaMessage {
    var valueString: String { value.map { String(decoding: $0, as: UTF8.self) } ?? "<null>" }
}
