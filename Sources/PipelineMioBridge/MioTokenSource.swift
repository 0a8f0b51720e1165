public import MioTokens
public import Pipeline

/// The `TokenProvider` as the pipeline's `TokenSource`: its `TokenError`s (and `MioError`s) become `JobFailure`s
/// (``MioFailures/classified(_:)``).
public struct MioTokenSource: TokenSource {
    /// The provider asked.
    public let provider: TokenProvider

    /// Puts a provider behind the pipeline's protocol.
    /// - Parameter provider: The token provider.
    public init(_ provider: TokenProvider) {
        self.provider = provider
    }

    /// A valid access token for the user.
    /// - Parameter userID: The user.
    /// - Returns: An access token.
    /// - Throws: `JobFailure` for the token store's and Mio's errors; other errors (a cancellation) as they are.
    public func accessToken(for userID: String) async throws -> String {
        do {
            return try await provider.accessToken(for: userID)
        } catch {
            throw MioFailures.classified(error)
        }
    }

    /// A new access token after Mio refused `rejected` (one coordinated refresh per user).
    /// - Parameters:
    ///   - userID: The user.
    ///   - rejected: The access token Mio refused.
    /// - Returns: A different access token.
    /// - Throws: `JobFailure` for the token store's and Mio's errors; other errors (a cancellation) as they are.
    public func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String {
        do {
            return try await provider.refreshAfterUnauthorized(userID: userID, rejected: rejected)
        } catch {
            throw MioFailures.classified(error)
        }
    }
}
