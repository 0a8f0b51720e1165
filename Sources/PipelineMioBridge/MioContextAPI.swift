public import Mio
public import Pipeline

/// The `MioClient` as the pipeline's `ContextAPI`: its `MioError`s become `JobFailure`s (see `MioFailures`).
public struct MioContextAPI: ContextAPI {
    /// The client called.
    public let client: MioClient

    /// Puts a client behind the pipeline's protocol.
    /// - Parameter client: The Mio client.
    public init(_ client: MioClient) {
        self.client = client
    }

    /// `getContext`, with Mio's errors classified.
    /// - Parameters:
    ///   - query: The query.
    ///   - accessToken: The user's access token.
    /// - Returns: The `content` Mio answered.
    /// - Throws: `JobFailure`.
    public func getContext(query: String, accessToken: String) async throws -> String {
        do {
            return try await client.getContext(query: query, accessToken: accessToken)
        } catch {
            throw JobFailure(error)
        }
    }

    /// `getContextSummary`, with Mio's errors classified.
    /// - Parameter accessToken: The user's access token.
    /// - Returns: The summary, or `nil` when the user has none yet.
    /// - Throws: `JobFailure`.
    public func getContextSummary(accessToken: String) async throws -> String? {
        do {
            return try await client.getContextSummary(accessToken: accessToken)
        } catch {
            throw JobFailure(error)
        }
    }
}
