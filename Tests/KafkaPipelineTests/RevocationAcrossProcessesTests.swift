import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import Mio
import MioTokens
import MioctxTestSupport
import Synchronization
import Testing

/// Issue 16: a revocation or a reconnection made by a third process reaches two running `mioctx run` processes that
/// share the token store (a SQLite file, or one PostgreSQL database) within `tokens.revalidationInterval`, although
/// both hold the user's access token in their caches and Mio still accepts it.
///
/// Every process is an OS process: `mioctx mock-kafka`, `mioctx sim`, the two workers, `mioctx tokens revoke` and
/// `mioctx tokens connect`. The two workers are in consumer groups of their own, so that each answers every job:
/// each job has two results, one per worker, and the test reads both from the output topic.
final class RevocationAcrossProcesses: Sendable {
    static let clientID = "revocation-client"
    static let clientSecret = "revocation-secret"
    static let redirectURL = "http://127.0.0.1:9/oauth/callback"
    static let interval = 2

    let directory: URL
    let bootstrapServers: String
    let simulatorURL: String
    /// `sqlite:PATH` or a PostgreSQL URL (given to the children through `MIOCTX_TOKENS_STORE`).
    let store: String
    let keys: String
    let logger: Logger

    private init(directory: URL, bootstrapServers: String, simulatorURL: String, store: String, keys: String, logger: Logger) {
        self.directory = directory
        self.bootstrapServers = bootstrapServers
        self.simulatorURL = simulatorURL
        self.store = store
        self.keys = keys
        self.logger = logger
    }

    var kafka: KafkaConfiguration { KafkaConfiguration(bootstrapServers: bootstrapServers) }

    /// The environment of every mioctx child: Mio's client, the key, the store, the revalidation interval.
    var environment: [String: String] {
        var environment = ProcessGroupSetup.baseEnvironment
        environment["MIOCTX_TOKEN_KEYS"] = keys
        environment["MIOCTX_TOKENS_STORE"] = store
        environment["MIOCTX_TOKENS_REVALIDATION_INTERVAL"] = "\(Self.interval)s"
        environment["MIO_CLIENT_ID"] = Self.clientID
        environment["MIO_CLIENT_SECRET"] = Self.clientSecret
        environment["MIO_REDIRECT_URL"] = Self.redirectURL
        environment["MIO_API_URL"] = simulatorURL
        environment["MIOCTX_KAFKA_PROPERTIES"] = "session.timeout.ms=6000,heartbeat.interval.ms=500"
        return environment
    }

    /// Starts the mock cluster and the simulator, runs `body`, and stops both (logs kept when it fails).
    static func with(store: @escaping @Sendable (URL) -> String, _ body: (RevocationAcrossProcesses) async throws -> Void)
        async throws
    {
        var logger = Logger(label: "revocation-across-processes")
        logger.logLevel = .warning
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-revocation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let mockKafka = try ChildProcess(
            mioctxExecutable(),
            ["mock-kafka", "--brokers", "1", "--topic", "context-requests:3", "--topic", "context-results:3",
             "--topic", "context-dead-letters:1"],
            environment: ProcessGroupSetup.baseEnvironment,
            standardError: directory.appendingPathComponent("mock-kafka.log")
        )
        let simulator = try ChildProcess(
            mioctxExecutable(),
            ["sim", "--port", "0", "--latency-ms", "0", "--client-id", clientID, "--client-secret", clientSecret,
             "--redirect-url", redirectURL,
             // Codes live 10 minutes, not Mio's 60 s: on a loaded CI machine the `tokens connect` process once
             // reached the simulator more than 60 s after its consent ("authorization code expired").
             "--code-ttl", "600"],
            environment: ProcessGroupSetup.baseEnvironment,
            standardError: directory.appendingPathComponent("sim.log")
        )
        do {
            let setup = RevocationAcrossProcesses(
                directory: directory, bootstrapServers: try mockKafka.firstLine(), simulatorURL: try simulator.firstLine(),
                store: store(directory), keys: TokenKeyring.generateEntry(), logger: logger
            )
            try await body(setup)
            await simulator.stop()
            await mockKafka.stop()
            try? FileManager.default.removeItem(at: directory)
        } catch {
            await simulator.stop(signal: SIGKILL)
            await mockKafka.stop(signal: SIGKILL)
            print("revocation across processes: logs kept in \(directory.path)")
            throw error
        }
    }

