/// An error of the token layer: store, encryption or refresh.
///
/// Its description never contains a token: only the code, the user id, a short detail and the description of
/// the underlying error (a `MioError`, a database error), which never carries tokens either.
public struct TokenError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, usable as a metric label.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case noTokens = "no_tokens"
            case reauthRequired = "reauth_required"
            case refreshFailed = "refresh_failed"
            case storeFailure = "store_failure"
            case lockTimeout = "lock_timeout"
            case keyConfiguration = "key_configuration"
            case decryptionFailed = "decryption_failed"
            case invalidInput = "invalid_input"
            case shuttingDown = "shutting_down"
            case refreshAnswerLost = "refresh_answer_lost"
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The store has no record for the user.
        public static let noTokens = Code(.noTokens)
        /// The refresh token was revoked or expired (`invalid_grant`), or the user is marked so: the user must reconnect.
        public static let reauthRequired = Code(.reauthRequired)
        /// Mio failed for another reason than `invalid_grant` (see `underlying`, often a retriable `MioError`).
        public static let refreshFailed = Code(.refreshFailed)
        /// The token store failed (see `underlying`).
        public static let storeFailure = Code(.storeFailure)
        /// The per-user lock could not be taken in time (retriable).
        public static let lockTimeout = Code(.lockTimeout)
        /// No encryption key is configured, or a key is malformed, or a row names a key that is not configured.
        public static let keyConfiguration = Code(.keyConfiguration)
        /// A stored ciphertext does not decrypt: wrong key, tampered row, or a ciphertext moved to another user.
        public static let decryptionFailed = Code(.decryptionFailed)
        /// Input given to the token layer is malformed (a store URL, an import line, a token response).
        public static let invalidInput = Code(.invalidInput)
        /// The token provider is shutting down (``TokenProvider/finishRefreshes()`` was called): no refresh or
        /// store read starts any more (retriable: another replica, or the next start, serves the job).
        public static let shuttingDown = Code(.shuttingDown)

        /// Mio answered `invalid_grant` to a refresh token that an earlier refresh had already sent without an
        /// answer arriving (a timeout, a cut connection): that refresh most likely rotated the tokens and its answer
        /// was lost. The user is marked reauth_required and must reconnect, as for ``reauthRequired``; the distinct
        /// code tells the two apart in results, logs and metrics.
        public static let refreshAnswerLost = Code(.refreshAnswerLost)

        /// The snake_case name of the code, e.g. `reauth_required`.
        public var description: String { value.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// The user concerned; empty when the error is not about one user (key configuration, store startup).
    public var userID: String
    /// A short human explanation; never contains a token.
    public var detail: String?
    /// The cause, e.g. a `MioError` or a database error. Its description never carries tokens.
    public var underlying: (any Error & Sendable)?
    /// Whether trying again later may succeed.
    public var isRetriable: Bool

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - userID: The user concerned, or empty.
    ///   - detail: A short explanation without secrets.
    ///   - underlying: The cause.
    ///   - isRetriable: Whether trying again later may succeed; defaults to true for lock timeouts and store failures.
    public init(
        _ code: Code,
        userID: String = "",
        detail: String? = nil,
        underlying: (any Error & Sendable)? = nil,
        isRetriable: Bool? = nil
    ) {
        self.code = code
        self.userID = userID
        self.detail = detail
        self.underlying = underlying
        self.isRetriable = isRetriable ?? (code == .lockTimeout || code == .storeFailure)
    }

    public var description: String {
        var text = "TokenError(\(code)"
        if !userID.isEmpty { text += ", user \(userID)" }
        text += ")"
        if let detail { text += ": \(detail)" }
        if let underlying { text += " [underlying: \(String(describing: underlying))]" }
        return text
    }
}
