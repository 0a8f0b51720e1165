public import CoreMetrics
public import Logging
import DequeModule
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

        /// Creates a configuration; the defaults are safe for production.
        /// - Parameters:
        ///   - scheduling: Limits, ordering and backpressure.
        ///   - delivery: Retries of failed deliveries.
        public init(
            scheduling: SchedulingConfiguration = SchedulingConfiguration(),
            delivery: RetryPolicy = RetryPolicy(
                maxAttempts: 8,
                maxTimePerJob: .seconds(60),
                initialBackoff: .milliseconds(100),
                maxBackoff: .seconds(5)
            )
        ) {
            self.scheduling = scheduling
            self.delivery = delivery
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

        /// `delivering the result of topic[0]@42 failed 8 times: <error>`.
        public var description: String {
            let what = kind == .result ? "the result" : "the dead-letter copy"
            return "delivering \(what) of \(source) failed \(attempts) times: \(String(describing: underlying))"
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

    private typealias Scheduler = JobScheduler<Work>

    private enum Command: Sendable {
        /// Start one more worker task: entries are waiting and no worker is idle.
        case addWorker
        case cancelInFlight
    }

    /// The entries to start and the worker tasks that start them.
    ///
    /// Jobs run on long-lived worker tasks rather than on a task each: a task per job cost its creation, its task
    /// allocator's slabs and a hop through ``run()`` for every job. A worker is added when an entry finds no idle
    /// one, so there are as many as entries ever ran at once (handled or being delivered; the scheduler bounds
    /// those), as there were tasks before.
    private struct Workers {
        /// Entries no worker has taken yet, oldest first.
        var queue = Deque<Scheduler.Entry>()
        /// Workers waiting for an entry (`nil` tells them to end); the last to fall idle is woken first.
        var idle: [(id: UInt64, continuation: UnsafeContinuation<Scheduler.Entry?, Never>)] = []
        var nextIdleID: UInt64 = 0
        /// No entry will come any more: workers end once the queue is empty.
        var isFinished = false
    }

    private enum Condition {
        case idle(PartitionID?)
        case capacity
    }

    private enum WaiterState {
        case registered
        case waiting(CheckedContinuation<Void, Never>)
        case cancelled
    }

    private struct Waiter {
        var condition: Condition
        var state: WaiterState
    }

    private struct State {
        var scheduler: Scheduler
        var accepting = true
        var backpressureGeneration: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiterID: UInt64 = 0

        func isMet(_ condition: Condition) -> Bool {
            switch condition {
            case .idle(nil): scheduler.pendingCount == 0
            case .idle(let partition?): scheduler.pendingCount(in: partition) == 0
            case .capacity: !scheduler.isInputPaused || !accepting
            }
        }

        mutating func takeMetWaiters() -> [CheckedContinuation<Void, Never>] {
            guard !waiters.isEmpty else { return [] }
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in waiters {
                if case .waiting(let continuation) = waiter.state, isMet(waiter.condition) {
                    ready.append(continuation)
                    waiters[id] = nil
                }
            }
            return ready
        }
    }

    private struct Outcome {
        var start: [Scheduler.Entry]
        var backpressure: (Scheduler.Backpressure, UInt64)?
        var resume: [CheckedContinuation<Void, Never>]
    }

    /// The settings.
    public let configuration: Configuration
    private let handler: JobHandler
    private let sink: any ResultSink
    private let clock: ProcessorClock
    private let random: @Sendable () -> Double
    private let logger: Logger
    private let metrics: EngineMetrics
    private let tracer: JobTracer
    private let onEvent: @Sendable (Event) -> Void
    private let state: Mutex<State>
    private let deliveredBackpressure = Mutex<UInt64>(0)
    private let commands: AsyncStream<Command>
    private let commandContinuation: AsyncStream<Command>.Continuation
    private let workers = Mutex(Workers())

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
        self.clock = handler.processorClock
        self.random = random
        self.logger = logger
        self.onEvent = onEvent
        self.state = Mutex(State(scheduler: Scheduler(configuration: configuration.scheduling)))
        (commands, commandContinuation) = AsyncStream.makeStream(of: Command.self)
    }

    // MARK: - Observing

    /// Items submitted and not finished.
    public var pendingCount: Int { state.withLock { $0.scheduler.pendingCount } }
    /// Jobs being processed or delivered right now.
    public var runningCount: Int { state.withLock { $0.scheduler.runningCount } }
    /// Whether the input should currently be paused.
    public var isInputPaused: Bool { state.withLock { $0.scheduler.isInputPaused } }
    /// Items of a partition submitted and not finished.
    /// - Parameter partition: The partition.
    /// - Returns: Its pending items.
    public func pendingCount(in partition: PartitionID) -> Int {
        state.withLock { $0.scheduler.pendingCount(in: partition) }
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
    func submit(_ item: InputItem, parsed: Result<Job, InvalidJob>) -> Bool {
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
        let outcome = state.withLock { state -> Outcome? in
            guard state.accepting else { return nil }
            let actions = state.scheduler.submit(
                work,
                userID: userID,
                orderingKey: orderingKey,
                partition: item.source.partition
            )
            return Self.outcome(of: actions, in: &state)
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
        let (dropped, outcome) = state.withLock { state in
            let (dropped, actions) = state.scheduler.dropQueued(partition: partition)
            return (dropped, Self.outcome(of: actions, in: &state))
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

    // MARK: - Workers

    /// One worker task: starts entries until there are no more.
    private func work() async {
        while let entry = await nextEntry() {
            await execute(entry)
        }
    }

    /// The oldest entry not yet taken, waiting for one if there is none; `nil` when the worker should end
    /// (the engine stopped, or the worker's task was cancelled).
    private func nextEntry() async -> Scheduler.Entry? {
        if Task.isCancelled { return nil }
        enum Taken {
            case entry(Scheduler.Entry)
            case end
            case wait(UInt64)
        }
        let taken = workers.withLock { workers -> Taken in
            if let entry = workers.queue.popFirst() { return .entry(entry) }
            if workers.isFinished { return .end }
            workers.nextIdleID += 1
            return .wait(workers.nextIdleID)
        }
        switch taken {
        case .entry(let entry):
            return entry
        case .end:
            return nil
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Scheduler.Entry?, Never>) in
                    let now = workers.withLock { workers -> Scheduler.Entry?? in
                        // An entry or the end may have come between the two locks.
                        if let entry = workers.queue.popFirst() { return .some(entry) }
                        if workers.isFinished || Task.isCancelled { return .some(nil) }
                        workers.idle.append((id, continuation))
                        return .none
                    }
                    if let now { continuation.resume(returning: now) }
                }
            } onCancel: {
                let continuation = workers.withLock { workers in
                    workers.idle.firstIndex { $0.id == id }.map { workers.idle.remove(at: $0).continuation }
                }
                continuation?.resume(returning: nil)
            }
        }
    }

    /// Hands entries to idle workers, and queues the others with a new worker asked of ``run()`` for each.
    private func start(_ entries: [Scheduler.Entry]) {
        for entry in entries {
            // One at a time: most calls start one entry, and this needs no array.
            let idle = workers.withLock { workers -> UnsafeContinuation<Scheduler.Entry?, Never>? in
                if let idle = workers.idle.popLast() { return idle.continuation }
                workers.queue.append(entry)
                return nil
            }
            if let idle {
                idle.resume(returning: entry)
            } else {
                commandContinuation.yield(.addWorker)
            }
        }
    }

    /// No entry will come: idle workers end now, busy ones once the queue is empty.
    private func finishWorkers() {
        let idle = workers.withLock { workers in
            workers.isFinished = true
            let idle = workers.idle.map(\.continuation)
            workers.idle.removeAll()
            return idle
        }
        for continuation in idle { continuation.resume(returning: nil) }
    }

    /// Refuses new items and wakes the waiters whose condition that meets.
    private func stopAccepting() {
        let resume = state.withLock { state in
            state.accepting = false
            return state.takeMetWaiters()
        }
        for continuation in resume { continuation.resume() }
    }

    // MARK: - One item

    private enum DeliveryOutcome {
        case delivered
        case failed(DeliveryError)
        case cancelled
    }

    private func execute(_ entry: Scheduler.Entry) async {
        let source = entry.payload.item.source
        var parent = ServiceContext.topLevel
        if tracer.records {
            tracer.tracer.extract(entry.payload.item.headers, into: &parent, using: MessageHeaderExtractor())
        }
        let logger: Logger
        // The job's metadata goes on every line about it. Only debug lines are written on the way of a job that
        // goes well, so the logger carrying it is made up front only when they are on, and otherwise only for a
        // warning or an error.
        let detailed = self.logger.logLevel <= .debug
        var jobOfLines: Job?
        let delivery: DeliveryOutcome
        /// Whether the job's slot was released before its delivery (``release(_:)``).
        var handled = false
        switch entry.payload {
        case .job(let job, let item, let submittedAt):
            jobOfLines = job
            logger = detailed ? self.logger.forJob(job) : self.logger
            (delivery, handled) = await tracer.withSpan(JobSpan.job, context: parent, ofKind: .consumer) { span in
                Self.describe(source, jobID: job.id, on: span)
                guard let result = await handle(job, logger: logger) else {
                    return (.cancelled, false)
                }
                if span.isRecording { span.attributes["mioctx.job.status"] = result.status.rawValue }
                release(entry)
                let delivery = await tracer.withSpan(JobSpan.publish, ofKind: .producer) { publishSpan in
                    await deliver(.result, source: source, logger: detailed ? logger : self.logger.forJob(job), span: publishSpan) {
                        try await self.sink.publish(result, for: item)
                    }
                }
                if case .delivered = delivery {
                    metrics.completed(result.status, after: clock.now() - submittedAt)
                    logger.debug("job done", metadata: ["status": "\(result.status.rawValue)", "attempts": "\(result.attempts)"])
                }
                return (delivery, true)
            }
        case .invalid(let reason, let item):
            logger = self.logger.forItem(source)
            delivery = await tracer.withSpan(JobSpan.deadLetter, context: parent, ofKind: .producer) { span in
                Self.describe(source, jobID: nil, on: span)
                if span.isRecording { span.attributes["mioctx.dead_letter.reason"] = reason.code.description }
                let delivery = await deliver(.deadLetter, source: source, logger: logger, span: span) {
                    try await self.sink.deadLetter(item, reason: reason)
                }
                if case .delivered = delivery {
                    metrics.deadLettered(reason.code)
                }
                return delivery
            }
        }
        metrics.finished()
        switch delivery {
        case .delivered:
            onEvent(.done(source))
        case .failed(let error):
            let lineLogger = detailed ? logger : jobOfLines.map { self.logger.forJob($0) } ?? logger
            lineLogger.error("could not deliver; the item is not done", metadata: ["error": "\(error)"])
            onEvent(.deliveryFailed(source, error))
        case .cancelled:
            onEvent(.cancelled(source))
        }
        let outcome = state.withLock { state in
            Self.outcome(of: state.scheduler.complete(entry, handled: handled), in: &state)
        }
        perform(outcome)
    }

    /// Runs the handler; `nil` when the job was cancelled.
    ///
    /// Not inlined, like ``deliver(_:source:logger:span:_:)``: a task keeps the memory of its deepest stack of
    /// async frames until it ends, so handling and delivery, which run one after the other, must not share one
    /// frame (with 1,024 jobs in flight, that saves megabytes).
    @inline(never)
    private func handle(_ job: Job, logger: Logger) async -> JobResult? {
        try? await handler.handle(job, logger: logger)
    }

    /// The job's work is done: its slot goes to the next job while its result is delivered.
    private func release(_ entry: Scheduler.Entry) {
        let outcome = state.withLock { state in
            Self.outcome(of: state.scheduler.handled(entry), in: &state)
        }
        perform(outcome)
    }

    /// Names the job's message on its span; nothing when the span records nothing (building attributes costs).
    private static func describe(_ source: JobSource, jobID: String?, on span: any Span) {
        guard span.isRecording else { return }
        if let jobID { span.attributes["mioctx.job.id"] = jobID }
        span.attributes["messaging.destination.name"] = source.partition.topic
        span.attributes["messaging.destination.partition.id"] = "\(source.partition.partition)"
        span.attributes["messaging.kafka.offset"] = source.offset
    }

    @inline(never)
    private func deliver(
        _ kind: DeliveryError.Kind,
        source: JobSource,
        logger: @autoclosure () -> Logger,
        span: any Span,
        _ body: () async throws -> Void
    ) async -> DeliveryOutcome {
        let policy = configuration.delivery
        let start = clock.now()
        var attempts = 0
        while true {
            attempts += 1
            do {
                try await body()
                return .delivered
            } catch {
                if error is CancellationError || Task.isCancelled { return .cancelled }
                span.recordError(error)
                let delay = policy.delay(afterAttempt: attempts, retryAfter: nil, random: random())
                if attempts >= policy.maxAttempts || clock.now() - start + delay > policy.maxTimePerJob {
                    return .failed(DeliveryError(kind: kind, source: source, attempts: attempts, underlying: error))
                }
                logger().warning(
                    "delivery failed; retrying",
                    metadata: ["attempt": "\(attempts)", "error": "\(String(describing: error))"]
                )
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    return .cancelled
                }
            }
        }
    }

    // MARK: - Carrying out actions

    private static func outcome(of actions: Scheduler.Actions, in state: inout State) -> Outcome {
        var backpressure: (Scheduler.Backpressure, UInt64)?
        if let change = actions.backpressure {
            state.backpressureGeneration += 1
            backpressure = (change, state.backpressureGeneration)
        }
        return Outcome(start: actions.start, backpressure: backpressure, resume: state.takeMetWaiters())
    }

    private func perform(_ outcome: Outcome) {
        start(outcome.start)
        if let (change, generation) = outcome.backpressure {
            // Pause and resume are decided under the state lock but delivered after it; a generation number
            // keeps a stale change from overtaking a newer one.
            deliveredBackpressure.withLock { delivered in
                guard generation > delivered else { return }
                delivered = generation
                onEvent(change == .pauseInput ? .pauseInput : .resumeInput)
            }
        }
        for continuation in outcome.resume { continuation.resume() }
    }

    private func wait(for condition: Condition) async {
        let id = state.withLock { state -> UInt64? in
            if state.isMet(condition) { return nil }
            state.nextWaiterID += 1
            state.waiters[state.nextWaiterID] = Waiter(condition: condition, state: .registered)
            return state.nextWaiterID
        }
        guard let id else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    guard let waiter = state.waiters[id] else { return true }
                    if case .cancelled = waiter.state {
                        state.waiters[id] = nil
                        return true
                    }
                    if state.isMet(condition) {
                        state.waiters[id] = nil
                        return true
                    }
                    state.waiters[id]!.state = .waiting(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let waiter = state.waiters[id] else { return nil }
                switch waiter.state {
                case .registered:
                    state.waiters[id]!.state = .cancelled
                    return nil
                case .waiting(let continuation):
                    state.waiters[id] = nil
                    return continuation
                case .cancelled:
                    return nil
                }
            }
            continuation?.resume()
        }
    }
}
