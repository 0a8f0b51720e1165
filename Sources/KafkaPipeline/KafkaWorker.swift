import Coordination
public import CoreMetrics
public import Kafka
public import Logging
public import Pipeline
public import ServiceLifecycle
public import Tracing

/// One member of the consumer group: Kafka jobs in, results out, offsets committed at least once.
///
/// The worker runs three services in dependency order: the producer, the consumer and the feed that
/// hands messages to the `ProcessingEngine`. On graceful shutdown they stop in reverse: the feed stops taking
/// jobs and lets those in flight finish within ``Configuration/shutdownGracePeriod``; the consumer leaves the
/// group (its final revocation commits what was finished); the producer flushes.
///
/// A job's offset becomes committable only when its result, or its dead-letter copy, was acknowledged by
/// Kafka and every earlier offset of its partition is too (`OffsetTracker`). Committable offsets are stored in
/// the consumer as they advance and librdkafka commits them every ``Configuration/commitInterval`` while the
/// group is stable; revoked partitions (a rebalance, or leaving the group at shutdown) are committed
/// synchronously in the revocation. The librdkafka properties `enable.auto.commit` and
/// `enable.auto.offset.store` are reserved: a configuration naming them is refused. A result
/// that cannot be delivered stops the worker with an error instead of skipping the job.
public final class KafkaWorker: Service, Sendable {
    /// Settings of a worker.
    public struct Configuration: Sendable {
        /// librdkafka properties shared by the consumer and the producer (bootstrap servers, security, tuning).
        public var kafka: KafkaConfiguration
        /// The consumer group.
        public var groupID: String
        /// Where jobs are read.
        public var inputTopic: String
        /// Where results are written, keyed by user id.
        public var outputTopic: String
        /// Where invalid messages go, unchanged, with the reason in headers.
        public var deadLetterTopic: String
        /// Limits, ordering and delivery retries of the engine.
        public var engine: ProcessingEngine.Configuration
        /// How often librdkafka commits the stored offsets (`auto.commit.interval.ms`). Default 1 s: after a
        /// crash, at most about this much finished work is repeated.
        public var commitInterval: Duration = .seconds(1)
        /// How long shutdown lets jobs in flight finish before cancelling them, and then waits for their offsets to
        /// be committed (at least two commit intervals plus 10 s for that). Default 30 s.
        public var shutdownGracePeriod: Duration = .seconds(30)
        /// How long a revocation lets jobs of the revoked partitions finish. Default 5 s. The whole revocation
        /// (this, then the commit) is kept within half of what the group allows a member in a rebalance
        /// (``revocationWait(gracePeriod:properties:)``): a longer one would cost the member its generation.
        public var revocationGracePeriod: Duration = .seconds(5)
        /// How far a partition's work may run ahead of its committable mark, in offsets: a message further than
        /// this past the partition's lowest unfinished offset waits, and the partition is paused, until the mark
        /// moves. It bounds what a crash repeats when one job is slow. `nil` (the default): the in-flight limit.
        public var maxRunAhead: Int?
        /// How long finished work may wait for its commit before the worker stops taking new jobs, until a commit
        /// succeeds. librdkafka commits nothing while the group rebalances (and a coordinator may refuse commits
        /// meanwhile), so without this bound a crash during a long rebalance repeats everything finished since it
        /// began; with it, a crash repeats at most about this much finished work plus the jobs in flight. `nil` (the
        /// default): ``commitInterval`` and a quarter (the quarter keeps the hold from engaging in a stable group, where
        /// each commit's answer comes about one interval after the one before); `.zero`: no bound, the worker keeps
        /// taking jobs through rebalances.
        public var maxUncommittedTime: Duration? = nil
        /// At most about this many bytes of messages wait in the consumer for the engine (besides the count bound);
        /// above it the consumer pauses its partitions. Default 32 MiB.
        public var maxBufferedBytes: Int = 32 * 1024 * 1024

        /// ``maxUncommittedTime`` in force: `nil` when there is no bound.
        var effectiveMaxUncommittedTime: Duration? {
            let bound = maxUncommittedTime ?? commitInterval * 5 / 4
            return bound > .zero ? bound : nil
        }

