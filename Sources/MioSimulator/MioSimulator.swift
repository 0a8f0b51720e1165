public import Coordination
import Foundation
import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization
public import UnixSignals

/// A Mio API look-alike on loopback, with the failure modes of a real service, for the demo, tests and
/// benchmarks.
///
/// It serves the wire protocol of the official SDK (`POST /v1/auth/oauth2/token` for both grants,
/// `POST /v1/context`, `GET /v1/context/summary`), rotates refresh tokens with reuse detection, and injects
/// latency, errors, hangs and limits on demand. Control endpoints under `/sim/` hand out authorization codes,
/// revoke users, change faults and report statistics; the same operations are available in process.
///
/// Run it as a `Service` in a `ServiceGroup`, or scoped with ``withRunning(_:logger:_:)``.
public final class MioSimulator: Service, Sendable {
    /// The configuration the simulator started with (faults may since have changed; see ``faults()``).
    public let configuration: Configuration

    let state: Mutex<SimulatorState>
    let logger: Logger
    /// Token lifetimes, the rate limit's bucket, latency and hangs, `Retry-After` dates.
    let timeSource: TimeSource
    /// Set at graceful shutdown; requests hanging on purpose wait on it and end early.
    let stopping = WaitableState<Bool, Void>(false)
    private let onServerRunning: @Sendable (_ baseURL: String) async -> Void
    private let boundURL = Mutex<String?>(nil)

    /// Creates a simulator; nothing listens until ``run()``.
    /// - Parameters:
    ///   - configuration: Registered client, address, lifetimes and faults.
    ///   - logger: Where the simulator logs (never tokens or secrets).
    ///   - timeSource: The clocks of token lifetimes, rate limits, latency, hangs and `Retry-After` dates
    ///     (default: the system's).
    ///   - onServerRunning: Called with the base URL (such as `http://127.0.0.1:54321`) once the port is bound.
    public init(
        configuration: Configuration,
        logger: Logger = Logger(label: "mio-simulator"),
        timeSource: TimeSource = .system,
        onServerRunning: @escaping @Sendable (_ baseURL: String) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.state = Mutex(SimulatorState(configuration: configuration))
        self.logger = logger
        self.timeSource = timeSource
        self.onServerRunning = onServerRunning
    }

    /// The signals on which `mioctx sim` shuts the simulator down gracefully (and exits 0).
    public static let shutdownSignals: [UnixSignal] = [.sigterm, .sigint]

    /// The base URL once the server listens, such as `http://127.0.0.1:54321`; nil before.
    public var baseURL: String? {
        self.boundURL.withLock { $0 }
    }

