import ArgumentParser
import Coordination
import KafkaPipeline
import Pipeline
import Foundation
import HTTPEndpoints
import Prometheus
import Kafka
import Logging
import Mio
import MioSimulator
import MioTokens
import ServiceLifecycle
import Settings
import UnixSignals

/// `mioctx demo`: the whole pipeline on a laptop, with nothing to set up.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run mioctx end to end on embedded defaults: mock Kafka, Mio simulator, SQLite token store.",
        discussion: """
            Starts librdkafka's mock cluster in process, the Mio simulator on loopback and a temporary SQLite \
            token store with an ephemeral key; connects users through the real OAuth code exchange; produces \
            jobs (including users whose access tokens expired, revoked users, unknown users, summary jobs and \
            malformed messages); runs the production worker on them, and prints a summary. The worker reads the             settings as `mioctx run` does (--max-in-flight, --log-level, ...), except for Kafka, Mio and the token             store, which are the demo's own; its log level is warning unless one is set.


            """ + SettingsReference.flagsHelp
    )

    /// The demo's one time source: how long the worker took, and the grants' receipt times.
    static let time = TimeSource.system

    @Option(help: "Number of jobs to produce.")
    var jobs: Int = 2000

    @Option(help: "Number of users to connect.")
    var users: Int = 300

    @Option(help: "Mio simulator latency per request, in milliseconds (plus up to half of it as jitter).")
    var latencyMs: Int = 50

    @Option(help: "Share of Mio requests that fail with 503 (retried by the worker).")
    var errorRate: Double = 0.01

    @Option(help: "Seed for the simulator's random faults.")
    var seed: UInt64 = 7

    @Flag(help: "Print the worker's Prometheus metrics (as GET /metrics serves them) after the summary.")
    var printMetrics = false

    func validate() throws {
        guard jobs >= 10 else { throw ValidationError("--jobs must be at least 10, got \(jobs)") }
        guard users >= 10 else { throw ValidationError("--users must be at least 10, got \(users)") }
        guard latencyMs >= 0 else { throw ValidationError("--latency-ms must not be negative, got \(latencyMs)") }
        guard (0..<1).contains(errorRate) else { throw ValidationError("--error-rate must be in [0, 1), got \(errorRate)") }
    }

    func run() async throws {
        let settings = try await CommandSettings.load(requiring: [])
        let logger = makeStandardErrorLogger(
            label: "mioctx.demo", level: LogSetup(settings, quietLevel: .warning).level
        )
        let registry = MetricsBootstrap.bootstrap()
        let report = try await DemoRun(options: self, settings: settings, logger: logger).run()
        print(report)
        if printMetrics {
            var exposition: [UInt8] = []
            registry.emit(into: &exposition)
            let lines = String(decoding: exposition, as: UTF8.self).split(separator: "\n")
            print("\nmetrics (GET /metrics, histogram buckets left out):")
            for line in lines where line.hasPrefix("mioctx_") && !line.contains("_bucket{") {
                print("  " + line)
            }
        }
    }
}

/// One demo run; its output is the report.
struct DemoRun {
    static let inputTopic = "context-requests"
    static let outputTopic = "context-results"
    static let deadLetterTopic = "context-dead-letters"

    let options: DemoCommand
    /// The settings read as `mioctx run` reads them; Kafka, Mio and the token store are replaced by the demo's.
    let settings: EffectiveSettings
    let logger: Logger

    init(options: DemoCommand, settings: EffectiveSettings, logger: Logger) {
        self.options = options
        self.settings = settings
        self.logger = logger
    }

    /// The users of the demo, by kind.
    struct Population {
        var healthy: [String]
        /// Their stored access token is no longer accepted by Mio: the worker gets a 401, refreshes, retries.
        var expired: [String]
        /// Revoked at Mio: the refresh fails with invalid_grant, the result is reauth_required.
        var revoked: [String]
        /// Have no summary yet at Mio.
        var new: [String]
        /// Never connected: no_tokens.
        var unknown: [String]

        var connected: [String] { healthy + expired + revoked }
    }

