import Coordination
import Foundation
import Kafka
import Logging
import MioctxTestSupport
import Synchronization
import Testing

/// An independent count of the output topic: a fresh consumer group of our Kafka module reads it from the
/// beginning, and each job id is counted. Lost = ids without a result, repeats = results beyond one per id.
struct OutputTopicCount: Sendable, CustomStringConvertible {
    /// Results per job id (sentinels excluded).
    var resultsByID: [String: Int]

    /// Every result read.
    var results: Int { resultsByID.values.reduce(0, +) }
    /// Results beyond the first of their job.
    var repeats: Int { resultsByID.values.reduce(0) { $0 + max(0, $1 - 1) } }

    /// The ids of `jobs` without a result.
    func lost(of jobs: [String]) -> [String] {
        jobs.filter { resultsByID[$0] == nil }
    }

    var description: String { "\(results) results for \(resultsByID.count) job ids, \(repeats) repeats" }

    /// The marker value written to each output partition to know that everything before it has been read.
    static let sentinelPrefix = "count-sentinel-"

    /// Reads the whole output topic as it is now: first writes one sentinel message to each of its partitions,
    /// then reads from the beginning (a fresh group) until every sentinel was read. Call it once every writer of
    /// results has stopped or had its results acknowledged.
    ///
    /// - Parameters:
    ///   - kafka: how to reach the cluster.
    ///   - topic: the output topic.
    ///   - partitions: its partition count.
    static func read(kafka: KafkaConfiguration, topic: String, partitions: Int32, logger: Logger) async throws -> OutputTopicCount {
        let run = UUID().uuidString
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.properties["bootstrap.servers"] ?? ""), logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            defer { producer.shutdown() }
            for partition in 0..<partitions {
                _ = try await producer.send(
                    topic: topic,
                    partition: partition,
                    key: nil,
                    value: Array(#"{"id":"\#(sentinelPrefix)\#(run)-\#(partition)"}"#.utf8)
                )
            }
        }
        let consumer = try KafkaConsumer(
            configuration: kafka,
            groupID: "output-count-\(run)",
            topics: [topic],
            logger: logger
        )
        let task = Task { try await consumer.run() }
        defer { consumer.close() }
        let counts = try await withPatience("every sentinel of \(topic)") {
            var counts: [String: Int] = [:]
            var sentinels = 0
            for await message in consumer.messages {
                guard let value = message.value,
                    let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any],
                    let id = object["id"] as? String
                else { continue }
                if id.hasPrefix(sentinelPrefix) {
                    if id.hasPrefix("\(sentinelPrefix)\(run)-") { sentinels += 1 }
                    if sentinels == partitions { break }
                    continue
                }
                counts[id, default: 0] += 1
            }
            return counts
        }
        consumer.close()
        try await task.value
        return OutputTopicCount(resultsByID: counts)
    }
}

/// The promise's bound on repeats after a crash or a fault: the jobs in flight plus one commit interval of the
/// worker's own throughput.
struct RepeatBound: Sendable, CustomStringConvertible {
    var maxInFlight: Int
    var commitInterval: Duration
    /// The worker's measured throughput, jobs per second.
    var throughput: Double

    var value: Int { maxInFlight + Int((throughput * commitInterval.timeInterval).rounded(.up)) }

    var description: String {
        "\(value) (in flight \(maxInFlight) + \(commitInterval) × \(Int(throughput)) jobs/s)"
    }
}