    /// `POST /sim/authorize`: the simulator's consent of Mio account `account`, an authorization code.
    func authorizationCode(account: String) async throws -> String {
        var request = URLRequest(url: try #require(URL(string: "\(simulatorURL)/sim/authorize")))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"userId":"\#(account)"}"#.utf8)
        let (data, _) = try await URLSession.shared.data(for: request)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(object["code"] as? String)
    }

    /// `mioctx ARGUMENTS` to its end, with the shared environment plus `extra`; its output when it exits 0.
    @discardableResult
    func mioctx(_ arguments: [String], extra: [String: String] = [:]) async throws -> ProcessOutput {
        let output = try await CapturedProcess(
            mioctxExecutable(), arguments, environment: environment.merging(extra) { $1 }, in: directory
        ).run()
        #expect(output.status == 0, "mioctx \(arguments.joined(separator: " ")): \(output.standardError)")
        return output
    }

    /// Connects `user` as Mio account `account` with `mioctx tokens connect` (the code in the environment).
    func connect(_ user: String, account: String) async throws {
        let code = try await authorizationCode(account: account)
        try await mioctx(["tokens", "connect", "--user", user], extra: ["MIOCTX_AUTHORIZATION_CODE": code])
    }

    /// Starts `mioctx run` in consumer group `group`.
    func startWorker(group: String) throws -> ChildProcess {
        var environment = environment
        environment["MIOCTX_KAFKA_GROUP_ID"] = group
        return try ChildProcess(
            mioctxExecutable(),
            ["run", "--kafka-bootstrap-servers", bootstrapServers, "--max-in-flight", "16", "--http-port", "0",
             "--log-level", "info"],
            environment: environment,
            standardError: directory.appendingPathComponent("worker-\(group).log")
        )
    }

    /// Produces one job per entry of `jobs` (id, user), keyed by user.
    func produce(_ jobs: [(id: String, user: String)]) async throws {
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            defer { producer.shutdown() }
            for job in jobs {
                let value = #"{"id":"\#(job.id)","userId":"\#(job.user)","query":"q \#(job.id)"}"#
                _ = try await producer.send(
                    topic: "context-requests", key: Array(job.user.utf8), value: Array(value.utf8)
                )
            }
        }
    }
}

/// One result read from the output topic.
struct ReadResult: Sendable {
    var id: String
    var status: String
    var code: String?
    var context: String?
}

/// Every result on the output topic, read from the beginning by a group of its own, as they arrive.
final class OutputTopicResults: Sendable {
    /// Shared with the reading task, which starts before `self` is whole.
    private final class Received: Sendable {
        let list = Mutex<[ReadResult]>([])
    }

    private let received = Received()
    private let consumer: KafkaConsumer
    private let task: Task<Void, any Error>

