public import Coordination
public import CoreMetrics
public import Logging
public import Tracing

/// Runs one job against Mio: token for the user, `getContext` or `getContextSummary`, refresh and retry on
/// 401, backoff and retry on retriable failures, and a classified ``JobResult`` in every case.
///
/// Failures are acted on by their ``JobFailure`` classification (any other error is a retried transport failure):
/// - ``JobFailure/Action/refreshAndRetryOnce`` from Mio (a 401): one coordinated refresh
///   (`refreshAfterUnauthorized`) and one immediate retry with the new token; a second 401 ends as
///   `reauth_required`.
/// - ``JobFailure/Action/retry(after:cause:)`` (429, 5xx, timeouts, transport failures, retriable token errors):
///   exponential backoff with full jitter, never sooner than `Retry-After`, within ``RetryPolicy``; then the
///   failure's status (`rate_limited` when the last failure was a 429, else `upstream_unavailable`).
/// - ``JobFailure/Action/finish`` (other 4xx, no tokens, refresh token revoked): no retry, the failure's status.
///
/// Result messages are built from codes, statuses and endpoints only: they never contain a token.
public struct JobHandler: Sendable {
    /// Settings of the handler.
    public struct Configuration: Sendable, Hashable {
        /// Retries of retriable failures.
        public var retry: RetryPolicy

        /// Creates a configuration.
        /// - Parameter retry: Retries of retriable failures.
        public init(retry: RetryPolicy = RetryPolicy()) {
            self.retry = retry
        }
    }

    private let api: any ContextAPI
    private let tokens: any TokenSource
    private let configuration: Configuration
    private let rateLimiter: RateLimiter?
    /// Mio's health across jobs: breaker, adaptive limit, `Retry-After` pauses, a stopped line.
    public let health: MioHealth?
    private let clock: TimeSource
    private let random: @Sendable () -> Double
    private let logger: Logger
    private let metrics: HandlerMetrics
    private let tracer: JobTracer

