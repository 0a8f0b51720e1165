import Coordination
public import Logging
public import Pipeline
import Synchronization

/// Runs the pipeline over a JSON Lines file: every line through the ``ProcessingEngine`` (the same limits,
/// retries and token handling as the Kafka worker), every result into a ``JSONLResultSink``.
///
/// - Lines whose job id already has a result in the output (a resumed run) or that repeat an id seen earlier in
///   the input are skipped: each job id gets at most one result line.
/// - Invalid lines go to ``JSONLResultSink/deadLetter(_:reason:)`` (the rejects file) with their line numbers; the
///   other lines are processed. A line over the reader's limit is rejected as `field_too_large`.
/// - ``interrupt()`` stops reading, gives the jobs in flight ``Configuration/gracePeriod`` to finish, and ends the
///   run; a later run on the same files resumes.
/// - A result that cannot be written after the engine's delivery retries stops the run the same way.
///
/// Use one instance for one run.
public final class FileEnrichment: Sendable {
    /// Settings of a run.
    public struct Configuration: Sendable, Hashable {
        /// Limits and delivery retries of the engine.
        public var engine: ProcessingEngine.Configuration
        /// How long jobs in flight may take to finish after an interruption or a write failure (default 30 s).
        public var gracePeriod: Duration

        /// Creates a configuration.
        /// - Parameters:
        ///   - engine: Limits and delivery retries.
        ///   - gracePeriod: How long jobs in flight may finish after an interruption.
        public init(
            engine: ProcessingEngine.Configuration = ProcessingEngine.Configuration(),
            gracePeriod: Duration = .seconds(30)
        ) {
            self.engine = engine
            self.gracePeriod = gracePeriod
        }
    }

    /// Where a run stands. Every line read ends up in exactly one of `blankLines`, `alreadyDone`, `duplicates`,
    /// `finished` (a result or a rejection written) or `oversized`, or is still pending.
    public struct Progress: Sendable, Hashable {
        /// Lines read so far.
        public var linesRead: Int64 = 0
        /// Blank lines (skipped).
        public var blankLines: Int64 = 0
        /// Lines whose job id already had a result in the output (skipped).
        public var alreadyDone: Int64 = 0
        /// Lines whose job id appeared earlier in the input (skipped).
        public var duplicates: Int64 = 0
        /// Lines handed to the engine.
        public var submitted: Int64 = 0
        /// Submitted lines whose result or rejection was written.
        public var finished: Int64 = 0
        /// Lines over the length limit (rejected without the engine).
        public var oversized: Int64 = 0
        /// Submitted lines abandoned by an interruption (no result written; a resumed run redoes them).
        public var cancelled: Int64 = 0
        /// Submitted lines whose result or rejection could not be written.
        public var failed: Int64 = 0
        /// Whether the whole input was read.
        public var inputFinished = false
        /// What the sink wrote (results by status, rejections).
        public var written = JSONLResultSink.Statistics()

        /// Lines fully handled: skipped, or with their result or rejection written.
        public var linesHandled: Int64 { blankLines + alreadyDone + duplicates + finished + oversized }
        /// Lines rejected (invalid or over the length limit).
        public var rejected: Int { written.rejections }
    }

    /// How a run ended.
    public enum Outcome: Sendable {
        /// Every line was read and every job has its result (or rejection) written.
        case completed
        /// ``interrupt()`` was called: lines may remain unread or unfinished; run again to resume.
        case interrupted
        /// The input could not be read to its end (the lines read before were handled).
        case inputFailed(any Error & Sendable)
        /// A result or rejection could not be written: the run stopped; run again to resume.
        case writeFailed(ProcessingEngine.DeliveryError)
    }

    /// The end of a run.
    public struct Summary: Sendable {
        /// How it ended.
        public var outcome: Outcome
        /// The final counts.
        public var progress: Progress
        /// Time from the start of the run to its end.
        public var elapsed: Duration
    }

    private enum Stop: Sendable {
        case interrupt
        case writeFailed(ProcessingEngine.DeliveryError)
    }

