import Foundation
import Hummingbird
import Kafka
import Logging
import MioctxTestSupport
import Testing

/// The commands an operator and a container runtime use around `run`: `--version`, `topics`, `healthcheck`.
@Suite struct OperatorCommandsTests {
    static let logger = Logger(label: "operator-commands-test")

    @Test func versionNamesTheReleaseAndTheLibrdkafkaItRunsOn() throws {
        let output = try MioctxProcess.run(["--version"], environment: [:])
        #expect(output.status == 0)
        let line = output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasSuffix("(librdkafka \(KafkaConfiguration.librdkafkaVersion))"), "\(line)")
        #expect(line.first?.isNumber == true, "\(line)")
    }

    // librdkafka 2.0.2's mock cluster does not implement CreateTopics (see KafkaProducerTests), so creation itself
    // is checked against a real cluster only; here: the request names the configured topics, and a cluster that
    // does not answer is an error naming them, with a non-zero exit.
    @Test func topicsAsksForTheThreeTopicsOfTheConfigurationAndFailsNamingThemWhenUnanswered() async throws {
        let cluster = try KafkaMockCluster(brokers: 1, logger: Self.logger)
        let output = try await Self.run([
            "topics", "--kafka-bootstrap-servers", cluster.bootstrapServers, "--partitions", "4", "--timeout", "1",
            "--replication-factor", "1", "--input-topic", "jobs-in", "--output-topic", "jobs-out",
            "--dead-letter-topic", "jobs-dead",
        ])
        #expect(output.status != 0)
        #expect(output.standardError.contains(#"creating topics ["jobs-in", "jobs-out", "jobs-dead"]"#), "\(output.all)")
        #expect(!output.standardOutput.contains("ready"))
    }

    @Test func topicsRefusesAnInvalidCountBeforeReachingTheCluster() async throws {
        let output = try await Self.run(["topics", "--partitions", "0"])
        #expect(output.status == 78, "\(output.all)")
        #expect(output.standardError.contains("kafka.topicPartitions"), "\(output.all)")
    }

    @Test func topicsWithoutAClusterFailsNamingTheProblem() async throws {
        let output = try await Self.run([
            "topics", "--kafka-bootstrap-servers", "127.0.0.1:1", "--timeout", "2", "-X", "socket.timeout.ms=1000",
        ])
        #expect(output.status != 0)
        #expect(output.standardError.contains("context-requests"), "\(output.all)")
    }

    @Test func healthcheckExitsZeroOnlyWhenTheEndpointAnswers200() async throws {
        let router = Router()
        router.get("/readyz") { _, _ in Response(status: .serviceUnavailable) }
        router.get("/healthz") { _, _ in Response(status: .ok) }
        try await withRouterServer(router, logger: Self.logger) { baseURL in
            let port = String(baseURL.split(separator: ":").last!)
            let ready = try await Self.run(["healthcheck", "--http-port", port])
            #expect(ready.status == 1, "\(ready.all)")
            #expect(ready.standardOutput.contains("/readyz on 127.0.0.1:\(port): HTTP/1.1 503"), "\(ready.all)")
            let live = try await Self.run(["healthcheck", "--live"], environment: ["MIOCTX_HTTP_PORT": port])
            #expect(live.status == 0, "\(live.all)")
            #expect(live.standardOutput.contains("/healthz on 127.0.0.1:\(port): HTTP/1.1 200"), "\(live.all)")
        }
        let closed = try await Self.run(["healthcheck", "--http-port", "1"])
        #expect(closed.status == 1)
        #expect(closed.standardError.contains("cannot connect"), "\(closed.all)")
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessOutput {
        let directory = try TemporaryDirectory()
        return try await CapturedProcess(try mioctxExecutable(), arguments, environment: environment, in: directory.url)
            .run()
    }
}
