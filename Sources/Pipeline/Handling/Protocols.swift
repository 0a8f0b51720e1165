/// The part of Mio's API a job needs. `PipelineMioBridge`'s `MioContextAPI` puts the `MioClient` behind it; tests
/// may use other implementations.
///
/// Errors should be ``JobFailure``s (the bridge maps Mio's errors to them): the handler acts on their
/// classification. Any other error is treated as a transport failure (retried).
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

/// Where the handler gets users' access tokens. `PipelineMioBridge`'s `MioTokenSource` puts the `TokenProvider`
/// behind it.
///
/// Errors should be ``JobFailure``s (the bridge maps the token store's errors to them): unknown users and revoked
/// refresh tokens end the job, retriable failures are retried; any other error is a retried transport failure.
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
