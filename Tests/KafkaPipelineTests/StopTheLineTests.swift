import Foundation
import Kafka
import KafkaPipeline
import Mio
import MioSimulator
import MioTokens
import MioctxTestSupport
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import Testing

/// An operator's mistake (a wrong client secret, a missing encryption key) stops the line: the worker takes no job,
/// answers none and commits none, and says what to fix; a restart with the fix processes the whole backlog.
@Suite(.serialized) struct StopTheLineTests {
    static let jobCount = 40

    /// A worker over `tokens` whose handler stops the line on an operator's mistake; it gives in-flight jobs one
    /// second at shutdown.
    func startWorker(
        _ harness: WorkerHarness,
        tokens: TokenProvider,
        mio: MioClient
    ) throws -> (RunningWorker, MioHealth) {
        let health = MioHealth(configuration: .init(haltProbeInterval: .seconds(60)), logger: harness.logger)
        let handler = JobHandler(
            api: MioContextAPI(mio),
            tokens: MioTokenSource(tokens),
            health: health,
            logger: harness.logger
        )
        var configuration = harness.workerConfiguration(maxInFlight: 16)
        configuration.shutdownGracePeriod = .seconds(1)
        let worker = try KafkaWorker(configuration: configuration, handler: handler, logger: harness.logger)
        return (RunningWorker(worker, logger: harness.logger), health)
    }

    /// Waits until the line stops, checks that nothing was answered or committed meanwhile, and stops the worker.
    func expectStoppedLine(
        _ worker: RunningWorker,
        _ health: MioHealth,
        harness: WorkerHarness,
        mentioning fix: String,
        secrets: [String]
    ) async throws {
        try await waitUntil("the line to stop") { health.haltReason != nil }
        let reason = try #require(health.haltReason)
        #expect(reason.contains(fix), "the reason says what to fix: \(reason)")
        for secret in secrets { #expect(!reason.contains(secret)) }
        #expect(!health.isTakingJobs)
        // A stopped line stays stopped: nothing reaches Mio's context endpoint, nothing is committed.
        try await Task.sleep(for: .seconds(1))
        #expect(harness.simulator.stats().count("POST /v1/context", status: 200) == 0)
        #expect(worker.committedTotal == 0)
        try await worker.stop()
        #expect(worker.committedTotal == 0, "the backlog stays uncommitted")
    }

    /// Waits for every job's result and checks that each is `ok` and came once: the stopped worker answered none.
    func expectBacklogProcessed(
        _ jobs: [TestJob],
        ends: [Int32: Int64],
        harness: WorkerHarness,
        worker: RunningWorker
    ) async throws {
        try await worker.waitUntilCommitted(ends)
        let results = try await harness.readResults(forJobs: jobs.count).map { try ResultMessage($0) }
        #expect(Set(results.map(\.id)) == Set(jobs.map(\.id)))
        #expect(results.count == jobs.count, "no job was answered by the stopped worker")
        #expect(results.allSatisfy { $0.status == "ok" }, "\(Set(results.map(\.status)))")
        try await worker.stop()
    }

    @Test func wrongClientSecretLeavesTheBacklogUnansweredUntilACorrectedRestart() async throws {
        // Access tokens live one second, so every job needs a refresh, which the client secret authenticates.
        let simulator = MioSimulator.Configuration(tokenTTL: .seconds(1), clientAuthenticationFailure: .invalidClient)
        try await WorkerHarness.with(partitions: 3, simulatorConfiguration: simulator) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "secret", users: 5, jobs: Self.jobCount)
            try await Task.sleep(for: .milliseconds(1500))

            var wrong = harness.mio.configuration
            wrong.clientSecret = "not-the-secret-4711"
            try await MioClient.withClient(configuration: wrong, logger: harness.logger) { wrongMio in
                let tokens = TokenProvider(store: harness.store, refresher: wrongMio, logger: harness.logger)
                let (worker, health) = try startWorker(harness, tokens: tokens, mio: wrongMio)
                try await expectStoppedLine(
                    worker, health, harness: harness, mentioning: "MIO_CLIENT_SECRET",
                    secrets: ["not-the-secret-4711", simulator.clientSecret]
                )
            }
            #expect(harness.simulator.stats().count("POST /v1/auth/oauth2/token", status: 401) > 0, "the secret was refused")

            let (worker, _) = try startWorker(harness, tokens: harness.tokens, mio: harness.mio)
            try await expectBacklogProcessed(jobs, ends: ends, harness: harness, worker: worker)
        }
    }

    @Test func missingKeyIDLeavesTheBacklogUnansweredUntilACorrectedRestart() async throws {
        try await WorkerHarness.with(partitions: 3) { harness in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-keys-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let oldKey = TokenKeyring.generateEntry(keyID: "old")
            let newKey = TokenKeyring.generateEntry(keyID: "new")

            let users = (0 ..< 5).map { "keys-\($0)" }
            do {
                let store = try SQLiteTokenStore(path: path, keyring: TokenKeyring(parsing: oldKey))
                for user in users {
                    let response = try await harness.mio.exchangeCodeForTokens(code: harness.simulator.authorize(userID: user))
                    try await store.upsert(userID: user, tokens: TokenGrant(response: response, receivedAt: Date()))
                }
            }
            let jobs = (0 ..< Self.jobCount).map { (id: "keys-job-\($0)", userID: users[$0 % users.count], query: "q\($0)") }
            let ends = try await harness.produceJobs(jobs)

            // A deployment that lost the key the rows were written with.
            do {
                let store = try SQLiteTokenStore(path: path, keyring: TokenKeyring(parsing: newKey))
                let tokens = TokenProvider(store: store, refresher: harness.mio, logger: harness.logger)
                let (worker, health) = try startWorker(harness, tokens: tokens, mio: harness.mio)
                try await expectStoppedLine(
                    worker, health, harness: harness, mentioning: "MIOCTX_TOKEN_KEYS",
                    secrets: [oldKey, newKey].map { String($0.split(separator: ":")[1]) }
                )
            }

            let store = try SQLiteTokenStore(path: path, keyring: TokenKeyring(parsing: "\(newKey),\(oldKey)"))
            let tokens = TokenProvider(store: store, refresher: harness.mio, logger: harness.logger)
            let (worker, _) = try startWorker(harness, tokens: tokens, mio: harness.mio)
            try await expectBacklogProcessed(jobs, ends: ends, harness: harness, worker: worker)
        }
    }
}
