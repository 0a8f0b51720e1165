package import CoreMetrics
import Foundation
package import Logging
package import Mio
package import MioSimulator
package import MioTokens
package import Tracing

/// The Mio side of a pipeline test, real and on loopback: the simulator over HTTP, a `MioClient` for it, an
/// in-memory token store and the `TokenProvider` over both. `FileHarness` and `WorkerHarness` are built on it.
package struct MioStack: Sendable {
    package let simulator: MioSimulator
    package let mio: MioClient
    package let store: InMemoryTokenStore
    package let tokens: TokenProvider

    /// Runs `body` with a simulator using `configuration` and a client for it; shuts the client down afterwards.
    ///
    /// - Parameters:
    ///   - maxConnections: the client's connection pool size.
    ///   - metricsFactory: where the client and the token provider emit metrics.
    ///   - tracer: what the client traces with.
    package static func with<T: Sendable>(
        _ configuration: MioSimulator.Configuration,
        logger: Logger,
        maxConnections: Int,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
        tracer: any Tracer = NoOpTracer(),
        _ body: (MioStack) async throws -> T
    ) async throws -> T {
        try await MioSimulator.withSimulator(configuration, logger: logger) { simulator in
            let mio = MioClient(
                configuration: MioClient.Configuration(
                    clientID: configuration.clientID,
                    clientSecret: configuration.clientSecret,
                    redirectURL: configuration.redirectURL,
                    apiURL: simulator.baseURL!,
                    requestTimeout: .seconds(10),
                    maxConnections: maxConnections
                ),
                logger: logger,
                metricsFactory: metricsFactory,
                tracer: tracer
            )
            let store = InMemoryTokenStore()
            let tokens = TokenProvider(store: store, refresher: mio, logger: logger, metricsFactory: metricsFactory)
            do {
                let result = try await body(MioStack(simulator: simulator, mio: mio, store: store, tokens: tokens))
                try await mio.shutdown()
                return result
            } catch {
                try? await mio.shutdown()
                throw error
            }
        }
    }

    /// Connects users through the real flow: simulator consent -> code exchange -> store.
    package func connect(_ users: [String]) async throws {
        for user in users {
            let code = simulator.authorize(userID: user)
            let response = try await mio.exchangeCodeForTokens(code: code)
            _ = await store.upsert(userID: user, tokens: TokenGrant(response: response, receivedAt: Date()))
        }
    }
}
