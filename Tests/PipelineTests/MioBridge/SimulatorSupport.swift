import AsyncHTTPClient
import Pipeline
import PipelineMioBridge
import Foundation
import Logging
import Mio
import MioSimulator
import MioTokens
import NIOCore
import NIOHTTP1
import Synchronization

/// A logger that drops everything below error.
let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .error
    return logger
}()

/// A running simulator, a `MioClient` pointed at it and a token source holding users' tokens issued by it.
struct SimulatorHarness: Sendable {
    let simulator: MioSimulator
    let client: MioClient
    let tokens: SimulatorTokens
    let baseURL: String
    let clientConfiguration: MioClient.Configuration

    /// `GET /sim/stats` over HTTP.
    func stats() async throws -> MioSimulator.Stats {
        let (status, body) = try await SimControl(baseURL: baseURL).get("/sim/stats")
        guard status == 200 else { throw SimControl.Failure(status: status) }
        return try JSONDecoder().decode(MioSimulator.Stats.self, from: Data(body))
    }
}

/// Runs `body` with a simulator (seeded faults, on the context endpoints only: users connect through a
/// healthy token endpoint) and a client for it.
func withSimulatorHarness<T: Sendable>(
    faults: MioSimulator.Faults = MioSimulator.Faults(),
    requestTimeout: Duration = .seconds(30),
    _ body: (SimulatorHarness) async throws -> T
) async throws -> T {
    var faults = faults
    faults.targets = [.context, .summary]
    let configuration = MioSimulator.Configuration(faults: faults, seed: 7)
    return try await MioSimulator.withSimulator(configuration, logger: quietLogger) { simulator in
        let baseURL = simulator.baseURL!
        let clientConfiguration = MioClient.Configuration(
            clientID: configuration.clientID,
            clientSecret: configuration.clientSecret,
            redirectURL: configuration.redirectURL,
            apiURL: baseURL,
            requestTimeout: requestTimeout,
            maxConnections: 128
        )
        return try await MioClient.withClient(configuration: clientConfiguration, logger: quietLogger) { client in
            let harness = SimulatorHarness(
                simulator: simulator,
                client: client,
                tokens: SimulatorTokens(client: client, control: SimControl(baseURL: baseURL)),
                baseURL: baseURL,
                clientConfiguration: clientConfiguration
            )
            return try await body(harness)
        }
    }
}

/// The simulator's `/sim/...` control endpoints over HTTP.
struct SimControl: Sendable {
    struct Failure: Error {
        var status: Int
    }

    let baseURL: String

    @discardableResult
    func post(_ path: String, _ json: String) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
        return try await send(request)
    }

    func get(_ path: String) async throws -> (status: Int, body: [UInt8]) {
        try await send(HTTPClientRequest(url: baseURL + path))
    }

    private func send(_ request: HTTPClientRequest) async throws -> (status: Int, body: [UInt8]) {
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Array(buffer: body))
    }

    /// `POST /sim/authorize`: an authorization code for the user.
    func authorize(_ userID: String) async throws -> String {
        let (status, body) = try await post("/sim/authorize", #"{"userId":"\#(userID)"}"#)
        guard status == 200,
            let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let code = object["code"] as? String
        else { throw Failure(status: status) }
        return code
    }

    /// `POST /sim/revoke`: revokes every token of the user.
    func revoke(_ userID: String) async throws {
        let (status, _) = try await post("/sim/revoke", #"{"userId":"\#(userID)"}"#)
        guard status == 200 || status == 204 else { throw Failure(status: status) }
    }
}

/// A minimal token store in memory that gets users' tokens from the simulator (authorization code exchange)
/// and refreshes them at the simulator's token endpoint, one refresh per user at a time. Its `TokenError`s reach
/// the handler classified, as the bridge's `MioTokenSource` classifies the `TokenProvider`'s.
final class SimulatorTokens: TokenSource {
    private struct State {
        var tokens: [String: (access: String, refresh: String)] = [:]
        var refreshing: [String: Task<String, any Error>] = [:]
    }

    private let client: MioClient
    private let control: SimControl
    private let state = Mutex(State())

    init(client: MioClient, control: SimControl) {
        self.client = client
        self.control = control
    }

    /// Connects a user: `/sim/authorize`, then the code exchange.
    func connect(_ userID: String) async throws {
        let code = try await control.authorize(userID)
        let response = try await client.exchangeCodeForTokens(code: code)
        state.withLock { $0.tokens[userID] = (response.accessToken, response.refreshToken) }
    }

    /// Replaces the user's access token by one the simulator never issued (as if the stored one were stale).
    func makeAccessTokenStale(_ userID: String) {
        state.withLock { $0.tokens[userID]!.access = "atk-stale-\(userID)" }
    }

    /// Every access and refresh token handed out or held (to check that none leaks).
    var allTokens: [String] {
        state.withLock { $0.tokens.values.flatMap { [$0.access, $0.refresh] } }
    }

    func accessToken(for userID: String) async throws -> String {
        guard let access = state.withLock({ $0.tokens[userID]?.access }) else {
            throw MioFailures.classified(TokenError(.noTokens, userID: userID))
        }
        return access
    }

    func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String {
        do {
            return try await refreshOnce(userID: userID, rejected: rejected)
        } catch {
            throw MioFailures.classified(error)
        }
    }

    private func refreshOnce(userID: String, rejected: String) async throws -> String {
        let task = state.withLock { state -> Task<String, any Error>? in
            guard let current = state.tokens[userID] else { return nil }
            if current.access != rejected { return Task { current.access } }
            if let running = state.refreshing[userID] { return running }
            let refreshToken = current.refresh
            let task = Task { try await self.refresh(userID: userID, refreshToken: refreshToken) }
            state.refreshing[userID] = task
            return task
        }
        guard let task else { throw TokenError(.noTokens, userID: userID) }
        return try await task.value
    }

    private func refresh(userID: String, refreshToken: String) async throws -> String {
        defer { state.withLock { _ = $0.refreshing.removeValue(forKey: userID) } }
        do {
            let response = try await client.refreshTokens(refreshToken: refreshToken)
            state.withLock { $0.tokens[userID] = (response.accessToken, response.refreshToken) }
            return response.accessToken
        } catch let error where error.code == .invalidGrant {
            throw TokenError(.reauthRequired, userID: userID, underlying: error)
        } catch {
            throw TokenError(.refreshFailed, userID: userID, underlying: error, isRetriable: error.isRetriable)
        }
    }
}

/// Wraps a `ContextAPI` and measures its peak concurrency per access token (that is, per user).
final class PerUserMeter: ContextAPI {
    private struct State {
        var current: [String: Int] = [:]
        var peak = 0
    }

    private let base: any ContextAPI
    private let state = Mutex(State())

    init(_ base: any ContextAPI) {
        self.base = base
    }

    var peakPerUser: Int { state.withLock { $0.peak } }

    private func measure<T>(_ token: String, _ body: () async throws -> T) async throws -> T {
        state.withLock { state in
            state.current[token, default: 0] += 1
            state.peak = max(state.peak, state.current[token]!)
        }
        defer { state.withLock { $0.current[token]! -= 1 } }
        return try await body()
    }

    func getContext(query: String, accessToken: String) async throws -> String {
        try await measure(accessToken) { try await base.getContext(query: query, accessToken: accessToken) }
    }

    func getContextSummary(accessToken: String) async throws -> String? {
        try await measure(accessToken) { try await base.getContextSummary(accessToken: accessToken) }
    }
}
