import Coordination
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import Mio
import MioTokens
import MioctxTestSupport
import PipelineTestSupport
import Synchronization
import Testing

/// Everything as its own OS process, as in production: `mioctx mock-kafka` (3 brokers, topics with 6 partitions
/// replicated on all), `mioctx sim`, and `mioctx run` workers of the debug build sharing one SQLite token store.
/// The test process only produces the jobs and reads the output topic.
final class ProcessGroupSetup: Sendable {
    static let inputTopic = "context-requests"
    static let outputTopic = "context-results"
    static let partitions: Int32 = 6
    static let clientID = "process-client"
    static let clientSecret = "process-secret"
    static let redirectURL = "http://127.0.0.1:9/oauth/callback"

    let directory: URL
    let bootstrapServers: String
    let simulatorURL: String
    let storePath: String
    let keys: String
    let logger: Logger
    let maxInFlight: Int
    let commitInterval: Duration
    private let mockKafka: ChildProcess
    private let simulator: ChildProcess
    private let starts = Atomic<Int>(0)
    private let logsWanted = Atomic<Bool>(false)

    /// Keeps the scenario's logs (the workers', the cluster's and the simulator's) after it ends, and prints where.
    func keepLogs() {
        logsWanted.store(true, ordering: .relaxed)
    }

    var kafka: KafkaConfiguration { KafkaConfiguration(bootstrapServers: bootstrapServers) }

    private init(
        directory: URL, mockKafka: ChildProcess, bootstrapServers: String, simulator: ChildProcess, simulatorURL: String,
        storePath: String, keys: String, logger: Logger, maxInFlight: Int, commitInterval: Duration
    ) {
        self.directory = directory
        self.mockKafka = mockKafka
        self.bootstrapServers = bootstrapServers
        self.simulator = simulator
        self.simulatorURL = simulatorURL
        self.storePath = storePath
        self.keys = keys
        self.logger = logger
        self.maxInFlight = maxInFlight
        self.commitInterval = commitInterval
    }