    /// Serves until graceful shutdown. Requests hanging on purpose end (with 503) when shutdown begins.
    public func run() async throws {
        if let problem = self.configuration.faults.validationError() {
            throw MioSimulatorError(message: "invalid faults: \(problem)")
        }
        let host = self.configuration.host
        let app = Application(
            router: self.makeRouter(),
            configuration: .init(address: .hostname(host, port: self.configuration.port)),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? self.configuration.port
                let url = "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
                self.boundURL.withLock { $0 = url }
                self.logger.info("Mio simulator listening", metadata: ["url": "\(url)"])
                await self.onServerRunning(url)
            },
            logger: self.logger
        )
        try await withGracefulShutdownHandler {
            try await app.run()
        } onGracefulShutdown: {
            self.stopping.withLock { stopping, waiters in
                stopping = true
                waiters.wakeAll(with: ())
            }
        }
    }

    /// Runs a simulator for the duration of `body` and shuts it down afterwards.
    /// - Parameters:
    ///   - configuration: The simulator configuration (use port 0).
    ///   - logger: The simulator's logger.
    ///   - timeSource: The simulator's clocks (default: the system's).
    ///   - body: Work to do while it runs; receives the base URL, such as `http://127.0.0.1:54321`.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or why the simulator could not start.
    public static func withRunning<T: Sendable>(
        _ configuration: Configuration,
        logger: Logger = Logger(label: "mio-simulator"),
        timeSource: TimeSource = .system,
        _ body: (_ baseURL: String) async throws -> T
    ) async throws -> T {
        try await self.withSimulator(configuration, logger: logger, timeSource: timeSource) { simulator in
            try await body(simulator.baseURL!)
        }
    }

    /// Runs a simulator for the duration of `body`, handing `body` the running simulator so it can use the
    /// in-process controls (``authorize(userID:)``, ``stats()``, ``setFaults(_:)``, ...) and ``baseURL``.
    /// - Parameters:
    ///   - configuration: The simulator configuration (use port 0).
    ///   - logger: The simulator's logger.
    ///   - timeSource: The simulator's clocks (default: the system's).
    ///   - body: Work to do while it runs.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or why the simulator could not start.
    public static func withSimulator<T: Sendable>(
        _ configuration: Configuration,
        logger: Logger = Logger(label: "mio-simulator"),
        timeSource: TimeSource = .system,
        _ body: (_ simulator: MioSimulator) async throws -> T
    ) async throws -> T {
        let (started, continuation) = AsyncStream.makeStream(of: String.self)
        let simulator = MioSimulator(configuration: configuration, logger: logger, timeSource: timeSource) { url in
            continuation.yield(url)
            continuation.finish()
        }
        let group = ServiceGroup(
            configuration: .init(services: [simulator], gracefulShutdownSignals: [], logger: logger)
        )
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                defer { continuation.finish() }
                try await group.run()
            }
            var iterator = started.makeAsyncIterator()
            guard await iterator.next() != nil else {
                // The server never bound: surface run()'s error.
                try await tasks.waitForAll()
                throw MioSimulatorError(message: "the simulator stopped before it listened")
            }
            let result: T
            do {
                result = try await body(simulator)
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }

    // MARK: - In-process controls (the same as the /sim endpoints)

    /// Hands out a single-use, expiring authorization code for a user, as Mio's consent page would.
    /// - Parameter userID: The user who consented.
    /// - Returns: The code, for `exchangeCodeForTokens`.
    public func authorize(userID: String) -> String {
        let now = self.timeSource.now()
        return self.state.withLock { $0.authorize(userID: userID, now: now) }
    }

    /// Revokes every access and refresh token of a user.
    /// - Parameter userID: The user.
    public func revoke(userID: String) {
        self.state.withLock { $0.revoke(userID: userID) }
    }

    /// Marks a user as new: their summary is null.
    /// - Parameter userID: The user.
    public func markNew(userID: String) {
        _ = self.state.withLock { $0.newUsers.insert(userID) }
    }

    /// The statistics so far.
    public func stats() -> Stats {
        self.state.withLock { $0.stats }
    }

    /// Every authorization code, access token and refresh token the simulator handed out, oldest first, so that a
    /// test can check that none of them appears in logs, results or errors. They stay listed after use or revocation.
    public func issuedSecrets() -> [String] {
        self.state.withLock { $0.issuedSecrets }
    }

    /// The W3C `traceparent` headers of the latest API requests (`/v1/...`), oldest first (the most recent 5,000 to
    /// 10,000 are kept), so that a test can check that a trace context reached Mio.
    public func receivedTraceparents() -> [String] {
        self.state.withLock { $0.traceparents }
    }

    /// Clears the statistics (the current concurrency stays, as the new peak's floor).
    public func resetStats() {
        self.state.withLock { $0.resetStats() }
    }

    /// The faults in force.
    public func faults() -> Faults {
        self.state.withLock { $0.faults }
    }

    /// Replaces the faults in force.
    /// - Parameter faults: The new settings.
    /// - Throws: `MioSimulatorError` naming a setting out of range.
    public func setFaults(_ faults: Faults) throws {
        if let problem = faults.validationError() {
            throw MioSimulatorError(message: problem)
        }
        self.state.withLock { $0.faults = faults }
    }
}

/// A simulator that cannot start or a control request that cannot be applied.
public struct MioSimulatorError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String

    /// Creates the error.
    public init(message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { self.message }
}
