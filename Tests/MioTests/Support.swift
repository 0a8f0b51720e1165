import AsyncHTTPClient
import Foundation
import Logging
import Mio
import MioSimulator
import MioctxTestSupport
import NIOCore
import NIOHTTP1
import Synchronization

/// A logger that drops everything below error, for tests that do not inspect logs.
let quietLogger: Logger = {
    var logger = Logger(label: "quiet")
    logger.logLevel = .error
    return logger
}()

/// Talks to the simulator's `/sim/...` control endpoints over HTTP.
struct SimControl: Sendable {
    let baseURL: String
    let http: HTTPClient

    @discardableResult
    func post(_ path: String, _ json: String) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: self.baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
        return try await self.send(request)
    }

    func get(_ path: String) async throws -> (status: Int, body: String) {
        try await self.send(HTTPClientRequest(url: self.baseURL + path))
    }

    private func send(_ request: HTTPClientRequest) async throws -> (status: Int, body: String) {
        let response = try await self.http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }

    /// `POST /sim/authorize`: a fresh authorization code for the user.
    func authorize(_ userID: String) async throws -> String {
        let (status, body) = try await self.post("/sim/authorize", #"{"userId":"\#(userID)"}"#)
        guard status == 200, let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let code = object["code"] as? String
        else { throw TestFailure("authorize failed: \(status) \(body)") }
        return code
    }

    func revoke(_ userID: String) async throws {
        let (status, body) = try await self.post("/sim/revoke", #"{"userId":"\#(userID)"}"#)
        guard status == 200 else { throw TestFailure("revoke failed: \(status) \(body)") }
    }

    func markNew(_ userID: String) async throws {
        let (status, body) = try await self.post("/sim/users/new", #"{"userId":"\#(userID)"}"#)
        guard status == 200 else { throw TestFailure("users/new failed: \(status) \(body)") }
    }

    func setFaults(_ json: String) async throws {
        let (status, body) = try await self.post("/sim/faults", json)
        guard status == 200 else { throw TestFailure("faults failed: \(status) \(body)") }
    }

    func stats() async throws -> MioSimulator.Stats {
        let (status, body) = try await self.get("/sim/stats")
        guard status == 200 else { throw TestFailure("stats failed: \(status) \(body)") }
        return try JSONDecoder().decode(MioSimulator.Stats.self, from: Data(body.utf8))
    }

    func resetStats() async throws {
        let (status, body) = try await self.post("/sim/stats/reset", "{}")
        guard status == 200 else { throw TestFailure("stats reset failed: \(status) \(body)") }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Everything a test needs: a running simulator, a Mio client pointed at it, and the control endpoints.
struct Harness {
    let simulator: MioSimulator
    let client: MioClient
    let control: SimControl
    let clientConfiguration: MioClient.Configuration
    /// The logger of ``client``, whose lines the harness records.
    let clientLogger: Logger

    /// A client for the same simulator with a different configuration, logging like ``client``
    /// (shut down by the caller).
    func otherClient(_ change: (inout MioClient.Configuration) -> Void) -> MioClient {
        var configuration = self.clientConfiguration
        change(&configuration)
        return MioClient(configuration: configuration, logger: self.clientLogger)
    }

    /// Authorizes a user and exchanges the code: the tokens an app would store after consent.
    func connect(_ userID: String) async throws -> MioTokenResponse {
        try await self.client.exchangeCodeForTokens(code: try await self.control.authorize(userID))
    }
}

let simulatorClientID = "test-client"
let simulatorSecret = "test-secret-0123456789"
let simulatorRedirect = "http://127.0.0.1:9/oauth/callback"

/// Runs `body` with a simulator on an ephemeral port and a client configured for it; shuts both down.
func withHarness<T: Sendable>(
    simulator: MioSimulator.Configuration = MioSimulator.Configuration(),
    requestTimeout: Duration = .seconds(30),
    maxConnections: Int = 64,
    logs: RecordingLogHandler.Store = RecordingLogHandler.Store(),
    _ body: (Harness) async throws -> T
) async throws -> T {
    var simulatorConfiguration = simulator
    simulatorConfiguration.clientID = simulatorClientID
    simulatorConfiguration.clientSecret = simulatorSecret
    simulatorConfiguration.redirectURL = simulatorRedirect
    let simulatorLogger = Logger.recording("mio-simulator", into: logs)
    return try await MioSimulator.withSimulator(simulatorConfiguration, logger: simulatorLogger) { simulator in
        let configuration = MioClient.Configuration(
            clientID: simulatorClientID,
            clientSecret: simulatorSecret,
            redirectURL: simulatorRedirect,
            apiURL: simulator.baseURL!,
            requestTimeout: requestTimeout,
            maxConnections: maxConnections
        )
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let clientLogger = Logger.recording("mio", into: logs)
        let client = MioClient(configuration: configuration, logger: clientLogger)
        let harness = Harness(
            simulator: simulator,
            client: client,
            control: SimControl(baseURL: simulator.baseURL!, http: http),
            clientConfiguration: configuration,
            clientLogger: clientLogger
        )
        do {
            let result = try await body(harness)
            try await client.shutdown()
            try await http.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            try? await http.shutdown()
            throw error
        }
    }
}

/// Runs `operation` and returns the `MioError` it threw, or nil if it succeeded.
func mioError<T>(_ operation: () async throws(MioError) -> T) async -> MioError? {
    do {
        _ = try await operation()
        return nil
    } catch {
        return error
    }
}
