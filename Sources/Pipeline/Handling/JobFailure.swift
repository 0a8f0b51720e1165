/// What a failure means for a job: the pipeline's own classification of what went wrong on the way to a result.
///
/// The ``ContextAPI`` and the ``TokenSource`` express their failures in it (the Mio client's and the token store's
/// errors are mapped where they are wired, in `PipelineMioBridge`); the ``JobHandler`` acts on it: it retries,
/// refreshes, or ends the job with ``status``, ``code`` and ``message``. Any other error is a transport failure,
/// retried. Messages are built from codes, statuses and endpoints: they never contain a token.
public struct JobFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// What the handler does about a failure.
    public enum Action: Sendable, Hashable {
        /// Retry after a backoff with full jitter, never sooner than `after` (the server's `Retry-After`), within
        /// the ``RetryPolicy``; when the attempts or the time per job run out, the job ends with the status.
        case retry(after: Duration?, cause: RetryCause)
        /// Mio refused the access token: refresh it once and retry once. Refused again, or raised while getting a
        /// token, the job ends with the status.
        case refreshAndRetryOnce
        /// The job ends with the status.
        case finish
        /// The deployment is at fault, not the job (a wrong client secret, a missing encryption key): with a
        /// ``MioHealth`` the worker stops taking jobs and this job waits, uncommitted, until the fault is fixed;
        /// without one the job ends with the status. `reason` tells the operator what to fix; never a secret.
        case stopTheLine(reason: String)
    }

    /// What the handler does.
    public var action: Action
    /// The job's status when this failure ends it.
    public var status: JobResult.Status
    /// The result's `error.code`, e.g. `rate_limited`, `server_error`, `no_tokens`.
    public var code: String
    /// The result's `error.message`; must not contain a token.
    public var message: String

    /// Creates a failure.
    /// - Parameters:
    ///   - action: What the handler does.
    ///   - status: The job's status when this failure ends it.
    ///   - code: The result's `error.code`.
    ///   - message: The result's `error.message`; must not contain a token.
    public init(_ action: Action, status: JobResult.Status, code: String, message: String) {
        self.action = action
        self.status = status
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    /// The failure of an error that is not a ``JobFailure``: a transport failure, retried.
    /// - Parameter error: What the call threw.
    /// - Returns: `error` itself when it is a ``JobFailure``, or else a retried `transport_failure`.
    public static func classifying(_ error: any Error) -> JobFailure {
        if let failure = error as? JobFailure { return failure }
        return JobFailure(
            .retry(after: nil, cause: .transport),
            status: .upstreamUnavailable,
            code: "transport_failure",
            message: "the call to Mio failed (\(type(of: error)))"
        )
    }
}

/// Why an attempt is repeated: the `cause` of `mioctx_retries_total`.
public enum RetryCause: String, Sendable, Hashable, CaseIterable {
    /// Mio answered 429.
    case rateLimited = "rate_limited"
    /// Mio answered 5xx.
    case serverError = "server_error"
    /// The call timed out.
    case timeout
    /// A connection failure, or another error.
    case transport
    /// A 401 answered by one refresh and one retry.
    case unauthorized
    /// A retriable token store or lock failure.
    case tokenStore = "token_store"
}
