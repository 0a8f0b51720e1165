import KafkaPipeline
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import Foundation
import Kafka
import Logging
import Mio
import MioSimulator
import MioTokens
import MioctxTestSupport
import Synchronization
import Testing

/// `mioctx run` as its own OS process, killed or stopped in mid-run, then started again.
@Suite("mioctx run as a process: crash and graceful stop")
struct WorkerProcessTests {
    static let maxInFlight = 64

    /// Kafka and Mio in this process (both on loopback), a SQLite token store on disk, and the worker binary.
    struct Setup {
        let harness: WorkerHarness
        let storePath: String
        let keys: String
        let directory: URL

        func startWorker(
            commitInterval: String = "20ms", httpPort: Int = 0, logLevel: String = "warning",
            extraEnvironment: [String: String] = [:]
        ) throws -> ChildProcess {
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MIO") }
            environment["MIOCTX_TOKEN_KEYS"] = keys
            environment["MIO_CLIENT_ID"] = harness.mio.configuration.clientID
            environment["MIO_CLIENT_SECRET"] = harness.mio.configuration.clientSecret
            environment["MIO_REDIRECT_URL"] = harness.mio.configuration.redirectURL
            environment["MIO_API_URL"] = harness.mio.configuration.apiURL
            environment["MIOCTX_PROCESSING_COMMIT_INTERVAL"] = commitInterval
            environment["MIOCTX_PROCESSING_SHUTDOWN_GRACE_PERIOD"] = "20s"
            environment["MIOCTX_KAFKA_PROPERTIES"] = "session.timeout.ms=6000,heartbeat.interval.ms=500"
            environment.merge(extraEnvironment) { _, extra in extra }
            return try ChildProcess(
                mioctxExecutable(),
                [
                    "run",
                    "--kafka-bootstrap-servers", harness.cluster.bootstrapServers,
                    "--token-store", "sqlite:\(storePath)",
                    "--max-in-flight", "\(WorkerProcessTests.maxInFlight)",
                    "--http-port", "\(httpPort)",
                    "--log-level", logLevel,
                ],
                environment: environment,
                standardError: directory.appendingPathComponent("worker.log")
            )
        }
    }

    static func withSetup<T: Sendable>(_ body: (Setup) async throws -> T) async throws -> T {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 100))
        return try await WorkerHarness.with(partitions: 6, simulatorConfiguration: simulator) { harness in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-process-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let keys = TokenKeyring.generateEntry()
            let storePath = directory.appendingPathComponent("tokens.sqlite").path
            let store = try SQLiteTokenStore(path: storePath, keyring: TokenKeyring(parsing: keys))
            for user in (0..<30).map({ "process-user-\($0)" }) {
                let response = try await harness.mio.exchangeCodeForTokens(code: harness.simulator.authorize(userID: user))
                try await store.upsert(userID: user, tokens: TokenGrant(response: response, receivedAt: Date()))
            }
            return try await body(Setup(harness: harness, storePath: storePath, keys: keys, directory: directory))
        }
    }

    static func jobs(_ count: Int) -> [TestJob] {
        (0..<count).map { (id: "p-\($0)", userID: "process-user-\($0 % 30)", query: "q\($0)") }
    }

    /// A reader of the output topic that keeps every result id it sees.
    final class ResultCounter: Sendable {
        private let ids = LockedIDs()
        private let consumer: KafkaConsumer
        private let task: Task<Void, any Error>

        init(_ harness: WorkerHarness) throws {
            let consumer = try KafkaConsumer(
                configuration: harness.kafka,
                groupID: "result-counter-\(UUID().uuidString)",
                topics: [WorkerHarness.outputTopic],
                logger: harness.logger
            )
            self.consumer = consumer
            let ids = self.ids
            self.task = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await consumer.run() }
                    for await message in consumer.messages {
                        if let result = try? ResultMessage(message) {
                            ids.add(result.id)
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }

        var all: [String] { ids.all }
        var unique: Int { Set(ids.all).count }

        func stop() async throws {
            consumer.close()
            try await task.value
        }
    }

    @Test func aKilledWorkerLosesNoJobAndRepeatsFewerThanTheInFlightLimit() async throws {
        try await Self.withSetup { setup in
            let jobs = Self.jobs(3000)
            try await setup.harness.produceJobs(jobs)
            let counter = try ResultCounter(setup.harness)

            let first = try setup.startWorker()
            try await waitUntil("the first worker to publish 500 results") { counter.unique >= 500 }
            let killStatus = await first.stop(signal: SIGKILL)
            #expect(first.wasKilledBySignal && killStatus == SIGKILL)
            let beforeRestart = counter.all.count

            let second = try setup.startWorker()
            try await waitUntil("every job to have a result") { counter.unique >= jobs.count }
            #expect(await second.stop() == 0)
            try await counter.stop()

            let ids = counter.all
            #expect(Set(ids) == Set(jobs.map(\.id)), "every job has a result")
            let repeats = ids.count - Set(ids).count
            print("crash test: \(jobs.count) jobs, killed after \(beforeRestart) results, \(repeats) repeated results")
            #expect(repeats < Self.maxInFlight, "\(repeats) repeated results (first worker published \(beforeRestart))")
        }
    }

    @Test func sigtermDrainsExitsZeroAndARestartRepeatsNothing() async throws {
        try await Self.withSetup { setup in
            let jobs = Self.jobs(2000)
            try await setup.harness.produceJobs(jobs)
            let counter = try ResultCounter(setup.harness)

            let first = try setup.startWorker(commitInterval: "5s")
            try await waitUntil("the first worker to publish 300 results") { counter.unique >= 300 }
            #expect(await first.stop(signal: SIGTERM) == 0, "graceful stop exits 0")
            #expect(!first.wasKilledBySignal)

            let second = try setup.startWorker(commitInterval: "5s")
            try await waitUntil("every job to have a result") { counter.unique >= jobs.count }
            #expect(await second.stop(signal: SIGTERM) == 0)
            try await counter.stop()

            let ids = counter.all
            #expect(Set(ids) == Set(jobs.map(\.id)))
            #expect(ids.count == Set(ids).count, "a graceful stop commits everything it published: no repeats")
        }
    }
}

/// Ids seen by a reader, shared with its task.
final class LockedIDs: Sendable {
    private let box = LockedValue<[String]>([])

    func add(_ id: String) { box.withLock { $0.append(id) } }
    var all: [String] { box.withLock { $0 } }
}

/// A value behind a lock that closures can capture.
final class LockedValue<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