    /// Starts the cluster and the simulator, connects `users` users (`process-user-N`) through the simulator's
    /// consent and the real code exchange into the SQLite store, runs `body`, and stops both.
    static func with<T: Sendable>(
        name: String,
        users: Int,
        latencyMs: Int,
        maxInFlight: Int,
        commitInterval: Duration,
        _ body: (ProcessGroupSetup) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "process-\(name)")
        logger.logLevel = .warning
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let mockKafka = try ChildProcess(
            mioctxExecutable(),
            ["mock-kafka", "--brokers", "3", "--topic", "\(inputTopic):\(partitions):3", "--topic", "\(outputTopic):\(partitions):3",
             "--topic", "context-dead-letters:1:3"],
            environment: baseEnvironment,
            standardError: directory.appendingPathComponent("mock-kafka.log")
        )
        let simulator = try ChildProcess(
            mioctxExecutable(),
            ["sim", "--port", "0", "--latency-ms", "\(latencyMs)", "--client-id", clientID, "--client-secret", clientSecret,
             "--redirect-url", redirectURL],
            environment: baseEnvironment,
            standardError: directory.appendingPathComponent("sim.log")
        )
        do {
            let bootstrapServers = try mockKafka.firstLine()
            let simulatorURL = try simulator.firstLine()
            let keys = TokenKeyring.generateEntry()
            let storePath = directory.appendingPathComponent("tokens.sqlite").path
            try await connect(users: users, simulatorURL: simulatorURL, storePath: storePath, keys: keys, logger: logger)
            let setup = ProcessGroupSetup(
                directory: directory, mockKafka: mockKafka, bootstrapServers: bootstrapServers, simulator: simulator,
                simulatorURL: simulatorURL, storePath: storePath, keys: keys, logger: logger, maxInFlight: maxInFlight,
                commitInterval: commitInterval
            )
            let result = try await body(setup)
            await simulator.stop()
            await mockKafka.stop()
            if ProcessInfo.processInfo.environment["MIOCTX_TEST_KEEP_LOGS"] != nil || setup.logsWanted.load(ordering: .relaxed) {
                print("process scenario \(name): logs kept in \(directory.path)")
            } else {
                try? FileManager.default.removeItem(at: directory)
            }
            return result
        } catch {
            await simulator.stop(signal: SIGKILL)
            await mockKafka.stop(signal: SIGKILL)
            print("process scenario \(name): logs kept in \(directory.path)")
            throw error
        }
    }

    /// This process's environment without Mio's or mioctx's own variables, at log level warning.
    static var baseEnvironment: [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MIO") }
        environment["MIOCTX_LOG_LEVEL"] = "warning"
        return environment
    }

    static func user(_ index: Int) -> String { "process-user-\(index)" }

    private static func connect(users: Int, simulatorURL: String, storePath: String, keys: String, logger: Logger) async throws {
        let store = try SQLiteTokenStore(path: storePath, keyring: TokenKeyring(parsing: keys))
        let mio = MioClient(
            configuration: MioClient.Configuration(
                clientID: clientID, clientSecret: clientSecret, redirectURL: redirectURL, apiURL: simulatorURL
            ),
            logger: logger
        )
        do {
            for index in 0..<users {
                let code = try await authorizationCode(for: user(index), simulatorURL: simulatorURL)
                let response = try await mio.exchangeCodeForTokens(code: code)
                try await store.upsert(userID: user(index), tokens: TokenGrant(response: response, receivedAt: Date()))
            }
            try await mio.shutdown()
        } catch {
            try? await mio.shutdown()
            throw error
        }
    }

    /// `POST /sim/authorize`: the simulator's consent, an authorization code for the user.
    private static func authorizationCode(for user: String, simulatorURL: String) async throws -> String {
        var request = URLRequest(url: try #require(URL(string: "\(simulatorURL)/sim/authorize")))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"userId":"\#(user)"}"#.utf8)
        let (data, _) = try await URLSession.shared.data(for: request)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(object["code"] as? String)
    }

    /// Waits until the group commits again on every partition not yet finished (`ends`: partition -> end
    /// offset): its committed offset moves within three commit intervals. That is the group back to stable after
    /// a rebalance, as seen from outside (librdkafka commits only while its member is stable).
    /// Returns whether it did within `limit`.
    func waitForCommitsOnEveryPartition(ends: [Int32: Int64], limit: Duration, group: String = "mioctx") async throws -> Bool {
        let reader = try KafkaConsumer(configuration: kafka, groupID: group, topics: [Self.inputTopic], logger: logger)
        defer { reader.close() }
        let partitions = (0..<Self.partitions).map { KafkaTopicPartition(topic: Self.inputTopic, partition: $0) }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let before = try await reader.committedOffsets(for: partitions)
            try await Task.sleep(for: commitInterval * 3)
            let after = try await reader.committedOffsets(for: partitions)
            let moving = partitions.allSatisfy { partition in
                let now = after[partition] ?? -1
                return now >= (ends[partition.partition] ?? 0) || now > (before[partition] ?? -1)
            }
            if moving { return true }
        }
        return false
    }

    /// Produces `count` jobs `prefix-N` for `users` users, round robin, keyed by user id; returns them and the
    /// end offset of each partition.
    func produceJobs(prefix: String, count: Int, users: Int) async throws -> [TestJob] {
        try await produceJobsWithEnds(prefix: prefix, count: count, users: users).jobs
    }

    func produceJobsWithEnds(prefix: String, count: Int, users: Int) async throws -> (jobs: [TestJob], ends: [Int32: Int64]) {
        let jobs = (0..<count).map { (id: "\(prefix)-\($0)", userID: Self.user($0 % users), query: "q\($0)") }
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        let ends = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            defer { producer.shutdown() }
            return try await withThrowingTaskGroup(of: KafkaDeliveryReport.self) { sends in
                for job in jobs {
                    sends.addTask {
                        let value = #"{"id":"\#(job.id)","userId":"\#(job.userID)","query":"\#(job.query)"}"#
                        return try await producer.send(
                            topic: Self.inputTopic, key: Array(job.userID.utf8), value: Array(value.utf8)
                        )
                    }
                }
                var ends: [Int32: Int64] = [:]
                for try await report in sends {
                    ends[report.partition] = max(ends[report.partition] ?? 0, report.offset + 1)
                }
                return ends
            }
        }
        return (jobs, ends)
    }

    /// Starts `mioctx run` (a new process, its log in a file of its own, at info level).
    func startWorker(name: String, requestsPerSecond: Int? = nil) throws -> WorkerProcess {
        let start = starts.add(1, ordering: .relaxed).newValue
        let log = directory.appendingPathComponent("worker-\(name)-\(start).log")
        var environment = Self.baseEnvironment
        environment["MIOCTX_LOG_LEVEL"] = nil
        environment["MIOCTX_TOKEN_KEYS"] = keys
        environment["MIO_CLIENT_ID"] = Self.clientID
        environment["MIO_CLIENT_SECRET"] = Self.clientSecret
        environment["MIO_REDIRECT_URL"] = Self.redirectURL
        environment["MIO_API_URL"] = simulatorURL
        environment["MIOCTX_PROCESSING_COMMIT_INTERVAL"] = "\(Int(commitInterval.timeInterval * 1000))ms"
        // The issue's bound is the jobs in flight plus one commit interval of work: finished work may wait one commit
        // interval for its commit before the worker stops taking jobs (the default, `auto`, allows 1.25 intervals).
        environment["MIOCTX_PROCESSING_MAX_UNCOMMITTED_TIME"] = "\(Int(commitInterval.timeInterval * 1000))ms"
        environment["MIOCTX_PROCESSING_SHUTDOWN_GRACE_PERIOD"] = "20s"
        environment["MIOCTX_KAFKA_PROPERTIES"] = "session.timeout.ms=6000,heartbeat.interval.ms=500"
        if let requestsPerSecond {
            environment["MIOCTX_PROCESSING_REQUESTS_PER_SECOND"] = "\(requestsPerSecond)"
        }
        let process = try ChildProcess(
            mioctxExecutable(),
            [
                "run",
                "--kafka-bootstrap-servers", bootstrapServers,
                "--token-store", "sqlite:\(storePath)",
                "--max-in-flight", "\(maxInFlight)",
                "--http-port", "0",
                "--log-level", "info",
            ],
            environment: environment,
            standardError: log
        )
        return WorkerProcess(name: name, process: process, log: log)
    }
}

