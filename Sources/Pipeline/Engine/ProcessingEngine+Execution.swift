import Coordination
import Logging
import Synchronization
import Tracing

extension ProcessingEngine {
    // MARK: - One item

    enum DeliveryOutcome {
        case delivered
        case failed(DeliveryError)
        /// The sink refused the message for what it is (``DeliveryFailure/Kind/refused``): not retried.
        case refused(DeliveryFailure, attempts: Int)
        case cancelled
    }

    func execute(_ entry: Scheduler.Entry) async {
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
                guard let handled = await handle(job, logger: logger) else {
                    return (.cancelled, false)
                }
                let result = fitted(handled, logger: detailed ? logger : self.logger.forJob(job))
                if span.isRecording { span.attributes["mioctx.job.status"] = result.status.rawValue }
                release(entry)
                let delivery = await tracer.withSpan(JobSpan.publish, ofKind: .producer) { publishSpan in
                    await deliver(.result, source: source, logger: detailed ? logger : self.logger.forJob(job), span: publishSpan) {
                        try await self.sink.publish(result, for: item)
                    }
                }
                switch delivery {
                case .delivered:
                    metrics.completed(result.status, after: clock.now() - submittedAt)
                    logger.debug("job done", metadata: ["status": "\(result.status.rawValue)", "attempts": "\(result.attempts)"])
                    return (delivery, true)
                case .refused(let refusal, _):
                    return (await deadLetterRefused(item, refusal: refusal, logger: detailed ? logger : self.logger.forJob(job)), true)
                case .failed, .cancelled:
                    return (delivery, true)
                }
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
        case .refused(let refusal, let attempts):
            // Only a dead-letter copy ends here refused (a refused result was dead-lettered above): nowhere is left.
            let error = DeliveryError(kind: .deadLetter, source: source, attempts: attempts, underlying: refusal)
            let lineLogger = detailed ? logger : jobOfLines.map { self.logger.forJob($0) } ?? logger
            lineLogger.error("could not deliver; the item is not done", metadata: ["error": "\(error)"])
            onEvent(.deliveryFailed(source, error))
        case .failed(let error):
            let lineLogger = detailed ? logger : jobOfLines.map { self.logger.forJob($0) } ?? logger
            lineLogger.error("could not deliver; the item is not done", metadata: ["error": "\(error)"])
            onEvent(.deliveryFailed(source, error))
        case .cancelled:
            onEvent(.cancelled(source))
        }
        let outcome = state.withLock { state, waiters in
            Self.outcome(
                of: state.scheduler.complete(entry, handled: handled),
                in: &state,
                waiters: &waiters,
                touching: source.partition
            )
        }
        perform(outcome)
    }

    /// Runs the handler; `nil` when the job was cancelled.
    ///
    /// Not inlined, like ``deliver(_:source:logger:span:_:)``: a task keeps the memory of its deepest stack of
    /// async frames until it ends, so handling and delivery, which run one after the other, must not share one
    /// frame (with 1,024 jobs in flight, that saves megabytes).
    @inline(never)
    func handle(_ job: Job, logger: Logger) async -> JobResult? {
        try? await handler.handle(job, logger: logger)
    }

    /// The result to publish: `result`, or a small ``JobResult/Status/tooLarge`` one when it is over
    /// ``Configuration/maxResultBytes`` (said in a warning with the sizes, never the content).
    func fitted(_ result: JobResult, logger: Logger) -> JobResult {
        guard let limit = configuration.maxResultBytes else { return result }
        let (fitted, oversize) = result.fitting(within: limit)
        if let oversize {
            logger.warning(
                "result too large; publishing a too_large result without Mio's answer",
                metadata: ["result.bytes": "\(oversize)", "result.limit": "\(limit)"]
            )
        }
        return fitted
    }

    /// Sends the job of a result the sink refused (``DeliveryFailure/Kind/refused``) to the dead-letter
    /// destination with the reason, so that its partition goes on.
    func deadLetterRefused(_ item: InputItem, refusal: DeliveryFailure, logger: Logger) async -> DeliveryOutcome {
        let reason = InvalidJob(
            code: .resultRefused,
            message: "the result was refused (\(refusal.code)): \(refusal.description)"
        )
        logger.warning(
            "the result was refused; sending the job to the dead-letter destination",
            metadata: ["reason": "\(refusal.code)", "error": "\(refusal.description)"]
        )
        let delivery = await tracer.withSpan(JobSpan.deadLetter, ofKind: .producer) { span in
            if span.isRecording { span.attributes["mioctx.dead_letter.reason"] = reason.code.description }
            return await deliver(.deadLetter, source: item.source, logger: logger, span: span) {
                try await self.sink.deadLetter(item, reason: reason)
            }
        }
        if case .delivered = delivery {
            metrics.deadLettered(reason.code)
        }
        return delivery
    }

    /// The job's work is done: its slot goes to the next job while its result is delivered.
    func release(_ entry: Scheduler.Entry) {
        let outcome = state.withLock { state, waiters in
            Self.outcome(
                of: state.scheduler.handled(entry),
                in: &state,
                waiters: &waiters,
                touching: entry.payload.item.source.partition
            )
        }
        perform(outcome)
    }

    /// Names the job's message on its span; nothing when the span records nothing (building attributes costs).
    static func describe(_ source: JobSource, jobID: String?, on span: any Span) {
        guard span.isRecording else { return }
        if let jobID { span.attributes["mioctx.job.id"] = jobID }
        span.attributes["messaging.destination.name"] = source.partition.topic
        span.attributes["messaging.destination.partition.id"] = "\(source.partition.partition)"
        span.attributes["messaging.kafka.offset"] = source.offset
    }

    @inline(never)
    func deliver(
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
                let now = clock.now()
                lastDelivery.withLock { $0 = now }
                return .delivered
            } catch {
                if error is CancellationError || Task.isCancelled { return .cancelled }
                span.recordError(error)
                let delay = policy.delay(afterAttempt: min(attempts, 30), retryAfter: nil, random: random())
                switch (error as? DeliveryFailure)?.kind {
                case .refused?:
                    return .refused(error as! DeliveryFailure, attempts: attempts)
                case .fatal?:
                    return .failed(DeliveryError(kind: kind, source: source, attempts: attempts, underlying: error))
                case .unavailable?:
                    // Retried for as long as the destination is not gone: some delivery, this one's or another's,
                    // succeeded within the outage limit (measured from this item's first attempt at the earliest).
                    let now = clock.now()
                    let since = max(start, lastDelivery.withLock { $0 } ?? start)
                    if now - since + delay > configuration.maxOutage {
                        return .failed(DeliveryError(
                            kind: kind, source: source, attempts: attempts, underlying: error, outage: now - since
                        ))
                    }
                case nil:
                    if attempts >= policy.maxAttempts || clock.now() - start + delay > policy.maxTimePerJob {
                        return .failed(DeliveryError(kind: kind, source: source, attempts: attempts, underlying: error))
                    }
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
}
