import Coordination
public import CoreMetrics
public import Logging
import Synchronization
public import Tracing

/// The pipeline without its transport: raw items in; decode, schedule, handle, deliver; events out.
///
/// The same engine serves Kafka and files. The caller
/// 1. calls ``run()`` once, in a task that lives as long as the engine (it hosts one child task per job),
/// 2. calls ``submit(_:)`` for every item as it arrives (never blocks; or ``submitAll(_:)`` for a file),
/// 3. reacts to ``Event``s: pause/resume its input, mark items done (commit their offsets), stop on a
///    delivery failure,
/// 4. on revoke calls ``dropQueued(partition:)`` and ``waitUntilIdle(partition:timeout:)``, and on shutdown
///    ``drain(timeout:)``.
///
/// An item that is not a valid job goes to ``ResultSink/deadLetter(_:reason:)``; a valid one to the
/// ``JobHandler`` and its result to ``ResultSink/publish(_:for:)``. Delivery is retried with backoff; an item is
/// reported ``Event/done(_:)`` only once its result or dead-letter copy was accepted.
public final class ProcessingEngine: Sendable {
    /// Settings of the engine.
    public struct Configuration: Sendable, Hashable {
        /// Limits, ordering and backpressure.
        public var scheduling: SchedulingConfiguration
        /// Retries of a failed result or dead-letter delivery (default: 8 attempts, 100 ms to 5 s backoff,
        /// within 60 s). When they run out the item is reported ``Event/deliveryFailed(_:_:)`` and not done.
        public var delivery: RetryPolicy
        /// The largest encoded result, in bytes; a larger one is replaced by a ``JobResult/Status/tooLarge`` result
        /// without Mio's answer (``JobResult/fitting(within:)``). `nil`: no limit. Default
        /// ``defaultMaxResultBytes``.
        public var maxResultBytes: Int?
        /// How long deliveries may fail with ``DeliveryFailure/Kind/unavailable`` while none at all succeeds before
        /// the run stops (the destination is gone, not busy). Within it such a delivery is retried with the backoff
        /// of ``delivery``, without its attempt limit. Default 5 minutes.
        public var maxOutage: Duration

        /// The default ``maxResultBytes``: 900,000 bytes, below the 1,000,000 bytes of librdkafka's default
        /// `message.max.bytes`, leaving room for the key, the headers and the record's framing.
        public static let defaultMaxResultBytes = 900_000

        /// Creates a configuration; the defaults are safe for production.
        /// - Parameters:
        ///   - scheduling: Limits, ordering and backpressure.
        ///   - delivery: Retries of failed deliveries.
        ///   - maxResultBytes: The largest encoded result (`nil`: no limit).
        ///   - maxOutage: How long no delivery may succeed before the run stops.
        public init(
            scheduling: SchedulingConfiguration = SchedulingConfiguration(),
            delivery: RetryPolicy = RetryPolicy(
                maxAttempts: 8,
                maxTimePerJob: .seconds(60),
                initialBackoff: .milliseconds(100),
                maxBackoff: .seconds(5)
            ),
            maxResultBytes: Int? = Configuration.defaultMaxResultBytes,
            maxOutage: Duration = .seconds(300)
        ) {
            self.scheduling = scheduling
            self.delivery = delivery
            self.maxResultBytes = maxResultBytes
            self.maxOutage = maxOutage
        }
    }

    /// Something the caller must act on. Delivered synchronously from the engine's tasks: handle it quickly and
    /// do not call ``submit(_:)`` from the handler.
    public enum Event: Sendable {
        /// Jobs pending reached the limit: pause the input (keep polling). Pause and resume events are delivered
        /// in the order of the state changes; the last one delivered is the current state.
        case pauseInput
        /// Jobs pending fell below the limit: resume the input.
        case resumeInput
        /// The item's result (or dead-letter copy) was accepted by the sink: its offset may be committed.
        case done(JobSource)
        /// The item's result (or dead-letter copy) could not be delivered after retries: it is NOT done. Do not
        /// commit past it; stop the worker rather than skip it.
        case deliveryFailed(JobSource, DeliveryError)
        /// The item's processing was cancelled (``drain(timeout:)`` ran out of time, or ``run()`` was
        /// cancelled): it is not done and will be redone after a restart.
        case cancelled(JobSource)
    }

