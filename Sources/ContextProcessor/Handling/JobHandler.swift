public import CoreMetrics
public import Logging
import Mio
import MioTokens
public import Tracing

/// Runs one job against Mio: token for the user, `getContext` or `getContextSummary`, refresh and retry on
/// 401, backoff and retry on retriable failures, and a classified ``JobResult`` in every case.
///
/// - A 401 (`MioError.code == .unauthorized`): one coordinated refresh (`refreshAfterUnauthorized`) and one
///   immediate retry with the new token; a second 401 ends as `reauth_required`.
/// - 429, 5xx, timeouts, transport failures and retriable token errors: exponential backoff with full jitter,
///   never sooner than `Retry-After`, within ``RetryPolicy``; then `rate_limited` (last failure a 429) or
///   `upstream_unavailable`.
/// - Other 4xx: no retry, `rejected`. `TokenError.noTokens`: `no_tokens`. `TokenError.reauthRequired`:
///   `reauth_required`.
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
    private let clock: ProcessorClock
    private let random: @Sendable () -> Double
    private let logger: Logger
    private let metrics: HandlerMetrics
    private let tracer: JobTracer

    /// Creates a handler.
    /// - Parameters:
    ///   - api: Mio (a `MioClient`).
    ///   - tokens: Users' tokens (a `TokenProvider`).
    ///   - configuration: Retry settings.
    ///   - rateLimiter: An optional global cap on Mio requests; every attempt takes one permit.
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
        clock: ProcessorClock = .continuous,
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
        self.clock = clock
        self.random = random
        self.logger = logger
    }

    /// The time source the handler uses.
    public var processorClock: ProcessorClock { clock }

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

        while true {
            try Task.checkCancellation()
            attempts += 1
            let step: Step
            do {
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
                    return finish(.ok, payload: payload)
                } catch let error as MioError where error.code == .unauthorized {
                    try Task.checkCancellation()
                    if refreshedAfterUnauthorized {
                        return finish(
                            .reauthRequired,
                            failure: JobResult.Failure(
                                code: "unauthorized",
                                message: "\(Self.describe(error)) again after the token was refreshed: "
                                    + "the user must reconnect"
                            )
                        )
                    }
                    logger.debug("Mio answered 401; refreshing the token once", metadata: ["user": "\(job.userID)"])
                    // A refresh that fails transiently is retried like any retriable failure; only a refresh that
                    // succeeded uses up the single retry after a 401.
                    freshToken = try await tracer.withSpan(JobSpan.tokenRefresh) { _ in
                        try await tokens.refreshAfterUnauthorized(userID: job.userID, rejected: accessToken)
                    }
                    refreshedAfterUnauthorized = true
                    metrics.retried(.unauthorized)
                    continue
                }
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                step = Self.classify(error)
            }

            switch step {
            case .finish(let status, let failure):
                logger.debug("job failed", metadata: ["status": "\(status.rawValue)", "code": "\(failure.code)"])
                return finish(status, failure: failure)
            case .retry(let status, let failure, let retryAfter, let cause):
                if attempts >= policy.maxAttempts {
                    return finish(status, failure: Self.gaveUp(failure, attempts: attempts, timeUsedUp: false))
                }
                let delay = policy.delay(afterAttempt: attempts, retryAfter: retryAfter, random: random())
                if clock.now() - start + delay > policy.maxTimePerJob {
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

    private func call(_ job: Job, accessToken: String) async throws -> JobResult.Payload {
        switch job.operation {
        case .context:
            .context(try await api.getContext(query: job.query ?? "", accessToken: accessToken))
        case .summary:
            .summary(try await api.getContextSummary(accessToken: accessToken))
        }
    }

    // MARK: - Classification

    private enum Step {
        case finish(JobResult.Status, JobResult.Failure)
        case retry(JobResult.Status, JobResult.Failure, retryAfter: Duration?, cause: HandlerMetrics.Cause)
    }

    @inline(never)
    private static func classify(_ error: any Error) -> Step {
        switch error {
        case let error as MioError:
            return classify(error, context: nil)
        case let error as TokenError:
            return classify(error)
        default:
            return .retry(
                .upstreamUnavailable,
                JobResult.Failure(code: "transport_failure", message: "the call to Mio failed (\(type(of: error)))"),
                retryAfter: nil,
                cause: .transport
            )
        }
    }

    @inline(never)
    private static func classify(_ error: MioError, context: String?) -> Step {
        let message = context.map { "\($0): \(describe(error))" } ?? describe(error)
        let failure = JobResult.Failure(code: error.code.description, message: message)
        if error.isRetriable {
            let status: JobResult.Status = error.code == .rateLimited ? .rateLimited : .upstreamUnavailable
            return .retry(status, failure, retryAfter: error.retryAfter, cause: retryCause(error))
        }
        switch error.code {
        case .cancelled:
            return .retry(.upstreamUnavailable, failure, retryAfter: nil, cause: .transport)
        case .malformedResponse:
            return .finish(.upstreamUnavailable, failure)
        case .invalidGrant:
            return .finish(.reauthRequired, failure)
        case .unauthorized:
            return .finish(.reauthRequired, failure)
        default:
            return .finish(.rejected, failure)
        }
    }

    @inline(never)
    private static func classify(_ error: TokenError) -> Step {
        switch error.code {
        case .noTokens:
            return .finish(
                .noTokens,
                JobResult.Failure(code: "no_tokens", message: "no tokens are stored for the user: connect the user first")
            )
        case .reauthRequired:
            return .finish(
                .reauthRequired,
                JobResult.Failure(
                    code: "reauth_required",
                    message: "the user's refresh token is revoked or expired: the user must reconnect"
                )
            )
        default:
            let what = "getting the user's access token failed (\(error.code))"
            if let mioError = error.underlying as? MioError {
                return classify(mioError, context: what)
            }
            let failure = JobResult.Failure(code: error.code.description, message: what)
            return error.isRetriable
                ? .retry(.upstreamUnavailable, failure, retryAfter: nil, cause: .tokenStore)
                : .finish(.upstreamUnavailable, failure)
        }
    }

    private static func retryCause(_ error: MioError) -> HandlerMetrics.Cause {
        switch error.code {
        case .rateLimited: .rateLimited
        case .serverError: .serverError
        case .timeout: .timeout
        default: .transport
        }
    }

    /// `Mio answered 503 to GET /v1/context/summary` or `POST /v1/context: timeout`; never a token.
    @inline(never)
    private static func describe(_ error: MioError) -> String {
        guard let status = error.status else { return "\(error.endpoint): \(error.code)" }
        var text = "Mio answered \(status) to \(error.endpoint)"
        if let oauthError = error.oauthError {
            text += " (\(oauthError))"
        } else if let wwwAuthenticateError = error.wwwAuthenticateError {
            text += " (\(wwwAuthenticateError))"
        }
        return text
    }

    @inline(never)
    private static func gaveUp(_ failure: JobResult.Failure, attempts: Int, timeUsedUp: Bool) -> JobResult.Failure {
        let why = timeUsedUp ? "after \(attempts) attempts (time per job used up)" : "after \(attempts) attempts"
        return JobResult.Failure(code: failure.code, message: "\(failure.message); gave up \(why)")
    }
}

extension Logger {
    /// This logger with the job's id and source (`job.topic`, `job.partition`, `job.offset`) as metadata.
    func forJob(_ job: Job) -> Logger {
        self.adding(job.source, jobID: job.id)
    }

    /// This logger with an item's source as metadata (for items that are not valid jobs).
    func forItem(_ source: JobSource) -> Logger {
        self.adding(source, jobID: nil)
    }

    /// Adds the entries in one assignment: made for every job, where setting them one by one copied and grew
    /// the handler's metadata four times.
    private func adding(_ source: JobSource?, jobID: String?) -> Logger {
        var metadata = self.handler.metadata
        metadata.reserveCapacity(metadata.count + 4)
        if let source {
            metadata["job.topic"] = .string(source.partition.topic)
            metadata["job.partition"] = .string(String(source.partition.partition))
            metadata["job.offset"] = .string(String(source.offset))
        }
        if let jobID {
            metadata["job.id"] = .string(jobID)
        }
        var logger = self
        logger.handler.metadata = metadata
        return logger
    }
}
