import KafkaPipeline
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import CoreMetrics
import Foundation
import Kafka
import Logging
import Mio
import MioSimulator
import MioTokens
import MioctxTestSupport
import ServiceLifecycle
import Synchronization
import Testing
import Tracing


/// Everything a worker needs, real and on loopback: librdkafka's mock cluster, the Mio simulator over HTTP,
/// a token store filled through the real OAuth code exchange.
struct WorkerHarness: Sendable {
    static let inputTopic = "context-requests"
    static let outputTopic = "context-results"
    static let deadLetterTopic = "context-dead-letters"
    static let groupProperties: [String: String] = [
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "500",
        "max.poll.interval.ms": "10000",
    ]

    let cluster: KafkaMockCluster
    let stack: MioStack
    let logger: Logger
    /// The spans of the workers' handlers that have not ended: where stuck jobs wait (``stallSummary()``).
    let openSpans = OpenSpanTracer()

    var simulator: MioSimulator { stack.simulator }
    var mio: MioClient { stack.mio }
    var store: InMemoryTokenStore { stack.store }
    var tokens: TokenProvider { stack.tokens }

    var kafka: KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, properties: Self.groupProperties)
    }

    /// Runs `body` with a harness whose simulator uses `simulatorConfiguration`.
    ///
    /// - Parameters:
    ///   - brokers: the mock cluster's brokers; every topic is replicated on all of them.
    ///   - logger: the logger of every part (default: warnings and above).
    ///   - metricsFactory: where the Mio client and the token provider emit metrics.
    ///   - tracer: what the Mio client traces with.
    static func with<T: Sendable>(
        brokers: Int = 1,
        partitions: Int = 6,
        simulatorConfiguration: MioSimulator.Configuration = .init(),
        logger: Logger? = nil,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
        tracer: any Tracer = NoOpTracer(),
        _ body: (WorkerHarness) async throws -> T
    ) async throws -> T {
        let logger = logger ?? {
            var logger = Logger(label: "worker-tests")
            logger.logLevel = .warning
            return logger
        }()
        let cluster = try KafkaMockCluster(brokers: brokers, logger: logger)
        try cluster.createTopic(inputTopic, partitions: partitions, replicationFactor: brokers)
        try cluster.createTopic(outputTopic, partitions: partitions, replicationFactor: brokers)
        try cluster.createTopic(deadLetterTopic, partitions: 1, replicationFactor: brokers)
        return try await MioStack.with(
            simulatorConfiguration,
            logger: logger,
            maxConnections: 512,
            metricsFactory: metricsFactory,
            tracer: tracer
        ) { stack in
            try await body(WorkerHarness(cluster: cluster, stack: stack, logger: logger))
        }
    }

    /// Connects users through the real flow: simulator consent -> code exchange -> store.
    func connect(_ users: [String]) async throws {
        try await stack.connect(users)
    }

    func workerConfiguration(
        group: String = "workers",
        maxInFlight: Int = 256,
        maxInFlightPerUser: Int = 4,
        ordering: SchedulingConfiguration.Ordering = .unordered
    ) -> KafkaWorker.Configuration {
        var configuration = KafkaWorker.Configuration(
            kafka: kafka,
            groupID: group,
            inputTopic: Self.inputTopic,
            outputTopic: Self.outputTopic,
            deadLetterTopic: Self.deadLetterTopic,
            engine: ProcessingEngine.Configuration(
                scheduling: SchedulingConfiguration(
                    maxInFlight: maxInFlight,
                    maxInFlightPerUser: maxInFlightPerUser,
                    ordering: ordering
                )
            )
        )
        configuration.commitInterval = .milliseconds(200)
        configuration.shutdownGracePeriod = .seconds(20)
        return configuration
    }

    /// Starts a worker in the background, with `configuration` or else `workerConfiguration()`.
    /// - Parameter name: set as the `worker` metadata of its log lines, to tell two workers apart.
    func startWorker(_ configuration: KafkaWorker.Configuration? = nil, name: String? = nil) throws -> RunningWorker {
        var logger = logger
        if let name { logger[metadataKey: "worker"] = "\(name)" }
        let handler = JobHandler(api: MioContextAPI(mio), tokens: MioTokenSource(tokens), logger: logger, tracer: openSpans)
        let worker = try KafkaWorker(configuration: configuration ?? workerConfiguration(), handler: handler, logger: logger)
        return RunningWorker(worker, logger: logger) { await stallSummary() }
    }

    /// Produces raw messages to the input topic; returns the end offset of each partition written to.
    @discardableResult
    func produce(_ messages: [(key: String?, value: [UInt8], headers: [KafkaHeader])]) async throws -> [Int32: Int64] {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            defer { producer.shutdown() }
            return try await withThrowingTaskGroup(of: KafkaDeliveryReport.self) { sends in
                for message in messages {
                    sends.addTask {
                        try await producer.send(
                            topic: Self.inputTopic,
                            key: message.key.map { Array($0.utf8) },
                            value: message.value,
                            headers: message.headers
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
    }

    /// Produces jobs as JSON.
    @discardableResult
    func produceJobs(_ jobs: [TestJob]) async throws -> [Int32: Int64] {
        try await produce(
            jobs.map { job in
                let object: [String: Any] = ["id": job.id, "userId": job.userID, "query": job.query]
                let value = try! JSONSerialization.data(withJSONObject: object)
                return (key: job.userID, value: Array(value), headers: [])
            }
        )
    }

    /// Connects `users` users named `prefix-N` and produces `count` jobs for them, round robin, with ids
    /// `prefix-N`; returns the jobs and the end offset of each partition.
    func connectAndProduce(
        prefix: String,
        users: Int,
        jobs count: Int
    ) async throws -> (jobs: [TestJob], ends: [Int32: Int64]) {
        let users = (0..<users).map { "\(prefix)-\($0)" }
        try await connect(users)
        let jobs = (0..<count).map { (id: "\(prefix)-\($0)", userID: users[$0 % users.count], query: "q\($0)") }
        return (jobs, try await produceJobs(jobs))
    }

    /// Waits until `worker` has committed every offset up to `ends`, then checks that every job has a result;
    /// returns how many results were repeats.
    func expectEveryJobDone(
        _ jobs: [TestJob],
        ends: [Int32: Int64],
        by worker: RunningWorker
    ) async throws -> Int {
        try await worker.waitUntilCommitted(ends)
        let results = try await readResults(forJobs: jobs.count)
        let ids = try results.map { try ResultMessage($0).id }
        #expect(Set(ids) == Set(jobs.map(\.id)), "no job is lost")
        return ids.count - jobs.count
    }

    /// Where the jobs of a test that waits in vain are stuck, beyond the worker's bookkeeping: the handlers' spans
    /// still open (token lookup, Mio call, refresh) and for how long; the simulator's requests by endpoint and
    /// status, and how many it is answering now (a job stuck in a Mio call waits there or was lost on the way);
    /// the client's connection pool on each event loop (a blocked loop holds its connections and deadlines); the
    /// token provider's refreshes and reads in flight; and, with `threads`, the process's threads that are not idle
    /// (``ThreadDump``: it stops the whole test process for seconds, so only once a test has failed).
    func stallSummary(threads: Bool = true) async -> String {
        let stats = simulator.stats()
        return """
            open spans (5 s or older): \(openSpans.summary())
            simulator: requests \(stats.requests), in progress \(stats.concurrency.current) (peak \(stats.concurrency.peak))
            Mio client pool:
            \(await mio.poolDiagnostics())
            tokens: \(tokens.diagnostics)
            \(threads ? ThreadDump.busyThreads() : "threads: not printed")
            """
    }

    /// Moves the leader of each of the first `partitions` partitions of the input and output topics to the broker
    /// `leader` names for it.
    func moveLeaders(partitions: Int32, to leader: (Int32) -> Int32) throws {
        for partition in 0..<partitions {
            for topic in [Self.inputTopic, Self.outputTopic] {
                try cluster.setPartitionLeader(topic: topic, partition: partition, brokerID: leader(partition))
            }
        }
    }

    /// Reads the output topic until it holds a result for each of `count` distinct job ids; returns every
    /// result message read (repeats included).
    func readResults(forJobs count: Int) async throws -> [KafkaMessage] {
        // Each message is decoded once: decoding all of them again for each new one was quadratic in the repeats
        // (a read of 8,000 results with 300 repeats outlasted the test's patience on a loaded machine).
        let seen = LockedValue<(decoded: Int, ids: Set<String>)>((0, []))
        return try await read(topic: Self.outputTopic) { read in
            guard read.count >= count else { return false }
            return seen.withLock { seen in
                for message in read[seen.decoded...] {
                    if let id = try? ResultMessage(message).id { seen.ids.insert(id) }
                }
                seen.decoded = read.count
                return seen.ids.count >= count
            }
        }
    }

    /// Reads a topic from the beginning until `isComplete` holds for what was read.
    func read(
        topic: String,
        group: String = "reader-\(UUID().uuidString)",
        until isComplete: @escaping @Sendable ([KafkaMessage]) -> Bool
    ) async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(configuration: kafka, groupID: group, topics: [topic], logger: logger)
        let task = Task { try await consumer.run() }
        defer { consumer.close() }
        let messages = try await withPatience("messages of \(topic)") {
            var read: [KafkaMessage] = []
            for await message in consumer.messages {
                read.append(message)
                if isComplete(read) { break }
            }
            return read
        }
        consumer.close()
        try await task.value
        return messages
    }
}

/// A worker running in a service group, stopped by a graceful shutdown as SIGTERM would.
final class RunningWorker: Sendable {
    let worker: KafkaWorker
    private let group: ServiceGroup
    private let task: Task<Void, any Error>
    private let describeStall: @Sendable () async -> String

    /// - Parameter describeStall: what else to print when ``waitUntilCommitted(_:)`` waits in vain (the
    ///   harness's ``WorkerHarness/stallSummary()``).
    init(_ worker: KafkaWorker, logger: Logger, describeStall: @escaping @Sendable () async -> String = { "" }) {
        self.worker = worker
        self.describeStall = describeStall
        let group = ServiceGroup(configuration: .init(services: [worker], gracefulShutdownSignals: [], logger: logger))
        self.group = group
        self.task = Task { try await group.run() }
    }

    /// Stops the worker as SIGTERM would and waits for it. Throws the worker's failure if it gave up before
    /// (a result it could not deliver), so a test that ends with `stop()` also checks that it never did.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }

    /// Waits for the worker to stop by itself (it gave up), and returns how its run ended.
    func stopped() async throws -> Result<Void, any Error> {
        let task = self.task
        return try await withPatience("the worker to stop by itself") { await task.result }
    }

    /// The sum of the worker's committed offsets: how many messages of the input topic it has committed.
    var committedTotal: Int64 { worker.committedOffsets.values.reduce(0, +) }

    /// Waits until the worker's committed offsets of the input topic equal `ends` (partition -> end offset).
    func waitUntilCommitted(_ ends: [Int32: Int64]) async throws {
        do {
            try await waitUntil("committed offsets to reach the end of every partition") {
                let committed = self.worker.committedOffsets
                return ends.allSatisfy { partition, end in
                    committed[KafkaTopicPartition(topic: WorkerHarness.inputTopic, partition: partition)] == end
                }
            }
        } catch {
            print("commits short of the end: ends \(ends.sorted { $0.key < $1.key })\n\(worker.diagnostics)\n\(await describeStall())")
            throw error
        }
    }
}

/// A decoded result message.
struct ResultMessage {
    var json: [String: Any]
    var message: KafkaMessage

    init(_ message: KafkaMessage) throws {
        self.message = message
        let object = try JSONSerialization.jsonObject(with: Data(message.value ?? []))
        self.json = try #require(object as? [String: Any])
    }

    var id: String { json["id"] as? String ?? "" }
    var userID: String { json["userId"] as? String ?? "" }
    var status: String { json["status"] as? String ?? "" }
    var context: String? { json["context"] as? String }
}