    init(kafka: KafkaConfiguration, logger: Logger) throws {
        let consumer = try KafkaConsumer(
            configuration: kafka, groupID: "results-\(UUID().uuidString)", topics: ["context-results"], logger: logger
        )
        self.consumer = consumer
        let received = self.received
        task = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                for await message in consumer.messages {
                    guard let value = message.value,
                        let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any],
                        let id = object["id"] as? String
                    else { continue }
                    let result = ReadResult(
                        id: id, status: object["status"] as? String ?? "",
                        code: (object["error"] as? [String: Any])?["code"] as? String,
                        context: object["context"] as? String
                    )
                    received.list.withLock { $0.append(result) }
                }
                try await group.waitForAll()
            }
        }
    }

    /// Waits until every job of `ids` has `each` results; returns them by job id.
    func waitFor(_ ids: [String], each: Int) async throws -> [String: [ReadResult]] {
        let wanted = Set(ids)
        return try await withPatience("\(each) results for each of \(ids.count) jobs") {
            while true {
                let byID = Dictionary(grouping: self.received.list.withLock { $0 }.filter { wanted.contains($0.id) }, by: \.id)
                if wanted.allSatisfy({ (byID[$0]?.count ?? 0) >= each }) { return byID }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func stop() async throws {
        consumer.close()
        try await task.value
    }
}

enum RevocationAcrossProcessesScenario {
    static func run(store: @escaping @Sendable (URL) -> String) async throws {
        try await RevocationAcrossProcesses.with(store: store) { setup in
            let run = UUID().uuidString.prefix(8).lowercased()
            let revoked = "revoked-\(run)"
            let reconnected = "reconnected-\(run)"
            try await setup.connect(revoked, account: "mio-\(revoked)")
            try await setup.connect(reconnected, account: "mio-\(reconnected)")

            let workers = try ["a", "b"].map { try setup.startWorker(group: "workers-\($0)-\(run)") }
            let results = try OutputTopicResults(kafka: setup.kafka, logger: setup.logger)
            do {
                // Both workers serve both users: each caches both access tokens.
                let before = (0..<4).flatMap { [(id: "before-\($0)-r", user: revoked), (id: "before-\($0)-c", user: reconnected)] }
                try await setup.produce(before)
                for (id, answers) in try await results.waitFor(before.map(\.id), each: 2) {
                    #expect(answers.count >= 2, "\(id): \(answers.count) results")
                    for answer in answers {
                        #expect(answer.status == "ok", "\(id): \(answer.status) \(answer.code ?? "")")
                    }
                }

                // A third process revokes one user (the store only: Mio still accepts its access token), a fourth
                // connects the other user with another Mio account.
                try await setup.mioctx(["tokens", "revoke", revoked])
                try await setup.connect(reconnected, account: "mio-\(reconnected)-second")
                // Every cached token is now older than the interval (they were read before the writes above).
                try await Task.sleep(for: .seconds(RevocationAcrossProcesses.interval) + .milliseconds(500))

                let after = (0..<4).flatMap { [(id: "after-\($0)-r", user: revoked), (id: "after-\($0)-c", user: reconnected)] }
                try await setup.produce(after)
                for (id, answers) in try await results.waitFor(after.map(\.id), each: 2) {
                    #expect(answers.count >= 2, "\(id): \(answers.count) results, one per worker expected")
                    for answer in answers {
                        if id.hasSuffix("-r") {
                            #expect(answer.status == "reauth_required", "\(id): a worker still used the revoked token")
                        } else {
                            #expect(answer.status == "ok", "\(id): \(answer.status) \(answer.code ?? "")")
                            #expect(
                                answer.context?.contains("mio-\(reconnected)-second") == true,
                                "\(id): a worker still used the tokens of before the reconnection: \(answer.context ?? "")"
                            )
                        }
                    }
                }
            } catch {
                try? await results.stop()
                for worker in workers { await worker.stop(signal: SIGKILL) }
                throw error
            }
            try await results.stop()
            for worker in workers { #expect(await worker.stop() == 0) }
        }
    }
}

@Suite(.serialized) struct RevocationAcrossProcessesTests {
    @Test(.timeLimit(.minutes(5)))
    func revocationAndReconnectionReachTwoWorkerProcessesWithinTheIntervalOnSQLite() async throws {
        try await RevocationAcrossProcessesScenario.run { directory in
            "sqlite:" + directory.appendingPathComponent("tokens.sqlite").path
        }
    }

    /// On one PostgreSQL database (the public schema of `MIOCTX_TEST_POSTGRES_URL`; the users are new to this run).
    @Test(
        .enabled(if: ProcessInfo.processInfo.environment["MIOCTX_TEST_POSTGRES_URL"]?.isEmpty == false,
                 "MIOCTX_TEST_POSTGRES_URL is not set (scripts/test-postgres.sh)"),
        .timeLimit(.minutes(5))
    )
    func revocationAndReconnectionReachTwoWorkerProcessesWithinTheIntervalOnPostgres() async throws {
        let url = try #require(ProcessInfo.processInfo.environment["MIOCTX_TEST_POSTGRES_URL"])
        try await RevocationAcrossProcessesScenario.run { _ in url }
    }
}