/// One `mioctx run` process and its log file.
struct WorkerProcess: Sendable {
    let name: String
    let process: ChildProcess
    let log: URL

    /// The log's text so far.
    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Whether the worker has received an assignment (it logs each one).
    var hasBeenAssigned: Bool { logText.contains("Kafka partitions assigned") }

    /// Lines that say the worker lost partitions (its session or generation expired before it could commit).
    /// Lines that say the worker lost partitions (revoked with `lost=true`): its uncommitted work is repeated.
    /// A commit refused with ILLEGAL_GENERATION during a rebalance is not one: the offsets stay stored and are
    /// committed in the next generation or on revocation (the repeat counts say whether anything was redone).
    var lostLines: [Substring] {
        logText.split(separator: "\n").filter { $0.contains("Kafka partitions lost") }
    }

    /// The lines about membership, commits and stopping, for a scenario that went wrong.
    var membershipLines: [Substring] {
        let words = ["Kafka partitions", "commit", "drain", "stopping", "not taking new jobs", "taking jobs again"]
        return logText.split(separator: "\n").filter { line in words.contains { line.contains($0) } }
    }

    /// Revocation commits the coordinator refused during a rebalance (the mock's SyncGroup race, docs/kafka.md).
    var refusedRevocationCommitLines: [Substring] {
        logText.split(separator: "\n").filter {
            $0.contains("offset commit of revoked partitions failed") && $0.contains("REBALANCE_IN_PROGRESS")
        }
    }

    /// Commits refused because the group's generation moved on (printed, not asserted).
    var refusedCommitLines: [Substring] {
        logText.split(separator: "\n").filter { $0.contains("ILLEGAL_GENERATION") }
    }
}

/// A reader of the output topic from the beginning (a fresh group) that counts results by job id as they come:
/// progress while the scenario runs. The final, complete count is ``OutputTopicCount``.
final class ResultProgress: Sendable {
    private let counts = LockedValue<Counts>(Counts())

    private struct Counts: Sendable {
        var results = 0
        var ids: [String: Int] = [:]
    }
    private let consumer: KafkaConsumer
    private let task: Task<Void, any Error>

    init(kafka: KafkaConfiguration, topic: String, logger: Logger) throws {
        let consumer = try KafkaConsumer(
            configuration: kafka, groupID: "progress-\(UUID().uuidString)", topics: [topic], logger: logger
        )
        self.consumer = consumer
        let counts = self.counts
        self.task = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                for await message in consumer.messages {
                    guard let value = message.value,
                        let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any],
                        let id = object["id"] as? String, !id.hasPrefix(OutputTopicCount.sentinelPrefix)
                    else { continue }
                    counts.withLock { counts in
                        counts.results += 1
                        counts.ids[id, default: 0] += 1
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    /// Results read so far, repeats included.
    var results: Int { counts.withLock { $0.results } }
    /// Distinct job ids with a result so far.
    var unique: Int { counts.withLock { $0.ids.count } }
    /// Results beyond the first of their job, so far.
    var repeats: Int { counts.withLock { $0.results - $0.ids.count } }

    func stop() async throws {
        consumer.close()
        try await task.value
    }
}
