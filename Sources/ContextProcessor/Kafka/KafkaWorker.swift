public import CoreMetrics
public import Kafka
public import Logging
public import ServiceLifecycle
import Synchronization
public import Tracing

/// One member of the consumer group: Kafka jobs in, results out, offsets committed at least once.
///
/// The worker runs three services in dependency order: the producer, the consumer and the pipeline that
/// feeds the ``ProcessingEngine``. On graceful shutdown they stop in reverse: the pipeline stops taking
/// jobs, lets those in flight finish within ``Configuration/shutdownGracePeriod`` and commits; the consumer
/// leaves the group (its final revocation commits again); the producer flushes.
///
/// A job's offset becomes committable only when its result, or its dead-letter copy, was acknowledged by
/// Kafka and every earlier offset of its partition is too ( ``OffsetTracker``). Committable offsets are
/// committed every ``Configuration/commitInterval``, and synchronously on revocation and shutdown. A result
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
        /// How often committable offsets are committed. Default 1 s: after a crash, at most about this much
        /// finished work is repeated.
        public var commitInterval: Duration = .seconds(1)
        /// How long shutdown lets jobs in flight finish before cancelling them. Default 30 s.
        public var shutdownGracePeriod: Duration = .seconds(30)
        /// How long a revocation lets jobs of the revoked partitions finish. Default 10 s.
        public var revocationGracePeriod: Duration = .seconds(10)

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
    private let pipeline: Pipeline
    private let logger: Logger

    /// Creates a worker; it connects when ``run()`` starts.
    ///
    /// - Parameters:
    ///   - configuration: topics, group, limits.
    ///   - handler: processes one job to its result (tokens, Mio, retries).
    ///   - logger: the worker's logger; librdkafka's log lines go to it too.
    ///   - metricsFactory: receives the job metrics of the engine and the worker's own: offset commits, paused and
    ///     assigned partitions, rebalances, consumer lag per partition (from librdkafka's statistics, every
    ///     `statistics.interval.ms`, default 5 s). Default: the bootstrapped `MetricsSystem.factory`.
    ///   - tracer: spans per job (``JobSpan``) and the trace context of results' headers. Default: the bootstrapped
    ///     `InstrumentationSystem.tracer`.
    /// - Throws: ``KafkaError`` when a librdkafka property is refused (it names the property).
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
        let producer = try KafkaProducer(configuration: configuration.kafka, logger: logger)
        let book = OffsetBook(metrics: metrics)
        // The revocation handler is owned by the consumer, so it holds the consumer and the engine weakly.
        let revocationTargets = RevocationTargets()
        var consumerOptions = KafkaConsumer.Options()
        // Four times the in-flight limit: refilling the buffer after a pause (a fetch round trip) then never
        // starves the engine, and job messages are small (a few hundred bytes each).
        consumerOptions.maxBufferedMessages = max(2048, 4 * configuration.engine.scheduling.maxInFlight)
        consumerOptions.revocationTimeout = configuration.revocationGracePeriod + .seconds(10)
        consumerOptions.statisticsHandler = { metrics.update($0) }
        let revocationGracePeriod = configuration.revocationGracePeriod
        var consumerConfiguration = configuration.kafka
        consumerConfiguration.properties = configuration.kafka.properties.merging(Self.consumerDefaults) { user, _ in user }
        let consumer = try KafkaConsumer(
            configuration: consumerConfiguration,
            groupID: configuration.groupID,
            topics: [configuration.inputTopic],
            options: consumerOptions,
            logger: logger,
            onAssign: { partitions in book.open(partitions.map(PartitionID.init)) }
        ) { partitions, lost in
            guard let consumer = revocationTargets.consumer, let engine = revocationTargets.engine else { return }
            await Self.revoke(
                partitions,
                lost: lost,
                engine: engine,
                consumer: consumer,
                book: book,
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
        let pipeline = Pipeline(
            configuration: configuration,
            consumer: consumer,
            handler: handler,
            sink: sink,
            book: book,
            metrics: metrics,
            metricsFactory: metricsFactory,
            tracer: tracer,
            logger: logger
        )
        revocationTargets.engine = pipeline.engine
        self.producer = producer
        self.consumer = consumer
        self.pipeline = pipeline
    }

    /// Runs until graceful shutdown or cancellation; throws ``Failure`` when a result could not be delivered.
    public func run() async throws {
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: producer, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: consumer, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: pipeline, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger))
        try await withGracefulShutdownHandler {
            try await group.run()
        } onGracefulShutdown: {
            Task { await group.triggerGracefulShutdown() }
        }
        if let failure = pipeline.failure {
            throw failure
        }
    }

    /// Whether the worker is a member of its consumer group and taking jobs.
    public var isReady: Bool { consumer.hasJoinedGroup && !pipeline.isStopping }

    /// Jobs received and not finished.
    public var pendingJobs: Int { pipeline.engine.pendingCount }

    /// The partitions assigned to this worker.
    public var assignment: [KafkaTopicPartition] { consumer.assignment }

    /// The offsets this worker committed last, by partition.
    public var committedOffsets: [KafkaTopicPartition: Int64] { pipeline.book.lastCommitted }

    /// Lets the jobs of revoked partitions finish (bounded), commits them, and forgets the partitions.
    private static func revoke(
        _ partitions: [KafkaTopicPartition],
        lost: Bool,
        engine: ProcessingEngine,
        consumer: KafkaConsumer,
        book: OffsetBook,
        gracePeriod: Duration,
        logger: Logger
    ) async {
        let ids = partitions.map(PartitionID.init)
        // First, so that a message of these partitions still in the pipeline's hands is not submitted.
        book.close(ids)
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
            await book.commit(Set(ids), with: consumer, attempts: 20, logger: logger)
        }
        book.forget(ids)
    }
}