    /// A result or dead-letter copy that the sink kept refusing.
    public struct DeliveryError: Error, Sendable, CustomStringConvertible {
        /// What could not be delivered.
        public enum Kind: String, Sendable, Hashable {
            /// A job's result.
            case result
            /// An invalid item's dead-letter copy.
            case deadLetter = "dead_letter"
        }

        /// What could not be delivered.
        public var kind: Kind
        /// The item.
        public var source: JobSource
        /// How many times delivery was tried.
        public var attempts: Int
        /// The sink's last error.
        public var underlying: any Error & Sendable
        /// How long no delivery at all had succeeded when the engine gave up, when that is why it gave up
        /// (``Configuration/maxOutage``).
        public var outage: Duration?

        /// Creates a delivery failure.
        /// - Parameters:
        ///   - kind: What could not be delivered.
        ///   - source: The item.
        ///   - attempts: How many times delivery was tried.
        ///   - underlying: The sink's last error.
        ///   - outage: How long no delivery had succeeded, when that is why the engine gave up.
        public init(kind: Kind, source: JobSource, attempts: Int, underlying: any Error & Sendable, outage: Duration? = nil) {
            self.kind = kind
            self.source = source
            self.attempts = attempts
            self.underlying = underlying
            self.outage = outage
        }

        /// `delivering the result of topic[0]@42 failed 8 times: <error>`, preceded by the reason to give up when
        /// it is not the attempts: `nothing could be delivered for 300s: ...`, `the sink is unusable: ...`.
        public var description: String {
            let what = kind == .result ? "the result" : "the dead-letter copy"
            let times = attempts == 1 ? "once" : "\(attempts) times"
            let text = "delivering \(what) of \(source) failed \(times): \(String(describing: underlying))"
            if let outage {
                return "nothing could be delivered for \(outage.components.seconds)s: " + text
            }
            if let failure = underlying as? DeliveryFailure {
                switch failure.kind {
                case .fatal: return "the output can deliver nothing any more: " + text
                case .refused where kind == .deadLetter: return "the dead-letter destination refused the copy: " + text
                default: break
                }
            }
            return text
        }
    }

    /// A submitted item, with the clock's reading at submission (for `mioctx_job_duration_seconds`).
    enum Work: Sendable {
        case job(Job, InputItem, submittedAt: Duration)
        case invalid(InvalidJob, InputItem)

        var item: InputItem {
            switch self {
            case .job(_, let item, _), .invalid(_, let item): item
            }
        }
    }

    typealias Scheduler = JobScheduler<Work>

    enum Command: Sendable {
        /// Start one more worker task: entries are waiting and no worker is idle.
        case addWorker
        case cancelInFlight
    }

    /// The settings.
    public let configuration: Configuration
    let handler: JobHandler
    let sink: any ResultSink
    let clock: TimeSource
    let random: @Sendable () -> Double
    let logger: Logger
    let metrics: EngineMetrics
    let tracer: JobTracer
    let onEvent: @Sendable (Event) -> Void
    let state: WaitableState<State, Wake>
    let deliveredBackpressure = Mutex<UInt64>(0)
    /// The clock's reading at the last delivery that succeeded (for ``Configuration/maxOutage``).
    let lastDelivery = Mutex<Duration?>(nil)
    let commands: AsyncStream<Command>
    let commandContinuation: AsyncStream<Command>.Continuation
    let workers = Mutex(Workers())