    /// Creates a handler.
    /// - Parameters:
    ///   - api: Mio (a `MioClient` behind `PipelineMioBridge`'s `MioContextAPI`).
    ///   - tokens: Users' tokens (a `TokenProvider` behind `PipelineMioBridge`'s `MioTokenSource`).
    ///   - configuration: Retry settings.
    ///   - rateLimiter: An optional global cap on Mio requests; every attempt takes one permit.
    ///   - health: Mio's health shared by all jobs (breaker, adaptive concurrency, `Retry-After` pauses, a stopped
    ///     line); every attempt is admitted by it and reports to it. Without one, each job fends for itself.
    ///   - clock: Time source for backoff, durations and `completedAt`.
    ///   - random: Uniform random numbers in `[0, 1)` for the jitter.
    ///   - logger: Logs retries at debug level and final failures at debug level (never tokens); every line
    ///     carries `job.id`, `job.topic`, `job.partition` and `job.offset`.
    ///   - metricsFactory: Receives `mioctx_retries_total{cause}` (default: the bootstrapped `MetricsSystem.factory`).
    ///   - tracer: Starts the job's child spans ``JobSpan/tokenLookup``, ``JobSpan/tokenRefresh`` and
    ///     ``JobSpan/mioCall`` (default: the bootstrapped `InstrumentationSystem.tracer`).
    public init(
        api: any ContextAPI,
        tokens: any TokenSource,
        configuration: Configuration = Configuration(),
        rateLimiter: RateLimiter? = nil,
        health: MioHealth? = nil,
        clock: TimeSource = .system,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0 ..< 1) },
        logger: Logger = Logger(label: "mioctx.processor"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer
    ) {
        self.metrics = HandlerMetrics(factory: metricsFactory)
        self.tracer = JobTracer(tracer)
        self.api = api
        self.tokens = tokens
        self.configuration = configuration
        self.rateLimiter = rateLimiter
        self.health = health
        self.clock = clock
        self.random = random
        self.logger = logger
    }

    /// The time source the handler uses.
    public var timeSource: TimeSource { clock }

    /// Processes a job to its result.
    /// - Parameters:
    ///   - job: A validated job.
    ///   - jobLogger: The logger for this job's lines, which are all at debug level: with the job's metadata
    ///     when debug lines are on (a caller that made one passes it, so that it is not made twice per job), or
    ///     any logger when they are off; by default this handler's logger with the job's id and source.
    /// - Returns: The classified result; failures are results, not errors.
    /// - Throws: `CancellationError` only, when the task is cancelled (no result: the job must be redone).
    public func handle(_ job: Job, logger jobLogger: Logger? = nil) async throws -> JobResult {
        let logger = jobLogger ?? self.logger.forJob(job)
        let start = clock.now()
        let policy = configuration.retry
        var attempts = 0
        var refreshedAfterUnauthorized = false
        var freshToken: String?

        @inline(never)
        func finish(_ status: JobResult.Status, payload: JobResult.Payload? = nil, failure: JobResult.Failure? = nil)
            -> JobResult
        {
            JobResult(
                jobID: job.id,
                userID: job.userID,
                operation: job.operation,
                status: status,
                payload: payload,
                failure: failure,
                attempts: attempts,
                duration: clock.now() - start,
                completedAt: clock.wallNow(),
                metadata: job.metadata
            )
        }

        /// Attempts that do not count against `policy.maxAttempts`: those made while Mio was down for everyone or
        /// the line stopped, and 429s when `policy.maxTimeRateLimited` bounds them by time.
        var uncounted = 0
        /// Time spent waiting for Mio's health (breaker open, line stopped): it does not count against
        /// `policy.maxTimePerJob`.
        var waitedForMio = Duration.zero
        var ticket: MioHealth.Ticket?

        func settle(_ outcome: MioHealth.Outcome) -> MioHealth.Verdict {
            guard let health, let admitted = ticket else { return .counts }
            ticket = nil
            return health.record(admitted, outcome)
        }

        while true {
            let classified: JobFailure
            do {
                try Task.checkCancellation()
                if let health {
                    let admitted = try await health.admit()
                    waitedForMio += admitted.waited
                    ticket = admitted
                }
                attempts += 1
                let accessToken: String
                if let token = freshToken {
                    accessToken = token
                    freshToken = nil
                } else {
                    accessToken = try await tracer.withSpan(JobSpan.tokenLookup) { _ in
                        try await tokens.accessToken(for: job.userID)
                    }
                }
                do {
                    if let rateLimiter { try await rateLimiter.acquire() }
                    let payload = try await tracer.withSpan(JobSpan.mioCall) { span in
                        if span.isRecording {
                            span.attributes["mioctx.mio.operation"] = job.operation.rawValue
                            span.attributes["mioctx.attempt"] = attempts
                        }
                        return try await call(job, accessToken: accessToken)
                    }
                    _ = settle(.answered)
                    return finish(.ok, payload: payload)
                } catch let failure as JobFailure where failure.action == .refreshAndRetryOnce {
                    try Task.checkCancellation()
                    if refreshedAfterUnauthorized {
                        _ = settle(.answered)
                        return finish(
                            failure.status,
                            failure: JobResult.Failure(
                                code: failure.code,
                                message: "\(failure.message) again after the token was refreshed: the user must reconnect"
                            )
                        )
                    }
                    logger.debug("Mio answered 401; refreshing the token once", metadata: ["user": "\(job.userID)"])
                    // A refresh that fails transiently is retried like any retriable failure; only a refresh that
                    // succeeded uses up the single retry after a 401.
                    freshToken = try await tracer.withSpan(JobSpan.tokenRefresh) { _ in
                        try await tokens.refreshAfterUnauthorized(userID: job.userID, rejected: accessToken)
                    }
                    _ = settle(.answered)
                    refreshedAfterUnauthorized = true
                    metrics.retried(.unauthorized)
                    continue
                }
            } catch {
                if error is CancellationError || Task.isCancelled {
                    if let admitted = ticket { health?.abandon(admitted) }
                    throw CancellationError()
                }
                classified = JobFailure.classifying(error)
            }

            let verdict = settle(Self.outcome(of: classified))
            let status = classified.status
            let failure = JobResult.Failure(code: classified.code, message: classified.message)
            switch classified.action {
            case .finish, .refreshAndRetryOnce:
                logger.debug("job failed", metadata: ["status": "\(status.rawValue)", "code": "\(failure.code)"])
                return finish(status, failure: failure)
            case .stopTheLine:
                // With a health the job waits in `admit()` until the line runs again; without, it ends.
                guard health != nil else {
                    logger.debug("job failed", metadata: ["status": "\(status.rawValue)", "code": "\(failure.code)"])
                    return finish(status, failure: failure)
                }
                uncounted += 1
                continue
            case .retry(let retryAfter, let cause):
                if verdict == .waitForMio {
                    // Mio is down for everyone: the attempt is not the job's to pay for; `admit()` holds the job
                    // until a probe finds Mio answering.
                    uncounted += 1
                    metrics.retried(cause)
                    continue
                }
                let timeBoundRateLimit = cause == .rateLimited ? policy.maxTimeRateLimited : nil
                if let window = timeBoundRateLimit {
                    uncounted += 1
                    // A 429 is Mio asking to slow down, which the health's limit does: only a job that keeps
                    // getting them for a long time ends `rate_limited`.
                    if clock.now() - start >= window {
                        return finish(status, failure: Self.gaveUp(failure, attempts: attempts, timeUsedUp: true))
                    }
                    if health != nil, retryAfter != nil {
                        // The whole worker pauses until `Retry-After`; `admit()` holds this job as long.
                        metrics.retried(cause)
                        continue
                    }
                } else if attempts - uncounted >= policy.maxAttempts {
                    return finish(status, failure: Self.gaveUp(failure, attempts: attempts, timeUsedUp: false))
                }
                let retries = timeBoundRateLimit == nil ? attempts - uncounted : attempts
                let delay = policy.delay(afterAttempt: max(1, retries), retryAfter: retryAfter, random: random())
                if timeBoundRateLimit == nil, clock.now() - start - waitedForMio + delay > policy.maxTimePerJob {
                    return finish(status, failure: Self.gaveUp(failure, attempts: attempts, timeUsedUp: true))
                }
                logger.debug(
                    "retrying job",
                    metadata: ["code": "\(failure.code)", "attempt": "\(attempts)", "delay": "\(delay)"]
                )
                metrics.retried(cause)
                try await clock.sleep(for: delay)
            }
        }
    }

    /// What a failed attempt says about Mio's health.
    static func outcome(of failure: JobFailure) -> MioHealth.Outcome {
        switch failure.action {
        case .finish, .refreshAndRetryOnce:
            .answered
        case .stopTheLine(let reason):
            .operatorFault(code: failure.code, reason: reason)
        case .retry(let retryAfter, let cause):
            switch cause {
            case .rateLimited: .rateLimited(retryAfter: retryAfter)
            case .serverError, .transport: .unavailable
            case .timeout: .timedOut
            case .unauthorized: .answered
            case .tokenStore: .unrelated
            }
        }
    }

    private func call(_ job: Job, accessToken: String) async throws -> JobResult.Payload {
        switch job.operation {
        case .context:
            .context(try await api.getContext(query: job.query ?? "", accessToken: accessToken))
        case .summary:
            .summary(try await api.getContextSummary(accessToken: accessToken))
        }
    }

    @inline(never)
    private static func gaveUp(_ failure: JobResult.Failure, attempts: Int, timeUsedUp: Bool) -> JobResult.Failure {
        let why = timeUsedUp ? "after \(attempts) attempts (time per job used up)" : "after \(attempts) attempts"
        return JobResult.Failure(code: failure.code, message: "\(failure.message); gave up \(why)")
    }
}
