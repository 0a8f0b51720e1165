public import Mio
public import MioTokens
public import Pipeline

/// Mio's and the token store's errors in the pipeline's classification (`JobFailure`): what each means for a job
/// is decided here, where both sides are known, so that the pipeline imports neither `Mio` nor `MioTokens`.
public enum MioFailures {
    /// `error` as a `JobFailure` when it is a `MioError` or a `TokenError`; any other error unchanged (the handler
    /// retries it as a transport failure, and a `CancellationError` stays a cancellation).
    /// - Parameter error: What Mio or the token store threw.
    /// - Returns: The classified error.
    public static func classified(_ error: any Error) -> any Error {
        switch error {
        case let error as MioError: JobFailure(error)
        case let error as TokenError: JobFailure(error)
        default: error
        }
    }
}

extension JobFailure {
    /// What an error of a call to Mio means for a job.
    ///
    /// - 401: refresh the token once and retry once, else `reauth_required`.
    /// - 429, 5xx, timeouts, transport failures (retriable): retry, honouring `Retry-After`; then `rate_limited`
    ///   for a 429, else `upstream_unavailable`.
    /// - A cancelled call: retried as a transport failure. A malformed answer: `upstream_unavailable`.
    ///   `invalid_grant`: `reauth_required`. `invalid_client` (a wrong client secret): stop the line, else
    ///   `rejected`. Other 4xx: `rejected`.
    /// - Parameter error: The error of a call to Mio.
    public init(_ error: MioError) {
        self = Self.classify(error, context: nil)
    }

    /// What a token provider's error means for a job.
    ///
    /// - No tokens for the user: `no_tokens`. Refresh token revoked or expired: `reauth_required`.
    /// - A refresh that Mio failed: classified as that Mio error (a 401 there ends the job), the message saying
    ///   that getting the token failed.
    /// - A missing encryption key id or a ciphertext that does not decrypt: the deployment's fault; stop the line.
    /// - Other retriable failures (a lock timeout, the store): retried, then `upstream_unavailable`; the others end
    ///   as `upstream_unavailable`.
    /// - Parameter error: The error of the token provider.
    public init(_ error: TokenError) {
        switch error.code {
        case .noTokens:
            self.init(
                .finish,
                status: .noTokens,
                code: "no_tokens",
                message: "no tokens are stored for the user: connect the user first"
            )
        case .reauthRequired:
            self.init(
                .finish,
                status: .reauthRequired,
                code: "reauth_required",
                message: "the user's refresh token is revoked or expired: the user must reconnect"
            )
        case .keyConfiguration, .decryptionFailed:
            let what = "getting the user's access token failed (\(error.code))"
            let detail = error.detail.map { ": \($0)" } ?? ""
            self.init(
                .stopTheLine(
                    reason: error.code == .keyConfiguration
                        ? "a stored token names an encryption key that is not configured\(detail); "
                            + "configure its key id in MIOCTX_TOKEN_KEYS or the key file"
                        : "stored tokens do not decrypt with the configured keys\(detail); "
                            + "configure the key they were encrypted with in MIOCTX_TOKEN_KEYS or the key file"
                ),
                status: .upstreamUnavailable,
                code: error.code.description,
                message: what
            )
        case .refreshAnswerLost:
            self.init(
                .finish,
                status: .reauthRequired,
                code: "refresh_answer_lost",
                message: "Mio refused the refresh token after a refresh whose answer was lost: the user must reconnect"
            )
        default:
            let what = "getting the user's access token failed (\(error.code))"
            if let mioError = error.underlying as? MioError {
                self = Self.classify(mioError, context: what)
                return
            }
            self.init(
                error.isRetriable ? .retry(after: nil, cause: .tokenStore) : .finish,
                status: .upstreamUnavailable,
                code: error.code.description,
                message: what
            )
        }
    }

    private static func classify(_ error: MioError, context: String?) -> JobFailure {
        let message = context.map { "\($0): \(describe(error))" } ?? describe(error)
        let code = error.code.description
        // A 401 answered to a call asks for one refresh; the same error behind a token refresh ends the job.
        if error.code == .unauthorized, context == nil {
            return JobFailure(.refreshAndRetryOnce, status: .reauthRequired, code: code, message: message)
        }
        if error.code == .invalidClient {
            return JobFailure(
                .stopTheLine(
                    reason: "Mio refused the client credentials (invalid_client) on \(error.endpoint); "
                        + "set the right MIO_CLIENT_ID and MIO_CLIENT_SECRET"
                ),
                status: .rejected,
                code: code,
                message: message
            )
        }
        if error.isRetriable {
            let status: JobResult.Status = error.code == .rateLimited ? .rateLimited : .upstreamUnavailable
            return JobFailure(
                .retry(after: error.retryAfter, cause: retryCause(error)),
                status: status,
                code: code,
                message: message
            )
        }
        switch error.code {
        case .cancelled:
            return JobFailure(
                .retry(after: nil, cause: .transport),
                status: .upstreamUnavailable,
                code: code,
                message: message
            )
        case .malformedResponse:
            return JobFailure(.finish, status: .upstreamUnavailable, code: code, message: message)
        case .invalidGrant, .unauthorized:
            return JobFailure(.finish, status: .reauthRequired, code: code, message: message)
        default:
            return JobFailure(.finish, status: .rejected, code: code, message: message)
        }
    }

    private static func retryCause(_ error: MioError) -> RetryCause {
        switch error.code {
        case .rateLimited: .rateLimited
        case .serverError: .serverError
        case .timeout: .timeout
        default: .transport
        }
    }

    /// `Mio answered 503 to GET /v1/context/summary` or `POST /v1/context: timeout`; never a token.
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
}