    /// Creates an engine; nothing runs until ``run()``.
    /// - Parameters:
    ///   - handler: Processes valid jobs; its clock also times delivery retries and waits.
    ///   - sink: Where results and dead-letter copies go.
    ///   - configuration: Limits and delivery retries.
    ///   - random: Uniform random numbers in `[0, 1)` for the delivery-retry jitter.
    ///   - logger: Delivery failures at error, retried deliveries at warning, the rest at debug; lines about one item
    ///     carry `job.id` (when known), `job.topic`, `job.partition` and `job.offset`.
    ///   - metricsFactory: Receives the job metrics (`mioctx_jobs_received_total`, `mioctx_jobs_completed_total`,
    ///     `mioctx_dead_letters_total`, `mioctx_job_duration_seconds`, `mioctx_jobs_in_flight`); default: the
    ///     bootstrapped `MetricsSystem.factory`.
    ///   - tracer: Starts a ``JobSpan/job`` span per job, child of the trace context in the item's headers, with a
    ///     ``JobSpan/publish`` child (default: the bootstrapped `InstrumentationSystem.tracer`).
    ///   - onEvent: Receives the engine's events (see ``Event``).
    public init(
        handler: JobHandler,
        sink: any ResultSink,
        configuration: Configuration = Configuration(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0 ..< 1) },
        logger: Logger = Logger(label: "mioctx.processor"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer,
        onEvent: @escaping @Sendable (Event) -> Void
    ) {
        self.metrics = EngineMetrics(factory: metricsFactory)
        self.tracer = JobTracer(tracer)
        self.configuration = configuration
        self.handler = handler
        self.sink = sink
        self.clock = handler.timeSource
        self.random = random
        self.logger = logger
        self.onEvent = onEvent
        self.state = WaitableState(State(scheduler: Scheduler(configuration: configuration.scheduling)))
        (commands, commandContinuation) = AsyncStream.makeStream(of: Command.self)
    }

    // MARK: - Observing

    /// Items submitted and not finished.
    public var pendingCount: Int { state.withLock { state, _ in state.scheduler.pendingCount } }
    /// Jobs being processed or delivered right now.
    public var runningCount: Int { state.withLock { state, _ in state.scheduler.runningCount } }
    /// The scheduler's counts and busy users, for diagnostics (``JobScheduler/summary``).
    public var schedulerSummary: String { state.withLock { state, _ in state.scheduler.summary } }
    /// Whether the input should currently be paused.
    public var isInputPaused: Bool { state.withLock { state, _ in state.scheduler.isInputPaused } }
    /// Items of a partition submitted and not finished.
    /// - Parameter partition: The partition.
    /// - Returns: Its pending items.
    public func pendingCount(in partition: PartitionID) -> Int {
        state.withLock { state, _ in state.scheduler.pendingCount(in: partition) }
    }

    // MARK: - Running