/// Weak references for the revocation handler, set once in `KafkaWorker.init` before any callback can run
/// (callbacks start with `run()`), read only afterwards: that ordering is why `@unchecked Sendable` is safe.
private final class RevocationTargets: @unchecked Sendable {
    weak var consumer: KafkaConsumer?
    weak var engine: ProcessingEngine?
}

extension PartitionID {
    init(_ partition: KafkaTopicPartition) {
        self.init(topic: partition.topic, partition: partition.partition)
    }

    var kafka: KafkaTopicPartition {
        KafkaTopicPartition(topic: topic, partition: partition)
    }
}

/// Offsets received, finished and committed, shared by the pipeline, the engine's events and revocations.
final class OffsetBook: Sendable {
    private struct State {
        var tracker = OffsetTracker()
        var committed: [PartitionID: Int64] = [:]
        /// Partitions assigned and not revoked: only their messages are taken.
        var open: Set<PartitionID> = []
    }

    private let state = Mutex(State())
    /// Serialises commits, so an older commit never lands after a newer one.
    private let commitTurn = AsyncTurn()
    private let metrics: WorkerMetrics

    init(metrics: WorkerMetrics) {
        self.metrics = metrics
    }

    /// Records a message before it is submitted; `false` means do not submit it: its partition was revoked
    /// (its next owner reads it from the committed offset) or it is already being processed (a re-delivery).
    func received(_ source: JobSource) -> Bool {
        state.withLock { state in
            guard state.open.contains(source.partition) else { return false }
            return state.tracker.received(source.offset, in: source.partition)
        }
    }

    /// Partitions were assigned (called on the poll thread before any of their messages is polled).
    func open(_ partitions: [PartitionID]) {
        state.withLock { $0.open.formUnion(partitions) }
    }

    /// Partitions are being revoked: their messages are no longer taken.
    func close(_ partitions: [PartitionID]) {
        state.withLock { $0.open.subtract(partitions) }
    }

    func markDone(_ source: JobSource) {
        state.withLock { _ = $0.tracker.markDone(source.offset, in: source.partition) }
    }

    func forget(_ partitions: [PartitionID]) {
        state.withLock { state in
            for partition in partitions {
                state.tracker.forget(partition)
            }
        }
    }

