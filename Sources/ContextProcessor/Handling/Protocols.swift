/// The part of Mio's API a job needs. `MioClient` conforms; tests may use other implementations.
///
/// Errors should be `MioError`s: the handler classifies them by `code`, `isRetriable` and `retryAfter`. Any
/// other error is treated as a transport failure (retried).
public protocol ContextAPI: Sendable {
    /// Personalized context for a query (`POST /v1/context`).
    /// - Parameters:
    ///   - query: The query.
    ///   - accessToken: The user's access token.
    /// - Returns: The `content` Mio answered.
    func getContext(query: String, accessToken: String) async throws -> String

    /// The user's context summary (`GET /v1/context/summary`).
    /// - Parameter accessToken: The user's access token.
    /// - Returns: The summary, or `nil` when the user has none yet.
    func getContextSummary(accessToken: String) async throws -> String?
}

/// Where the handler gets users' access tokens. `TokenProvider` conforms.
///
/// Errors should be `TokenError`s: `noTokens` and `reauthRequired` end the job, retriable ones are retried.
public protocol TokenSource: Sendable {
    /// A valid access token for the user.
    /// - Parameter userID: The user.
    /// - Returns: An access token.
    func accessToken(for userID: String) async throws -> String

    /// A new access token after Mio answered 401 for `rejected` (one coordinated refresh per user).
    /// - Parameters:
    ///   - userID: The user.
    ///   - rejected: The access token Mio refused.
    /// - Returns: A different access token.
    func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String
}
