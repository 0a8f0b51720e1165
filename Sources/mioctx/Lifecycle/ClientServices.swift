import Mio
import MioTokens
import ServiceLifecycle

/// The Mio client as a service: idle until graceful shutdown, then it shuts the client's connections down and
/// waits for that. In a group it comes after the token store and before what calls Mio.
struct MioClientService: Service {
    let client: MioClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}

/// The token provider as a service: idle until graceful shutdown, then it lets token refreshes in flight finish,
/// so that none is cut off between Mio's answer and the store's write. In a group it comes after the Mio client
/// and the store (they close after it) and before the worker.
struct TokenProviderService: Service {
    let provider: TokenProvider
    /// The longest wait for refreshes in flight and grants still being saved (the shutdown grace period).
    let gracePeriod: Duration

    func run() async throws {
        try? await gracefulShutdown()
        await provider.finishRefreshes(within: gracePeriod)
    }
}