    private struct State {
        var progress = Progress()
        /// Ids with a result before the run.
        var resumed: Set<String> = []
        /// Ids with a result before the run, or submitted in it.
        var seen: Set<String> = []
        var stopping: Stop?
        var inputError: (any Error & Sendable)?
        var started = false
    }

    /// The settings.
    public let configuration: Configuration
    private let handler: JobHandler
    private let sink: JSONLResultSink
    private let logger: Logger
    private let state = Mutex(State())
    private let stops: AsyncStream<Stop>
    private let stopContinuation: AsyncStream<Stop>.Continuation

    /// Creates a run; nothing happens until ``run(_:skipping:)``.
    /// - Parameters:
    ///   - handler: Processes the jobs (its clock times the run).
    ///   - sink: Where results and rejections go.
    ///   - configuration: Limits, retries, grace period.
    ///   - logger: The engine's logger.
    public init(
        handler: JobHandler,
        sink: JSONLResultSink,
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "mioctx.enrich")
    ) {
        self.handler = handler
        self.sink = sink
        self.configuration = configuration
        self.logger = logger
        (stops, stopContinuation) = AsyncStream.makeStream(of: Stop.self, bufferingPolicy: .bufferingNewest(4))
    }

    /// Where the run stands now (safe to call from any task, e.g. a progress display).
    public var progress: Progress {
        var progress = state.withLock { $0.progress }
        progress.written = sink.statistics
        return progress
    }

    /// Stops reading, lets the jobs in flight finish within the grace period, and makes ``run(_:skipping:)``
    /// return ``Outcome/interrupted`` (unless it already completed). Safe to call more than once, from any task.
    public func interrupt() {
        let first = state.withLock { state -> Bool in
            guard state.stopping == nil else { return false }
            state.stopping = .interrupt
            return true
        }
        if first { stopContinuation.yield(.interrupt) }
    }

    /// Reads every line of `input`, processes the jobs and writes their results; returns when all are written,
    /// or after an interruption, a read failure or a write failure. Call it once.
    /// - Parameters:
    ///   - input: The lines.
    ///   - alreadyDone: Job ids that already have a result (``JSONLResultSink/OutputScan/jobIDs``); skipped.
    /// - Returns: How the run ended, with its counts.
    public func run(_ input: JSONLJobReader, skipping alreadyDone: Set<String>) async -> Summary {
        let clock = handler.timeSource
        let start = clock.now()
        state.withLock { state in
            precondition(!state.started, "FileEnrichment.run is called once")
            state.started = true
            state.resumed = alreadyDone
            state.seen = alreadyDone
        }
        let engine = ProcessingEngine(
            handler: handler,
            sink: sink,
            configuration: configuration.engine,
            logger: logger,
            onEvent: { [weak self] event in self?.record(event) }
        )
        let gracePeriod = configuration.gracePeriod
        await withDiscardingTaskGroup { group in
            group.addTask { await engine.run() }
            let reading = Task {
                for try await (item, parsed) in Admission(lines: input, enrichment: self) {
                    await engine.waitForCapacity()
                    guard engine.submit(item, parsed: parsed) else { return }
                }
            }
            group.addTask { [stops] in
                // An interruption or a write failure: stop reading, give the jobs in flight their grace period.
                for await stop in stops {
                    reading.cancel()
                    if case .writeFailed = stop {
                        engine.stop(cancelInFlight: true)
                    } else {
                        await engine.drain(timeout: gracePeriod)
                    }
                    return
                }
            }
            let read = await withTaskCancellationHandler {
                await reading.result
            } onCancel: {
                reading.cancel()
            }
            if case .failure(let error) = read, !(error is CancellationError) {
                state.withLock { state in
                    if state.stopping == nil { state.inputError = error }
                }
            }
            // Without a stop, every submitted job gets all the time it needs (the handler bounds each one).
            await engine.drain(timeout: .seconds(365 * 86_400))
            stopContinuation.finish()
        }
        let outcome = state.withLock { state -> Outcome in
            if case .writeFailed(let error) = state.stopping { return .writeFailed(error) }
            if let error = state.inputError { return .inputFailed(error) }
            // An interruption that came after the last result was written changed nothing.
            let progress = state.progress
            if progress.inputFinished && progress.cancelled == 0 && progress.finished == progress.submitted {
                return .completed
            }
            return .interrupted
        }
        return Summary(outcome: outcome, progress: progress, elapsed: clock.now() - start)
    }

    private func record(_ event: ProcessingEngine.Event) {
        switch event {
        case .pauseInput, .resumeInput:
            // The reading loop waits for capacity itself.
            break
        case .done:
            state.withLock { $0.progress.finished += 1 }
        case .cancelled:
            state.withLock { $0.progress.cancelled += 1 }
        case .deliveryFailed(_, let error):
            let first = state.withLock { state -> Bool in
                state.progress.failed += 1
                if case .writeFailed = state.stopping { return false }
                state.stopping = .writeFailed(error)
                return true
            }
            if first { stopContinuation.yield(.writeFailed(error)) }
        }
    }

    fileprivate var isStopping: Bool { state.withLock { $0.stopping != nil } }

    fileprivate func markInputFinished() {
        state.withLock { $0.progress.inputFinished = true }
    }

    /// Decides what to do with a line read: skip it, reject it here (too long), or hand it to the engine.
    /// A line to submit comes with its parse, so that the engine does not parse it again.
    fileprivate func admit(
        _ line: JSONLJobReader.Line,
        file: String
    ) async throws -> (InputItem, Result<Job, InvalidJob>)? {
        enum Decision {
            case skip
            case oversized
            case submit
        }
        let item = line.item(file: file)
        var parsed: Result<Job, InvalidJob>?
        if !line.isCut && !line.isBlank {
            parsed = Result { () throws(InvalidJob) in try Job(decoding: item.value, source: item.source) }
        }
        let jobID = try? parsed?.get().id
        let decision = state.withLock { state -> Decision in
            state.progress.linesRead += 1
            if line.isBlank {
                state.progress.blankLines += 1
                return .skip
            }
            if line.isCut {
                state.progress.oversized += 1
                return .oversized
            }
            if let jobID, !state.seen.insert(jobID).inserted {
                if state.resumed.contains(jobID) {
                    state.progress.alreadyDone += 1
                } else {
                    state.progress.duplicates += 1
                }
                return .skip
            }
            state.progress.submitted += 1
            return .submit
        }
        switch decision {
        case .skip:
            return nil
        case .submit:
            guard let parsed else { preconditionFailure("only a whole, non-blank line is submitted") }
            return (item, parsed)
        case .oversized:
            // The engine would only see the line's start; the reason must name the real length.
            let reason = InvalidJob(
                code: .fieldTooLarge,
                message: "the line is \(line.length) bytes, over the limit of \(line.bytes.count)"
            )
            do {
                try await sink.deadLetter(item, reason: reason)
            } catch {
                // Not retried like the engine's deliveries: a rejects file that refuses one line refuses the next.
                record(.deliveryFailed(item.source, ProcessingEngine.DeliveryError(
                    kind: .deadLetter, source: item.source, attempts: 1, underlying: error
                )))
                throw CancellationError()
            }
            return nil
        }
    }
}

/// The lines of a file as engine items, minus the ones ``FileEnrichment`` skips or rejects itself.
private struct Admission: AsyncSequence {
    typealias Element = (InputItem, Result<Job, InvalidJob>)

    let lines: JSONLJobReader
    let enrichment: FileEnrichment

    func makeAsyncIterator() -> Iterator {
        Iterator(lines: lines.makeAsyncIterator(), file: lines.path, enrichment: enrichment)
    }

    struct Iterator: AsyncIteratorProtocol {
        var lines: JSONLJobReader.Iterator
        let file: String
        let enrichment: FileEnrichment

        mutating func next() async throws -> (InputItem, Result<Job, InvalidJob>)? {
            // Checked before every read: after a stop no further line is taken, even before the reading task
            // sees its cancellation.
            while !enrichment.isStopping {
                guard let line = try await lines.next() else {
                    enrichment.markInputFinished()
                    return nil
                }
                if let admitted = try await enrichment.admit(line, file: file) { return admitted }
            }
            return nil
        }
    }
}
