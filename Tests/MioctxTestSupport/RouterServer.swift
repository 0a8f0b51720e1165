public import Hummingbird
public import Logging
import ServiceLifecycle

/// Serves `router` on 127.0.0.1 (an ephemeral port) for the duration of `body`, then shuts the server down
/// gracefully, whether `body` throws or not.
/// - Parameters:
///   - router: The routes to serve.
///   - logger: The server's logger.
///   - body: Receives the base URL, such as `http://127.0.0.1:54321`.
/// - Returns: What `body` returns.
public func withRouterServer<T: Sendable>(
    _ router: Router<BasicRequestContext>,
    logger: Logger,
    _ body: (_ baseURL: String) async throws -> T
) async throws -> T {
    let (ports, announce) = AsyncStream.makeStream(of: Int.self)
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            announce.yield(channel.localAddress?.port ?? 0)
            announce.finish()
        },
        logger: logger
    )
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            // The server never bound: surface run()'s error.
            try await tasks.waitForAll()
            throw TestTimeout(what: "the test server to listen")
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body("http://127.0.0.1:\(port)"))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return try result.get()
    }
}
