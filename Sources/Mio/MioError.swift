import Coordination

/// An error from the Mio API, keeping everything the server said that is safe to keep.
///
/// Unlike the official SDK, which replaces the server's answer with "Token exchange failed", a `MioError` keeps
/// the HTTP status, the OAuth `error` and `error_description`, the `error` of a 401's `WWW-Authenticate` header and
/// the `Retry-After` delay, so a caller can tell an `invalid_grant` from a rate limit from a network failure.
///
/// No access token, refresh token, authorization code or client secret is ever part of an error: the client
/// never puts them in, and it scrubs them out of any text the server sends back.
public struct MioError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Compare with the static members (`error.code == .invalidGrant`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String, Hashable, Sendable {
            case invalidGrant = "invalid_grant"
            case invalidRequest = "invalid_request"
            case invalidClient = "invalid_client"
            case unauthorized
            case forbidden
            case rateLimited = "rate_limited"
            case serverError = "server_error"
            case timeout
            case transportFailure = "transport_failure"
            case malformedResponse = "malformed_response"
            case clientError = "client_error"
            case cancelled
        }

        private let backing: Backing

        private init(_ backing: Backing) {
            self.backing = backing
        }

        /// OAuth `invalid_grant`: the code or refresh token is invalid, expired, revoked or already used, or the
        /// redirect URL does not match. The user must reconnect; retrying cannot help.
        public static let invalidGrant = Code(.invalidGrant)
        /// OAuth `invalid_request`: a required parameter (such as `code`) is missing or malformed.
        public static let invalidRequest = Code(.invalidRequest)
        /// OAuth `invalid_client`: the client id or secret is wrong.
        public static let invalidClient = Code(.invalidClient)
        /// HTTP 401 on an API call: the access token is expired, revoked or malformed. Refresh and retry once.
        public static let unauthorized = Code(.unauthorized)
        /// HTTP 403: the token is valid but not allowed to do this.
        public static let forbidden = Code(.forbidden)
        /// HTTP 429: too many requests. See `retryAfter`.
        public static let rateLimited = Code(.rateLimited)
        /// HTTP 5xx. See `retryAfter` for a 503.
        public static let serverError = Code(.serverError)
        /// No complete answer within the request timeout.
        public static let timeout = Code(.timeout)
        /// The connection could not be made or broke (refused, reset, DNS, TLS).
        public static let transportFailure = Code(.transportFailure)
        /// A 2xx answer whose body is not what the protocol says, or an unexpected non-error status.
        public static let malformedResponse = Code(.malformedResponse)
        /// Any other 4xx (including OAuth errors other than the three above, such as `unsupported_grant_type`).
        public static let clientError = Code(.clientError)
        /// The calling task was cancelled before an answer arrived.
        public static let cancelled = Code(.cancelled)

        /// A short, stable name, usable as a metric label: `invalid_grant`, `rate_limited`, ...
        public var description: String { self.backing.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The HTTP status, or nil when no response arrived (timeout, transport failure, cancellation).
    public var status: Int?
    /// The `error` field of an OAuth error body (RFC 6749 section 5.2), such as `invalid_grant`.
    public var oauthError: String?
    /// The `error_description` field of an OAuth error body, with any secret the client sent scrubbed out.
    public var oauthErrorDescription: String?
    /// The `error` parameter of the `WWW-Authenticate` header of a 401, such as `invalid_token`.
    public var wwwAuthenticateError: String?
    /// How long the server asked us to wait (`Retry-After`, in seconds or as an HTTP-date), on 429 and 503.
    public var retryAfter: Duration?
    /// The call that failed, such as `POST /v1/context`.
    public var endpoint: String
    /// A short explanation from the client (never containing a secret), such as the transport error or the
    /// reason a body was rejected.
    public var detail: String?

    /// Whether the same request may succeed if retried later: rate limits, server errors, timeouts and
    /// transport failures (and HTTP 408). OAuth errors, 401 and other 4xx are not retriable as such.
    public var isRetriable: Bool {
        switch self.code {
        case .rateLimited, .serverError, .timeout, .transportFailure:
            return true
        case .clientError:
            return self.status == 408
        default:
            return false
        }
    }

    /// Creates an error.
    public init(
        code: Code,
        endpoint: String,
        status: Int? = nil,
        oauthError: String? = nil,
        oauthErrorDescription: String? = nil,
        wwwAuthenticateError: String? = nil,
        retryAfter: Duration? = nil,
        detail: String? = nil
    ) {
        self.code = code
        self.endpoint = endpoint
        self.status = status
        self.oauthError = oauthError
        self.oauthErrorDescription = oauthErrorDescription
        self.wwwAuthenticateError = wwwAuthenticateError
        self.retryAfter = retryAfter
        self.detail = detail
    }

    /// For example: `MioError(invalid_grant, POST /v1/auth/oauth2/token, status 400, error "invalid_grant",
    /// description "refresh token already used", not retriable)`.
    public var description: String {
        var parts = [self.code.description, self.endpoint]
        if let status = self.status { parts.append("status \(status)") }
        if let oauthError = self.oauthError { parts.append("error \"\(oauthError)\"") }
        if let text = self.oauthErrorDescription { parts.append("description \"\(text)\"") }
        if let wwwAuthenticateError = self.wwwAuthenticateError {
            parts.append("WWW-Authenticate error \"\(wwwAuthenticateError)\"")
        }
        if let retryAfter = self.retryAfter {
            parts.append("retry after \(retryAfter.timeInterval)s")
        }
        if let detail = self.detail { parts.append(detail) }
        parts.append(self.isRetriable ? "retriable" : "not retriable")
        return "MioError(\(parts.joined(separator: ", ")))"
    }
}
