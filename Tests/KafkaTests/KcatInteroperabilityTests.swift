import Foundation
import Kafka
import MioctxTestSupport
import Testing

/// Another process's mock cluster and Debian's kcat: the wrapper speaks Kafka as every client does.
@Suite("Interoperability with kcat and mioctx mock-kafka")
struct KcatInteroperabilityTests {
    @Test func kcatAndTheSwiftClientReadEachOthersMessages() async throws {
        let mockKafka = try ChildProcess(mioctxExecutable(), ["mock-kafka", "--brokers", "1", "--topic", "from-kcat:2", "--topic", "from-swift:1"])
        defer { mockKafka.terminate() }
        let bootstrap = try mockKafka.firstLine()
        #expect(bootstrap.hasPrefix("127.0.0.1:"))

        let produced = try runKcat(
            ["-b", bootstrap, "-P", "-t", "from-kcat", "-K", ":", "-H", "source=kcat"],
            input: "user-1:first job\nuser-2:second job\nuser-3:third job\n"
        )
        #expect(produced.status == 0, "kcat -P failed: \(produced.error)")

        let cluster = ExternalCluster(bootstrapServers: bootstrap)
        let consumer = try KafkaConsumer(
            configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, properties: fastGroupProperties),
            groupID: "interop-group",
            topics: ["from-kcat"],
            logger: testLogger()
        )
        let consuming = Task { try await consumer.run() }
        let received = try await withPatience("kcat's messages") {
            var messages: [KafkaMessage] = []
            for await message in consumer.messages {
                messages.append(message)
                if messages.count == 3 { break }
            }
            return messages
        }
        consumer.close()
        try await consuming.value
        let pairs = Set(received.map { "\(String(decoding: $0.key ?? [], as: UTF8.self))=\($0.valueString)" })
        #expect(pairs == ["user-1=first job", "user-2=second job", "user-3=third job"])
        #expect(received.allSatisfy { $0.header("source")?.stringValue == "kcat" })

        let producer = try KafkaProducer(
            configuration: KafkaConfiguration(bootstrapServers: bootstrap),
            logger: testLogger()
        )
        let producing = Task { try await producer.run() }
        for index in 1...3 {
            _ = try await producer.send(
                topic: "from-swift",
                key: Array("k\(index)".utf8),
                value: Array("swift says \(index)".utf8),
                headers: [KafkaHeader(key: "job-id", value: "j\(index)")]
            )
        }
        producer.shutdown()
        try await producing.value

        let consumed = try runKcat(["-b", bootstrap, "-C", "-t", "from-swift", "-o", "beginning", "-e", "-q", "-f", "%k|%s|%h\\n"])
        #expect(consumed.status == 0, "kcat -C failed: \(consumed.error)")
        let lines = consumed.output.split(separator: "\n").map(String.init)
        #expect(lines == ["k1|swift says 1|job-id=j1", "k2|swift says 2|job-id=j2", "k3|swift says 3|job-id=j3"])
    }

    @Test func mockKafkaExitsZeroOnSIGTERM() throws {
        let mockKafka = try ChildProcess(mioctxExecutable(), ["mock-kafka", "--brokers", "2", "--topic", "t:3"])
        let bootstrap = try mockKafka.firstLine()
        #expect(bootstrap.split(separator: ",").count == 2)
        let status = mockKafka.terminate()
        #expect(status == 0)
    }

    @Test func mockKafkaRejectsABadTopicSpecNamingIt() throws {
        let process = try ChildProcess(mioctxExecutable(), ["mock-kafka", "--topic", "jobs:zero"])
        let status = process.wait()
        #expect(status != 0)
        #expect(process.standardError().contains("jobs:zero"))
    }
}

/// A bootstrap address of a cluster this process does not own.
struct ExternalCluster {
    var bootstrapServers: String
}

/// Runs Debian's kcat with `arguments`, feeding `input` on standard input.
func runKcat(_ arguments: [String], input: String? = nil) throws -> CommandResult {
    try runCommand(kcatExecutable(), arguments, input: input)
}