        /// Creates a configuration with production defaults.
        public init(
            kafka: KafkaConfiguration,
            groupID: String,
            inputTopic: String,
            outputTopic: String,
            deadLetterTopic: String,
            engine: ProcessingEngine.Configuration = .init()
        ) {
            self.kafka = kafka
            self.groupID = groupID
            self.inputTopic = inputTopic
            self.outputTopic = outputTopic
            self.deadLetterTopic = deadLetterTopic
            self.engine = engine
        }
    }

    /// A failure that stopped the worker.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// What went wrong.
        public var message: String
        public var description: String { "worker stopped: \(message)" }
    }

    /// librdkafka consumer defaults of the worker, unless the configuration overrides them.
    static let consumerDefaults: [String: String] = [
        // Incremental rebalances: the partitions that stay put keep working during a rebalance.
        "partition.assignment.strategy": "cooperative-sticky",
        // Bounds the prefetched bytes (librdkafka's default is 64 MiB).
        "queued.max.messages.kbytes": "4096",
        // After a pause, fetching restarts within this time rather than librdkafka's 500 ms.
        "fetch.wait.max.ms": "100",
    ]

    /// The configuration in force.
    public let configuration: Configuration
    private let producer: KafkaProducer
    private let consumer: KafkaConsumer
    private let feed: ConsumerFeed
    private let logger: Logger

    /// Creates a worker; it connects when ``run()`` starts.
    ///
    /// - Parameters:
    ///   - configuration: topics, group, limits.
    ///   - handler: processes one job to its result (tokens, Mio, retries); its time source also times the engine's
    ///     delivery retries, the commits and their retries, and the metrics' sampling.
    ///   - logger: the worker's logger; librdkafka's log lines go to it too.
    ///   - metricsFactory: receives the job metrics of the engine and the worker's own: offset commits, paused and
    ///     assigned partitions, rebalances, consumer lag per partition (from librdkafka's statistics, every
    ///     `statistics.interval.ms`, default 5 s). Default: the bootstrapped `MetricsSystem.factory`.
    ///   - tracer: spans per job (``JobSpan``) and the trace context of results' headers. Default: the bootstrapped
    ///     `InstrumentationSystem.tracer`.
    /// - Throws: ``KafkaError`` when a librdkafka property is refused or reserved (it names the property).
    public init(
        configuration: Configuration,
        handler: JobHandler,
        logger: Logger,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer
    ) throws {
        self.configuration = configuration
        self.logger = logger
        let metrics = WorkerMetrics(factory: metricsFactory)
        var producerConfiguration = configuration.kafka
        // A message no broker took within the outage limit is reported then (librdkafka's default is 5 minutes),
        // so that the engine sees the outage (`maxOutage`) and stops, or sends it again if others got through.
        producerConfiguration.properties = configuration.kafka.properties.merging(
            ["message.timeout.ms": String(max(1, min(configuration.engine.maxOutage.wholeMilliseconds, Int64(Int32.max))))]
        ) { user, _ in user }
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        let book = OffsetBook(metrics: metrics, clock: handler.timeSource)
        // The revocation handler is owned by the consumer, so it holds the consumer and the engine weakly.
        let revocationTargets = RevocationTargets()
        var consumerOptions = KafkaConsumer.Options()
        // Four times the in-flight limit: refilling the buffer after a pause (a fetch round trip) then never
        // starves the engine, and job messages are small (a few hundred bytes each).
        consumerOptions.maxBufferedMessages = max(2048, 4 * configuration.engine.scheduling.maxInFlight)
        consumerOptions.maxBufferedBytes = configuration.maxBufferedBytes
        // A message over the job limit is dead-lettered as `message_too_large` without its value ever being copied.
        consumerOptions.maxValueBytes = Job.maxMessageBytes
        let revocation = Self.revocationWait(
            gracePeriod: configuration.revocationGracePeriod,
            properties: configuration.kafka.properties
        )
        if revocation.jobs < configuration.revocationGracePeriod {
            logger.warning(
                "revocation grace period shortened to stay within half of the group's rebalance window",
                metadata: [
                    "configured": "\(configuration.revocationGracePeriod)", "effective": "\(revocation.jobs)",
                    "kafka.rebalanceWindow": "\(revocation.window)",
                ]
            )
        }
        consumerOptions.revocationTimeout = revocation.total
        consumerOptions.statisticsHandler = { metrics.update($0) }
        // At least once without explicit commits outside revocations: finished marks are stored, librdkafka
        // commits them every interval while the group is stable (docs/kafka.md, "Commits").
        consumerOptions.autoCommitInterval = configuration.commitInterval
        consumerOptions.commitHandler = { offsets, failure in book.committed(offsets, failure: failure) }
        let revocationGracePeriod = revocation.jobs
        let gate = RunAheadGate(limit: configuration.maxRunAhead ?? configuration.engine.scheduling.maxInFlight, book: book) {
            partitions, paused in revocationTargets.consumer?.requestPause(partitions, paused: paused)
        }
        var consumerConfiguration = configuration.kafka
        consumerConfiguration.properties = configuration.kafka.properties.merging(Self.consumerDefaults) { user, _ in user }
        let consumer = try KafkaConsumer(
            configuration: consumerConfiguration,
            groupID: configuration.groupID,
            topics: [configuration.inputTopic],
            options: consumerOptions,
            logger: logger,
            onAssign: { partitions in
                let ids = partitions.map(PartitionID.init)
                book.open(ids)
                return book.resumeMarks(for: ids)
            }
        ) { partitions, lost in
            guard let consumer = revocationTargets.consumer, let engine = revocationTargets.engine else { return }
            await Self.revoke(
                partitions,
                lost: lost,
                engine: engine,
                consumer: consumer,
                book: book,
                gate: gate,
                gracePeriod: revocationGracePeriod,
                logger: logger
            )
        }
        revocationTargets.consumer = consumer
        let sink = KafkaResultSink(
            producer: producer,
            outputTopic: configuration.outputTopic,
            deadLetterTopic: configuration.deadLetterTopic,
            tracer: tracer
        )
        let feed = ConsumerFeed(
            configuration: configuration,
            consumer: consumer,
            handler: handler,
            sink: sink,
            book: book,
            gate: gate,
            metrics: metrics,
            metricsFactory: metricsFactory,
            tracer: tracer,
            logger: logger
        )
        revocationTargets.engine = feed.engine
        self.producer = producer
        self.consumer = consumer
        self.feed = feed
    }

    /// Runs until graceful shutdown or cancellation; throws ``Failure`` when a result could not be delivered.
    public func run() async throws {
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: producer, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: consumer, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: feed, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger))
        try await withGracefulShutdownHandler {
            try await group.run()
        } onGracefulShutdown: {
            Task { await group.triggerGracefulShutdown() }
        }
        if let failure = feed.failure {
            throw failure
        }
    }

    /// Whether the worker is a member of its consumer group and taking jobs.
    public var isReady: Bool { consumer.hasJoinedGroup && !feed.isStopping }

    /// Jobs received and not finished.
    public var pendingJobs: Int { feed.engine.pendingCount }

    /// The partitions assigned to this worker.
    public var assignment: [KafkaTopicPartition] { consumer.assignment }

    /// The offsets this worker committed last, by partition.
    public var committedOffsets: [KafkaTopicPartition: Int64] { feed.book.lastCommitted }

    /// The worker's bookkeeping in a few lines, for diagnostics: each partition's mark, commit and unfinished
    /// jobs, the jobs pending in the engine per assigned partition, the scheduler's counts and busy users, the Mio
    /// gate's limit and calls in flight, the run-ahead gate's held messages and pauses, the partitions paused in
    /// librdkafka and the messages buffered in the consumer, and where the poll thread and the loop that stores
    /// marks and releases held messages are.
    package var diagnostics: String {
        let pending = assignment.sorted().map { partition in
            "\(partition): \(feed.engine.pendingCount(in: PartitionID(partition)))"
        }
        return """
            book: \(feed.book.summary)
            engine: pending \(feed.engine.pendingCount) [\(pending.joined(separator: ", "))], stopping \(feed.isStopping)
            scheduler: \(feed.engine.schedulerSummary)
            mio: \(feed.health.map { "\($0.summary), in flight \($0.inFlightCount), taking jobs \($0.isTakingJobs)" } ?? "no health gate")
            gate: \(feed.gate.summary)
            consumer: paused \(consumer.pausedPartitionCount), buffered \(consumer.bufferedMessageCount), member \(consumer.hasJoinedGroup)
            loops: poll thread \(consumer.pollLoopSummary); storing marks \(feed.storeLoop.summary)
            """
    }

    /// Lets the jobs of revoked partitions finish (bounded), commits them, and forgets the partitions.
    private static func revoke(
        _ partitions: [KafkaTopicPartition],
        lost: Bool,
        engine: ProcessingEngine,
        consumer: KafkaConsumer,
        book: OffsetBook,
        gate: RunAheadGate,
        gracePeriod: Duration,
        logger: Logger
    ) async {
        let ids = partitions.map(PartitionID.init)
        // First, so that a message of these partitions still in the pipeline's hands is not submitted.
        book.close(ids)
        gate.forget(ids)
        if lost {
            book.keepLostMarks(of: ids)
            logger.warning(
                "Kafka partitions lost: the group moved on without this member; their next owner repeats their work since the last commit (this member resumes after its own finished work if it gets them back)",
                metadata: ["kafka.partitions": "\(partitions.sorted())", "pending": "\(ids.map(engine.pendingCount(in:)).reduce(0, +))"]
            )
        }
        for id in ids {
            _ = engine.dropQueued(partition: id)
        }
        if !lost {
            await withTaskGroup(of: Void.self) { group in
                for id in ids {
                    group.addTask {
                        if !(await engine.waitUntilIdle(partition: id, timeout: gracePeriod)) {
                            logger.warning(
                                "jobs of a revoked partition did not finish in time; they will be repeated by its next owner",
                                metadata: ["kafka.partition": "\(id)", "pending": "\(engine.pendingCount(in: id))"]
                            )
                        }
                    }
                }
            }
            await book.commitRevoked(Set(ids), with: consumer, attempts: Self.revocationCommitAttempts, logger: logger)
            // A commit that failed leaves marks ahead of the commit: kept like those of lost partitions (the
            // assignment checks them against the group's committed offsets before using them).
            book.keepLostMarks(of: ids)
        }
        book.forget(ids)
    }
}