    /// Hosts the processing of jobs until ``drain(timeout:)`` or ``stop(cancelInFlight:)``; call it exactly once.
    /// Cancelling it cancels every job in flight (their items are reported ``Event/cancelled(_:)``) and stops
    /// the engine.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for await command in commands {
                switch command {
                case .addWorker:
                    group.addTask { await self.work() }
                case .cancelInFlight:
                    group.cancelAll()
                }
            }
            // No command any more: idle workers end, busy ones end after their entry and the queue.
            self.finishWorkers()
        }
        // Ended by cancellation rather than by stop(): accept nothing more, nothing would run it.
        stop(cancelInFlight: false)
    }

    /// Decodes an item and schedules it. Never blocks: when jobs pending reach the limit the item still waits
    /// in the engine, and ``Event/pauseInput`` asks the caller to stop reading.
    /// - Parameter item: The raw input.
    /// - Returns: `false` if the engine no longer accepts items (draining or stopped); the item was not taken.
    @discardableResult
    public func submit(_ item: InputItem) -> Bool {
        self.submit(item, parsed: Result { () throws(InvalidJob) in try Job(decoding: item.value, source: item.source) })
    }

    /// ``submit(_:)`` for an item whose value was already parsed (with its source) by the caller.
    package func submit(_ item: InputItem, parsed: Result<Job, InvalidJob>) -> Bool {
        let work: Work
        let userID: String?
        var orderingKey: String?
        do {
            let job = try parsed.get()
            work = .job(job, item, submittedAt: clock.now())
            userID = job.userID
            if configuration.scheduling.ordering == .key {
                if let key = item.key, !key.isEmpty {
                    orderingKey = String(decoding: key, as: UTF8.self)
                } else {
                    orderingKey = job.userID
                }
            }
        } catch {
            logger.forItem(item.source).debug("invalid job", metadata: ["reason": "\(error.code)"])
            work = .invalid(error, item)
            userID = nil
        }
        let outcome = state.withLock { state, waiters -> Outcome? in
            guard state.accepting else { return nil }
            let actions = state.scheduler.submit(
                work,
                userID: userID,
                orderingKey: orderingKey,
                partition: item.source.partition
            )
            return Self.outcome(of: actions, in: &state, waiters: &waiters, touching: nil)
        }
        guard let outcome else { return false }
        metrics.submitted()
        perform(outcome)
        return true
    }

    /// Submits every item of a sequence, waiting for capacity before each (for inputs that can simply wait,
    /// such as files). Returns when the sequence ends or the engine stops accepting.
    /// - Parameter items: The items.
    /// - Throws: What the sequence throws.
    public func submitAll<Items: AsyncSequence>(_ items: Items) async throws where Items.Element == InputItem {
        for try await item in items {
            await waitForCapacity()
            guard submit(item) else { return }
        }
    }

    /// Waits until the input need not be paused (or the engine stopped accepting).
    public func waitForCapacity() async {
        await wait(for: .capacity)
    }

    /// Removes the items of a partition that have not started (after the partition was revoked). Items in
    /// flight continue; wait for them with ``waitUntilIdle(partition:timeout:)``.
    /// - Parameter partition: The revoked partition.
    /// - Returns: The sources of the removed items; they are not done and produce no event.
    public func dropQueued(partition: PartitionID) -> [JobSource] {
        let (dropped, outcome) = state.withLock { state, waiters in
            let (dropped, actions) = state.scheduler.dropQueued(partition: partition)
            return (dropped, Self.outcome(of: actions, in: &state, waiters: &waiters, touching: partition))
        }
        if !dropped.isEmpty { metrics.finished(count: dropped.count) }
        perform(outcome)
        return dropped.map { $0.payload.item.source }
    }

    /// Waits until no item of a partition (or of any partition) is pending, for at most `timeout`.
    /// - Parameters:
    ///   - partition: The partition, or `nil` for all.
    ///   - timeout: The longest wait.
    /// - Returns: Whether it became idle in time.
    public func waitUntilIdle(partition: PartitionID? = nil, timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.wait(for: .idle(partition))
                return !Task.isCancelled
            }
            group.addTask {
                try? await self.clock.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Stops accepting items, waits up to `timeout` for every pending item to finish, then ends ``run()``
    /// (cancelling what is still in flight if the time ran out).
    /// - Parameter timeout: The longest wait.
    /// - Returns: Whether every pending item finished in time.
    @discardableResult
    public func drain(timeout: Duration) async -> Bool {
        stopAccepting()
        let idle = await waitUntilIdle(timeout: timeout)
        if !idle {
            logger.warning("drain timed out; cancelling jobs in flight", metadata: ["pending": "\(pendingCount)"])
        }
        stop(cancelInFlight: !idle)
        return idle
    }

    /// Stops accepting items and ends ``run()`` once the jobs in flight end (at once if `cancelInFlight`).
    /// - Parameter cancelInFlight: Whether to cancel the jobs in flight.
    public func stop(cancelInFlight: Bool = true) {
        stopAccepting()
        if cancelInFlight { commandContinuation.yield(.cancelInFlight) }
        commandContinuation.finish()
        finishWorkers()
    }
}