    var lastCommitted: [KafkaTopicPartition: Int64] {
        state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.committed.map { ($0.key.kafka, $0.value) })
        }
    }

    /// Commits, and waits for, the committable offsets that advanced (of `partitions`, or all).
    ///
    /// - Parameter attempts: tries for a retriable failure (a rebalance in progress, a coordinator moving),
    ///   100 ms apart; the periodic commit uses 1 (the next period retries), revocation and shutdown more.
    func commit(
        _ partitions: Set<PartitionID>? = nil,
        with consumer: KafkaConsumer,
        attempts: Int = 1,
        logger: Logger
    ) async {
        for attempt in 1...max(1, attempts) {
            switch await commitOnce(partitions, with: consumer, logger: logger) {
            case .done:
                return
            case .failed(let error):
                guard attempt < attempts, error.isRetriable else {
                    // Not fatal: the offsets stay committable and the next commit carries them.
                    logger.warning("offset commit failed", metadata: ["error": "\(error)", "attempts": "\(attempt)"])
                    return
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private enum CommitOutcome {
        case done
        case failed(KafkaError)
    }

    private func commitOnce(_ partitions: Set<PartitionID>?, with consumer: KafkaConsumer, logger: Logger) async -> CommitOutcome {
        await commitTurn.run {
            let offsets = state.withLock { state in
                state.tracker.committableOffsets.compactMap { partition, offset -> KafkaTopicPartitionOffset? in
                    guard partitions?.contains(partition) ?? true, offset > (state.committed[partition] ?? -1) else { return nil }
                    return KafkaTopicPartitionOffset(partition.kafka, offset: offset)
                }
            }
            guard !offsets.isEmpty else { return .done }
            do throws(KafkaError) {
                try await consumer.commit(offsets)
            } catch {
                metrics.committed(success: false)
                return .failed(error)
            }
            metrics.committed(success: true)
            state.withLock { state in
                for offset in offsets {
                    let partition = PartitionID(offset.topicPartition)
                    state.committed[partition] = max(state.committed[partition] ?? -1, offset.offset)
                }
            }
            logger.debug("offsets committed", metadata: ["kafka.offsets": "\(offsets)"])
            return .done
        }
    }
}

/// A value behind a lock that closures can capture (a `Mutex` itself cannot be copied into them).
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    func withLock<R>(_ body: (inout Value) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}

/// Runs async operations one at a time, in arrival order.
final class AsyncTurn: Sendable {
    private let busy = Mutex<(Bool, [CheckedContinuation<Void, Never>])>((false, []))

    func run<T>(_ operation: () async -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let proceed = busy.withLock { state -> Bool in
                if state.0 {
                    state.1.append(continuation)
                    return false
                }
                state.0 = true
                return true
            }
            if proceed { continuation.resume() }
        }
        let result = await operation()
        let next = busy.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.1.isEmpty {
                state.0 = false
                return nil
            }
            return state.1.removeFirst()
        }
        next?.resume()
        return result
    }
}

/// Feeds consumed messages to the engine, follows its events, commits periodically; drains on shutdown.
final class Pipeline: Service, Sendable {
    let engine: ProcessingEngine
    let book: OffsetBook
    private let configuration: KafkaWorker.Configuration
    private let consumer: KafkaConsumer
    private let metrics: WorkerMetrics
    private let logger: Logger
    private let sink: KafkaResultSink
    private let failureBox = LockedBox<KafkaWorker.Failure?>(nil)
    private let stopRequested: AsyncStream<Void>
    private let stopContinuation: AsyncStream<Void>.Continuation

    init(
        configuration: KafkaWorker.Configuration,
        consumer: KafkaConsumer,
        handler: JobHandler,
        sink: KafkaResultSink,
        book: OffsetBook,
        metrics: WorkerMetrics,
        metricsFactory: any MetricsFactory,
        tracer: any Tracer,
        logger: Logger
    ) {
        self.configuration = configuration
        self.consumer = consumer
        self.metrics = metrics
        self.book = book
        self.sink = sink
        self.logger = logger
        (stopRequested, stopContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let failureBox = self.failureBox
        let stopContinuation = self.stopContinuation
        self.engine = ProcessingEngine(
            handler: handler,
            sink: sink,
            configuration: configuration.engine,
            logger: logger,
            metricsFactory: metricsFactory,
            tracer: tracer
        ) { event in
            switch event {
            case .done(let source):
                book.markDone(source)
            case .pauseInput, .resumeInput:
                // The feed stops reading at the limit; the consumer's bounded buffer then pauses the partitions.
                break
            case .deliveryFailed(let source, let error):
                logger.critical(
                    "a result could not be delivered; stopping so that the job is not skipped",
                    metadata: ["job.source": "\(source)", "error": "\(error)"]
                )
                failureBox.withLock { $0 = $0 ?? KafkaWorker.Failure(message: error.description) }
                stopContinuation.yield()
            case .cancelled:
                break
            }
        }
    }

    var failure: KafkaWorker.Failure? { failureBox.withLock { $0 } }

    private let stopping = Mutex(false)

    /// Whether the pipeline stopped taking jobs (shutdown or failure).
    var isStopping: Bool { stopping.withLock { $0 } }

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.engine.run() }
            group.addTask { await self.feed() }
            group.addTask { await self.reportPauses() }
            group.addTask { await self.commitPeriodically() }
            group.addTask { await self.followMembership() }

            await withGracefulShutdownHandler {
                for await _ in self.stopRequested { break }
            } onGracefulShutdown: {
                self.stopContinuation.yield()
            }
            stopping.withLock { $0 = true }
            logger.info("worker stopping: draining jobs in flight", metadata: ["pending": "\(engine.pendingCount)"])
            let drained = await engine.drain(timeout: configuration.shutdownGracePeriod)
            await book.commit(with: consumer, attempts: 20, logger: logger)
            logger.info("worker drained", metadata: ["complete": "\(drained)"])
            group.cancelAll()
        }
    }

    /// Reads messages and submits them, waiting while the engine is at its limit.
    private func feed() async {
        // While the consumer joins its group: the first results then go out at once.
        await sink.prepare(logger: logger)
        for await message in consumer.messages {
            await engine.waitForCapacity()
            guard !Task.isCancelled else { return }
            let source = JobSource(partition: PartitionID(topic: message.topic, partition: message.partition), offset: message.offset)
            guard book.received(source) else { continue }
            let item = InputItem(
                value: message.value ?? [],
                key: message.key,
                headers: message.headers.map { MessageHeader(name: $0.key, value: $0.value) },
                source: source
            )
            guard engine.submit(item) else { return }
        }
    }

    /// Backpressure: at the in-flight limit the feed stops reading; the consumer's buffer fills up and pauses
    /// every assigned partition (it keeps polling, so it stays in the group), and resumes them once the engine
    /// has drained it below half. Pausing only then, not at every touch of the limit, keeps librdkafka's
    /// prefetched messages: each pause discards them and a resume costs a fetch round trip.
    /// It also reports the rewinds the consumer undid (see docs/kafka.md).
    private func reportPauses() async {
        var rewindsUndone = 0
        while !Task.isCancelled {
            metrics.partitionsPaused(consumer.pausedPartitionCount)
            let total = consumer.rewindsUndone
            metrics.undidRewinds(total - rewindsUndone)
            rewindsUndone = total
            do {
                try await Task.sleep(for: .seconds(1))
            } catch {
                return
            }
        }
    }

    /// Counts rebalances and tracks the assignment for the metrics.
    private func followMembership() async {
        for await event in consumer.events {
            switch event {
            case .assigned:
                metrics.rebalanced("assigned")
                metrics.partitionsAssigned(consumer.assignment.count)
            case .revoked(let partitions, let lost):
                metrics.rebalanced(lost ? "lost" : "revoked")
                // The event comes before the consumer forgets the partitions.
                metrics.partitionsAssigned(Set(consumer.assignment).subtracting(partitions).count)
            case .commitFailed, .error:
                continue
            }
        }
    }

    private func commitPeriodically() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: configuration.commitInterval)
            } catch {
                return
            }
            await book.commit(with: consumer, logger: logger)
        }
    }
}