    func run() async throws -> String {
        note("starting the mock Kafka cluster (3 brokers)")
        let cluster = try KafkaMockCluster(brokers: 3, logger: logger)
        try cluster.createTopic(Self.inputTopic, partitions: 6)
        try cluster.createTopic(Self.outputTopic, partitions: 6)
        try cluster.createTopic(Self.deadLetterTopic, partitions: 1)

        let simulatorConfiguration = MioSimulator.Configuration(
            clientID: "mioctx-demo",
            clientSecret: "demo-secret-\(UUID().uuidString)",
            redirectURL: "http://127.0.0.1:8080/oauth/callback",
            faults: MioSimulator.Faults(
                latencyMs: options.latencyMs,
                jitterMs: options.latencyMs / 2,
                rate503: options.errorRate,
                retryAfterSeconds: 1
            ),
            seed: options.seed
        )
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let storePath = directory.appendingPathComponent("tokens.sqlite").path

        return try await MioSimulator.withSimulator(simulatorConfiguration, logger: logger) { simulator in
            note("Mio simulator at \(simulator.baseURL!), token store \(storePath) (ephemeral key)")
            let storeService = TokenStoreService(store: try SQLiteTokenStore(path: storePath, keyring: .ephemeral()))
            let store = storeService.store
            var settings = self.settings
            settings[\.kafka.bootstrapServers] = cluster.bootstrapServers
            settings[\.kafka.groupID] = "mioctx-demo"
            settings[\.kafka.inputTopic] = Self.inputTopic
            settings[\.kafka.outputTopic] = Self.outputTopic
            settings[\.kafka.deadLetterTopic] = Self.deadLetterTopic
            settings[\.mio.apiURL] = simulator.baseURL!
            settings[\.mio.clientID] = simulatorConfiguration.clientID
            settings[\.mio.clientSecret] = Secret(simulatorConfiguration.clientSecret)
            settings[\.mio.redirectURL] = simulatorConfiguration.redirectURL
            if settings.source(of: \.processing.commitInterval) == .default {
                settings[\.processing.commitInterval] = .milliseconds(500)
            }
            let assembly = try WorkerAssembly(settings: settings, store: store, logger: logger)
            // One group in dependency order, as in `mioctx run`: the worker starts once the jobs are produced.
            let jobsProduced = StartGate()
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: storeService)] + assembly.services(startingWorkerAfter: jobsProduced),
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            async let groupRun: Void = group.run()
            let results: [String: [String: Any]]
            let deadLetters: [KafkaMessage]
            let elapsed: Duration
            do {
                let population = makePopulation()
                note("connecting \(population.connected.count) users through the OAuth code exchange")
                try await connect(population, simulator: simulator, mio: assembly.mio, store: store)

                let (jobs, malformed) = makeJobs(population)
                note("producing \(jobs.count) jobs and \(malformed.count) malformed messages")
                try await produce(jobs: jobs, malformed: malformed, bootstrapServers: cluster.bootstrapServers)

                note("running the worker (max \(settings[\.processing.maxInFlight]) jobs in flight)")
                let started = DemoCommand.time.now()
                jobsProduced.open()
                let collected = try await collect(
                    results: jobs.count,
                    deadLetters: malformed.count,
                    bootstrapServers: cluster.bootstrapServers
                )
                results = collected.0
                deadLetters = collected.1
                elapsed = DemoCommand.time.now() - started
            } catch {
                await group.triggerGracefulShutdown()
                try? await groupRun
                throw error
            }
            await group.triggerGracefulShutdown()
            try await groupRun
            let stats = simulator.stats()
            return DemoReport(
                results: results,
                deadLetters: deadLetters,
                elapsed: elapsed,
                tokenStatistics: assembly.tokens.statistics,
                simulatorStats: stats,
                committed: assembly.worker.committedOffsets
            ).text
        }
    }

    private func note(_ line: String) {
        FileHandle.standardError.write(Data(("demo: " + line + "\n").utf8))
    }

    func makePopulation() -> Population {
        let all = (0..<options.users).map { String(format: "user-%04d", $0) }
        let expiredCount = max(1, all.count / 10)
        let revokedCount = max(1, all.count / 50)
        let newCount = max(1, all.count / 20)
        return Population(
            healthy: Array(all.dropFirst(expiredCount + revokedCount)),
            expired: Array(all.prefix(expiredCount)),
            revoked: Array(all.dropFirst(expiredCount).prefix(revokedCount)),
            new: Array(all.suffix(newCount)),
            unknown: (0..<max(1, options.users / 30)).map { String(format: "stranger-%03d", $0) }
        )
    }

    private func connect(_ population: Population, simulator: MioSimulator, mio: MioClient, store: any TokenStore) async throws {
        let expired = Set(population.expired)
        // 32 consents at a time: the simulator's latency applies to the token endpoint too.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, user) in population.connected.enumerated() {
                if index >= 32 {
                    try await group.next()
                }
                group.addTask {
                    let response = try await mio.exchangeCodeForTokens(code: simulator.authorize(userID: user))
                    var grant = TokenGrant(response: response, receivedAt: DemoCommand.time.wallNow())
                    if expired.contains(user) {
                        // Mio no longer accepts this access token although it looks fresh: the 401 path.
                        grant = TokenGrant(
                            accessToken: "atk_expired_\(UUID().uuidString)",
                            refreshToken: grant.refreshToken,
                            expiresAt: grant.expiresAt,
                            issuedAt: grant.issuedAt
                        )
                    }
                    try await store.upsert(userID: user, tokens: grant)
                }
            }
            try await group.waitForAll()
        }
        for user in population.revoked {
            simulator.revoke(userID: user)
        }
        for user in population.new {
            simulator.markNew(userID: user)
        }
    }

    /// Jobs (as JSON values keyed by user) and malformed messages, deterministic for a given size.
    func makeJobs(_ population: Population) -> (jobs: [(key: String, value: [UInt8])], malformed: [[UInt8]]) {
        let connected = population.connected
        var jobs: [(key: String, value: [UInt8])] = []
        for index in 0..<options.jobs {
            let id = "job-\(index)"
            let user: String
            var object: [String: Any]
            if index % 50 == 7 {
                user = population.unknown[index % population.unknown.count]
                object = ["id": id, "userId": user, "query": "favourite tools"]
            } else if index % 25 == 3 {
                user = index % 2 == 0 ? population.new[index % population.new.count] : connected[index % connected.count]
                object = ["id": id, "userId": user, "op": "summary"]
            } else {
                user = connected[(index * 7) % connected.count]
                object = [
                    "id": id, "userId": user, "query": "what matters to this user this week? (\(index % 97))",
                    "metadata": ["campaign": "demo", "batch": index / 500],
                ]
            }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            jobs.append((key: user, value: Array(data)))
        }
        let malformed: [[UInt8]] = [
            Array("this is not JSON".utf8),
            [0xFF, 0xFE, 0x7B, 0x7D],
            Array(#"{"id": "no-user", "query": "q"}"#.utf8),
            Array(#"{"id": 42, "userId": "user-0001", "query": "q"}"#.utf8),
            Array(#"{"id": "empty-query", "userId": "user-0001", "query": ""}"#.utf8),
            Array(#"{"id": "bad-op", "userId": "user-0001", "op": "delete"}"#.utf8),
            Array(#"["an", "array"]"#.utf8),
        ]
        return (jobs, malformed)
    }

    private func produce(jobs: [(key: String, value: [UInt8])], malformed: [[UInt8]], bootstrapServers: String) async throws {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: bootstrapServers), logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            defer { producer.shutdown() }
            try await withThrowingTaskGroup(of: Void.self) { sends in
                for (index, job) in jobs.enumerated() {
                    sends.addTask {
                        _ = try await producer.send(topic: Self.inputTopic, key: Array(job.key.utf8), value: job.value)
                    }
                    if index % 500 == 250, let bad = malformed.dropFirst(index / 500).first {
                        sends.addTask {
                            _ = try await producer.send(topic: Self.inputTopic, key: nil, value: bad)
                        }
                    }
                }
                let placed = (0..<jobs.count).filter { $0 % 500 == 250 }.count
                for bad in malformed.dropFirst(placed) {
                    sends.addTask { _ = try await producer.send(topic: Self.inputTopic, key: nil, value: bad) }
                }
                try await sends.waitForAll()
            }
        }
    }

    /// Reads results and dead letters until every job has one (repeats are counted once).
    private func collect(results: Int, deadLetters: Int, bootstrapServers: String) async throws -> ([String: [String: Any]], [KafkaMessage]) {
        let consumer = try KafkaConsumer(
            configuration: KafkaConfiguration(bootstrapServers: bootstrapServers),
            groupID: "mioctx-demo-reader",
            topics: [Self.outputTopic, Self.deadLetterTopic],
            logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await consumer.run() }
            var byID: [String: [String: Any]] = [:]
            var dead: [KafkaMessage] = []
            var lastProgress = DemoCommand.time.now()
            for await message in consumer.messages {
                if message.topic == Self.deadLetterTopic {
                    dead.append(message)
                } else if let value = message.value,
                    let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any],
                    let id = object["id"] as? String
                {
                    byID[id] = object
                }
                if DemoCommand.time.now() - lastProgress > .seconds(1) {
                    lastProgress = DemoCommand.time.now()
                    note("\(byID.count)/\(results) results, \(dead.count)/\(deadLetters) dead letters")
                }
                if byID.count >= results && dead.count >= deadLetters {
                    break
                }
            }
            consumer.close()
            try await group.waitForAll()
            return (byID, dead)
        }
    }
}