extension KafkaWorker {
    /// Time the revocation keeps for its commit after the jobs' grace period.
    static let revocationCommitAllowance: Duration = .seconds(1)
    /// Commit attempts of a revocation, 100 ms apart: within ``revocationCommitAllowance``.
    static let revocationCommitAttempts = 5

    /// How long a revocation may block the consumer, and how much of it the jobs of the revoked partitions get.
    ///
    /// A member inside its revocation cannot rejoin. A real coordinator waits for it up to the rebalance timeout
    /// (`max.poll.interval.ms`); librdkafka 2.0.2's mock elects after `session.timeout.ms − 1 s`. A member that
    /// misses the election loses its generation and every partition with it, uncommitted work included. So the
    /// revocation takes at most half of the smaller of the two (librdkafka's defaults 45 s and 300 s when the
    /// properties do not set them): `gracePeriod` plus ``revocationCommitAllowance``, shortened to fit.
    ///
    /// - Parameters:
    ///   - gracePeriod: the configured ``Configuration/revocationGracePeriod``.
    ///   - properties: the librdkafka properties of the consumer.
    /// - Returns: the whole bound, the jobs' part of it, and the group's window it was derived from.
    static func revocationWait(
        gracePeriod: Duration,
        properties: [String: String]
    ) -> (total: Duration, jobs: Duration, window: Duration) {
        func milliseconds(_ key: String, default value: Int) -> Duration {
            .milliseconds(properties[key].flatMap { Int($0) } ?? value)
        }
        let window = min(milliseconds("session.timeout.ms", default: 45_000) - .seconds(1), milliseconds("max.poll.interval.ms", default: 300_000))
        let total = min(gracePeriod + revocationCommitAllowance, max(.zero, window / 2))
        let jobs = max(.zero, total - revocationCommitAllowance)
        return (total, jobs, window)
    }
}

/// Weak references for the revocation handler and the run-ahead gate's pauses, set once in `KafkaWorker.init`
/// before any callback can run (callbacks and the feed start with `run()`), read only afterwards: that ordering
/// is why `@unchecked Sendable` is safe.
private final class RevocationTargets: @unchecked Sendable {
    weak var consumer: KafkaConsumer?
    weak var engine: ProcessingEngine?
}
