import Coordination
import CoreMetrics
import Kafka
import Logging
import Pipeline
import ServiceLifecycle
import Synchronization
import Tracing

/// Feeds consumed messages to the engine, follows its events, stores finished offsets; drains on shutdown.
final class ConsumerFeed: Service, Sendable {
    let engine: ProcessingEngine
    let book: OffsetBook
    /// Bounds each partition's work past its committable mark.
    let gate: RunAheadGate
    private let configuration: KafkaWorker.Configuration
    private let consumer: KafkaConsumer
    private let metrics: WorkerMetrics
    private let logger: Logger
    private let sink: KafkaResultSink
    private let clock: TimeSource
    /// The Mio health gate of the handler, if it has one.
    let health: MioHealth?
    /// Whether to stop, and the failure that asked for it if any: the feed's `run()` waits on it.
    private let stop = WaitableState<Stop, Void>(Stop())

    private struct Stop: Sendable {
        var requested = false
        var failure: KafkaWorker.Failure?
    }

    init(
        configuration: KafkaWorker.Configuration,
        consumer: KafkaConsumer,
        handler: JobHandler,
        sink: KafkaResultSink,
        book: OffsetBook,
        gate: RunAheadGate,
        metrics: WorkerMetrics,
        metricsFactory: any MetricsFactory,
        tracer: any Tracer,
        logger: Logger
    ) {
        self.clock = handler.timeSource
        self.health = handler.health
        self.configuration = configuration
        self.consumer = consumer
        self.metrics = metrics
        self.book = book
        self.gate = gate
        self.sink = sink
        self.logger = logger
        let stop = self.stop
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
                // The mark waits in the book; `storeMarks` stores the advanced marks every `storeInterval` and
                // librdkafka commits the stored marks every commit interval.
                book.markDone(source)
            case .pauseInput, .resumeInput:
                // The feed stops reading at the limit; the consumer's bounded buffer then pauses the partitions.
                break
            case .deliveryFailed(let source, let error):
                logger.critical(
                    "stopping, so that the job is not skipped: \(error)",
                    metadata: ["job.source": "\(source)"]
                )
                stop.withLock { stop, waiters in
                    stop.failure = stop.failure ?? KafkaWorker.Failure(message: error.description)
                    stop.requested = true
                    waiters.wakeAll(with: ())
                }
            case .cancelled:
                break
            }
        }
    }

    var failure: KafkaWorker.Failure? { stop.withLock { stop, _ in stop.failure } }

    private let stopping = Mutex(false)

    /// Whether the pipeline stopped taking jobs (shutdown or failure).
    var isStopping: Bool { stopping.withLock { $0 } }

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.engine.run() }
            group.addTask { await self.feed() }
            group.addTask { await self.reportPauses() }
            group.addTask { await self.storeMarks() }
            group.addTask { await self.followMembership() }

            await withGracefulShutdownHandler {
                await self.stop.wait(cancelled: ()) { stop in stop.requested ? () : nil }
            } onGracefulShutdown: {
                self.stop.withLock { stop, waiters in
                    stop.requested = true
                    waiters.wakeAll(with: ())
                }
            }
            stopping.withLock { $0 = true }
            logger.info("worker stopping: draining jobs in flight", metadata: ["pending": "\(engine.pendingCount)"])
            let stopStarted = clock.now()
            let drained = await engine.drain(timeout: configuration.shutdownGracePeriod)
            // No explicit commit here: every finished mark is already stored, and the consumer's close (next in
            // the shutdown order) revokes the partitions, whose handler commits them synchronously; librdkafka
            // also commits the stored offsets of the partitions it unassigns. A commit from here could go out
            // while a peer's rebalance is under way and cost this member its assignment (docs/kafka.md).
            storeFinishedMarks()
            logger.info("worker drained", metadata: ["complete": "\(drained)"])
            await waitForFinalCommit(until: max(
                stopStarted + configuration.shutdownGracePeriod,
                clock.now() + configuration.commitInterval * 2 + Self.finalCommitAllowance
            ))
            group.cancelAll()
        }
    }

    /// Waits, bounded, until librdkafka's auto-commit has committed every stored mark, before the consumer
    /// closes. A SIGTERM can come while a peer's join is under way: the auto-commit then waits for the group to
    /// be stable again (a commit refused with REBALANCE_IN_PROGRESS stays stored), while the synchronous commit
    /// of the close's revocation would be sent into that rebalance, be refused, and leave everything since the
    /// last commit to be repeated. Once the marks are committed, that revocation commits nothing.
    ///
    /// The bound is the rest of ``KafkaWorker/Configuration/shutdownGracePeriod`` (counted from the stop), and
    /// at least two commit intervals plus ``finalCommitAllowance``: in a rolling restart the rebalances of the
    /// members before this one can follow each other for 15 s and more (the mock coordinator holds each join for
    /// `session.timeout.ms` − 1 s), and commits wait for the end of each. The marks are stored again now and then
    /// meanwhile: librdkafka drops a stored offset it could not commit when a rebalance removes and gives back a
    /// partition.
    private func waitForFinalCommit(until deadline: Duration) async {
        var nextStore = clock.now()
        while !book.marksAreCommitted {
            guard clock.now() < deadline else {
                logger.warning(
                    "the final marks were not committed within the shutdown grace period; the close's revocation commits them",
                    metadata: ["uncommitted": "\(book.marksAheadOfCommit())"]
                )
                return
            }
            if clock.now() >= nextStore {
                nextStore = clock.now() + Self.storeInterval * 5
                store(book.marksAheadOfCommit(), failureLevel: .debug)
            }
            do {
                try await clock.sleep(for: .milliseconds(50))
            } catch {
                return
            }
        }
    }

    /// The least time the final commit may wait for a rebalance under way, beyond two commit intervals.
    static let finalCommitAllowance: Duration = .seconds(10)

    /// How often the marks that advanced are stored in the consumer: one librdkafka call for all partitions,
    /// not one per finished job (a partition list built and a partition looked up each time). It adds at most this
    /// much finished work to what a crash repeats.
    static let storeInterval: Duration = .milliseconds(100)

    /// Where the loop of ``storeMarks()`` is, for the diagnostics of a stall.
    let storeLoop = LoopHeartbeat(stages: StoreLoopStage.names)

    /// The stages of ``storeMarks()``, as ``storeLoop`` names them.
    private enum StoreLoopStage: Int {
        case sleeping, storing, releasing, ended

        static let names = ["sleeping", "storing marks", "releasing held messages", "ended"]
    }

    /// Stores the advanced marks every ``storeInterval`` until cancelled.
    private func storeMarks() async {
        defer { storeLoop.enter(StoreLoopStage.ended.rawValue) }
        while !Task.isCancelled {
            storeLoop.enter(StoreLoopStage.sleeping.rawValue)
            do {
                try await clock.sleep(for: Self.storeInterval)
            } catch {
                return
            }
            storeLoop.enter(StoreLoopStage.storing.rawValue)
            storeFinishedMarks()
            storeLoop.enter(StoreLoopStage.releasing.rawValue)
            releaseHeldMessages()
        }
    }

    /// Stores the marks that advanced since the last call (no I/O: librdkafka commits them later).
    private func storeFinishedMarks() {
        store(book.takeUnstoredMarks())
    }

    /// Stores `marks` in the consumer; a failure is logged at `failureLevel`.
    private func store(_ marks: [KafkaTopicPartitionOffset], failureLevel: Logger.Level = .warning) {
        guard !marks.isEmpty else { return }
        do throws(KafkaError) {
            try consumer.storeOffsets(marks)
        } catch {
            logger.log(level: failureLevel, "offsets could not be stored", metadata: ["error": "\(error)"])
        }
    }

    /// Reads messages and submits them, waiting while the engine is at its limit.
    private func feed() async {
        // While the consumer joins its group: the first results then go out at once.
        await sink.prepare(logger: logger)
        // The waits come before a message is taken, so that none is held across them: a message held through a
        // wait could belong to a partition that was revoked and assigned again meanwhile, whose new assignment
        // starts from the committed offset, and submitting it would put an offset of the old assignment first.
        var messages = consumer.messages.makeAsyncIterator()
        while true {
            await engine.waitForCapacity()
            // While Mio is down or the line is stopped no job is taken: the consumer's buffer fills up and pauses
            // the partitions, and the consumer keeps polling, so the worker stays in its group.
            if let health { await health.waitUntilTakingJobs() }
            await waitForCommits()
            guard !Task.isCancelled, let message = await messages.next() else { return }
            var accepted = true
            let admission = gate.admit(message) { accepted = submit($0) }
            guard accepted else { return }
            if admission == .held(paused: true) {
                logger.debug(
                    "partition paused: its work is \(gate.limit) offsets past its committable mark",
                    metadata: ["kafka.partition": "\(message.topic)[\(message.partition)]"]
                )
            }
        }
    }

    /// Whether finished work has waited longer than ``KafkaWorker/Configuration/maxUncommittedTime`` for its commit.
    private var commitsAreBehind: Bool {
        guard let bound = configuration.effectiveMaxUncommittedTime, let age = book.uncommittedAge else { return false }
        return age >= bound
    }

    /// Takes no new job while finished work waits too long for its commit: librdkafka commits nothing while the
    /// group rebalances (and on librdkafka's mock cluster the coordinator refuses commits until the departed
    /// member's session expires), so work taken now could not be committed either, and a crash would repeat all
    /// of it. The consumer's buffer fills and pauses the partitions; the consumer keeps polling, so the member
    /// stays in its group. Jobs in flight finish; the first successful commit lets the feed go on.
    private func waitForCommits() async {
        guard commitsAreBehind else { return }
        let started = clock.now()
        metrics.holdingForCommits(true)
        // A commit answered a little later than the one before holds the feed for those milliseconds in a stable
        // group; only a hold that lasts (a rebalance, failing commits) is worth an operator's attention.
        var noticed = false
        var nextReminder = started + Self.commitHoldReminder
        var nextStore = started
        while commitsAreBehind {
            if !noticed, clock.now() - started >= Self.commitHoldNotice {
                noticed = true
                logger.info(
                    "not taking new jobs until the finished ones are committed (the group is rebalancing, or commits fail)",
                    metadata: ["uncommitted.for": "\(book.uncommittedAge ?? .zero)", "pending": "\(engine.pendingCount)"]
                )
            }
            // The marks ahead of the last commit are stored again now and then: a store refused during the
            // rebalance (or one librdkafka dropped with it) would otherwise never be committed, and no new mark
            // comes while the feed waits.
            if clock.now() >= nextStore {
                nextStore = clock.now() + Self.storeInterval * 5
                store(book.marksAheadOfCommit(), failureLevel: .debug)
            }
            if clock.now() >= nextReminder {
                nextReminder = clock.now() + Self.commitHoldReminder
                logger.warning(
                    "still not taking new jobs: no commit has succeeded for a long time; see the offset commit errors",
                    metadata: ["uncommitted.for": "\(book.uncommittedAge ?? .zero)"]
                )
            }
            do {
                try await clock.sleep(for: .milliseconds(20))
            } catch {
                break
            }
        }
        metrics.holdingForCommits(false)
        logger.log(
            level: noticed ? .info : .debug,
            "taking jobs again: the finished jobs were committed",
            metadata: ["held.for": "\(clock.now() - started)"]
        )
    }

    /// How long a hold for commits lasts before it is logged at info (shorter ones at debug).
    static let commitHoldNotice: Duration = .seconds(1)

    /// How often a hold for commits that lasts says so again, at warning level.
    static let commitHoldReminder: Duration = .seconds(30)

    /// Records `message` in the book and submits it; `false` when the engine no longer accepts jobs.
    private func submit(_ message: KafkaMessage) -> Bool {
        let source = JobSource(partition: PartitionID(topic: message.topic, partition: message.partition), offset: message.offset)
        guard book.received(source) else { return true }
        let item = InputItem(
            value: message.value ?? [],
            key: message.key,
            headers: message.headers.map { MessageHeader(name: $0.key, value: $0.value) },
            source: source
        )
        if let dropped = message.droppedValueBytes {
            // Over the job limit: the consumer did not copy the value; the dead-letter copy goes without it.
            return engine.submit(item, parsed: .failure(.messageTooLarge(bytes: dropped)))
        }
        return engine.submit(item)
    }

    /// Submits held messages whose partitions' marks moved (``RunAheadGate``); the gate resumes the partitions
    /// that have none held any more.
    private func releaseHeldMessages() {
        // Not while the feed waits for commits: a released message would be new work that cannot be committed.
        guard !commitsAreBehind else { return }
        gate.release { _ = submit($0) }
    }

    /// Backpressure: at the in-flight limit the feed stops reading; the consumer's buffer fills up and pauses
    /// every assigned partition (it keeps polling, so it stays in the group), and resumes them once the engine
    /// has drained it below half. Pausing only then, not at every touch of the limit, keeps librdkafka's
    /// prefetched messages: each pause discards them and a resume costs a fetch round trip.
    /// It also reports the rewinds the consumer undid and the input offsets it skipped (see docs/kafka.md).
    private func reportPauses() async {
        var rewindsUndone = 0
        var offsetsSkipped: Int64 = 0
        while !Task.isCancelled {
            metrics.partitionsPaused(consumer.pausedPartitionCount)
            let total = consumer.rewindsUndone
            metrics.undidRewinds(total - rewindsUndone)
            rewindsUndone = total
            let skipped = consumer.offsetsSkipped
            metrics.skippedOffsets(skipped - offsetsSkipped)
            offsetsSkipped = skipped
            do {
                try await clock.sleep(for: .seconds(1))
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
                if lost { metrics.partitionsLost(partitions.count) }
                // The event comes before the consumer forgets the partitions.
                metrics.partitionsAssigned(Set(consumer.assignment).subtracting(partitions).count)
            case .commitFailed, .error:
                continue
            }
        }
    }
}
