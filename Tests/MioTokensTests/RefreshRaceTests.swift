import Foundation
import Mio
import MioSimulator
import MioctxTestSupport
import MioTokens
import Testing

/// One `mioctx tokens refresh` child process.
final class RefreshProcess: Sendable {
    private let child: Subprocess
    let errorLog: URL

    init(arguments: [String], environment: [String: String], errorLog: URL) throws {
        self.errorLog = errorLog
        child = try Subprocess(
            mioctxExecutable().path,
            arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            standardInput: .pipe,
            standardError: .file(errorLog.path)
        )
    }

    /// Waits for the child's "ready" line (it has read the store and waits for the go).
    func waitUntilReady() async -> Bool {
        let child = child
        let line = await offPool { child.read(6) }
        return String(decoding: line, as: UTF8.self) == "ready\n"
    }

    func go() {
        child.writeToStandardInput("go\n".utf8)
    }

    /// Waits for exit; returns the exit status and the JSON report.
    func finish() async -> (status: Int32, report: [String: Any]?) {
        let child = child
        let rest = await offPool { child.readToEnd() }
        let termination = await child.exit()
        let report = try? JSONSerialization.jsonObject(with: Data(rest)) as? [String: Any]
        return (termination.status, report)
    }

    func terminate() {
        child.send(SIGTERM)
    }
}

/// Figures of one race, for the report.
struct RaceFigures: CustomStringConvertible {
    var refreshCalls: Int
    var reuseDetections: Int
    var callers: Int
    var distinctTokens: Int
    var performed: Int
    var avoided: Int
    var joined: Int
    var description: String {
        "refresh calls at the simulator: \(refreshCalls), reuse detections: \(reuseDetections), callers: \(callers), "
            + "distinct resulting tokens: \(distinctTokens); processes performed \(performed), avoided \(avoided), "
            + "joined \(joined)"
    }
}

enum RefreshRace {
    static let processes = 3
    static let tasksPerProcess = 50
    static let userID = "race-user"
    static let keys = "race:" + Data(repeating: 0x5A, count: 32).base64EncodedString()

    /// 3 OS processes x 50 tasks, all holding the same expired access token, call refreshAfterUnauthorized
    /// against the simulator (rotation with reuse detection): exactly one refresh reaches Mio.
    static func run(
        storeArgument: String,
        withStore: (TokenKeyring, (any TokenStore) async throws -> Void) async throws -> Void
    ) async throws -> RaceFigures {
        let keyring = try TokenKeyring(parsing: keys)
        return try await MioSimulator.withSimulator(Sim.configuration(tokenTTL: .seconds(1)), logger: Sim.quietLogger) {
            simulator in
            let baseURL = simulator.baseURL!
            var expired = ""
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: baseURL)) { mio in
                try await withStore(keyring) { store in
                    expired = try await Sim.connect(userID, simulator: simulator, mio: mio, store: store).accessToken
                }
                // Wait (bounded) until Mio really rejects the token: every caller then holds an expired token.
                var rejected = false
                for _ in 0..<100 where !rejected {
                    do {
                        _ = try await mio.getContext(query: "ping", accessToken: expired)
                        try await Task.sleep(for: .milliseconds(100))
                    } catch let error as MioError where error.code == .unauthorized {
                        rejected = true
                    }
                }
                try #require(rejected, "the simulator never expired the access token")
            }
            simulator.resetStats()

            let fingerprint = TokenRecord.fingerprint(of: expired)
            var environment = Sim.environment(baseURL: baseURL).merging(["MIOCTX_TOKEN_KEYS": keys]) { $1 }
            // A store URL with a password is refused as a flag (it would show in /proc/*/cmdline): the environment.
            let storeFlag: [String]
            if storeArgument.hasPrefix("sqlite:") {
                storeFlag = ["--store", storeArgument]
            } else {
                environment["MIOCTX_TOKENS_STORE"] = storeArgument
                storeFlag = []
            }
            let logDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-race-\(UUID())")
            try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: logDirectory) }
            let children = try (0..<processes).map { index in
                try RefreshProcess(
                    arguments: [
                        "tokens", "refresh", userID,
                    ] + storeFlag + [
                        "--after-unauthorized-fingerprint", fingerprint,
                        "--concurrency", "\(tasksPerProcess)", "--wait-for-stdin",
                    ],
                    environment: environment,
                    errorLog: logDirectory.appendingPathComponent("child-\(index).log")
                )
            }
            defer { children.forEach { $0.terminate() } }
            for child in children {
                let ready = await child.waitUntilReady()
                if !ready {
                    let log = (try? String(contentsOf: child.errorLog, encoding: .utf8)) ?? ""
                    try #require(ready, "a child did not get ready: \(log)")
                }
            }
            // All three have read the expired token; release them together.
            children.forEach { $0.go() }

            var fingerprints: [String: Int] = [:]
            var figures = RaceFigures(
                refreshCalls: 0, reuseDetections: 0, callers: 0, distinctTokens: 0, performed: 0, avoided: 0, joined: 0
            )
            for child in children {
                let (status, parsed) = await child.finish()
                let log = (try? String(contentsOf: child.errorLog, encoding: .utf8)) ?? ""
                #expect(status == 0, "child failed: \(log)")
                let report = try #require(parsed, "no report: \(log)")
                #expect((report["errors"] as? [String: Int])?.isEmpty == true, "\(report)")
                for (tokenPrint, count) in report["fingerprints"] as? [String: Int] ?? [:] {
                    fingerprints[tokenPrint, default: 0] += count
                }
                figures.performed += report["refreshesPerformed"] as? Int ?? 0
                figures.avoided += report["refreshesAvoided"] as? Int ?? 0
                figures.joined += report["refreshesJoined"] as? Int ?? 0
            }
            let stats = simulator.stats()
            figures.refreshCalls = stats.refreshesByUser[userID] ?? 0
            figures.reuseDetections = stats.reuseDetections
            figures.callers = fingerprints.values.reduce(0, +)
            figures.distinctTokens = fingerprints.count

            #expect(figures.refreshCalls == 1)
            #expect(figures.reuseDetections == 0)
            #expect(figures.callers == processes * tasksPerProcess)
            #expect(figures.distinctTokens == 1)
            #expect(fingerprints[fingerprint] == nil, "callers got the expired token back")
            #expect(figures.performed == 1)
            // The winner's token is the stored one, and it is one Mio issued.
            try await withStore(keyring) { store in
                let stored = try #require(try await store.get(userID: userID))
                #expect(fingerprints[TokenRecord.fingerprint(of: stored.accessToken)] == processes * tasksPerProcess)
                try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: baseURL)) { mio in
                    do {
                        _ = try await mio.getContext(query: "after the race", accessToken: stored.accessToken)
                    } catch let error as MioError where error.code == .unauthorized {
                        // The race's tokens live 1 s, so on a slow machine (AddressSanitizer) the new one may have
                        // expired by now; Mio must still know it ("unknown access token" otherwise).
                        #expect(error.oauthErrorDescription == "access token expired", "\(error)")
                    }
                }
            }
            print("refresh race (\(storeArgument.hasPrefix("sqlite") ? "SQLite" : "PostgreSQL")): \(figures)")
            return figures
        }
    }
}

@Suite struct RefreshRaceTests {
    @Test(.timeLimit(.minutes(5)))
    func refreshRaceAcrossThreeProcessesSpendsOneRefreshTokenWithSQLite() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("race.sqlite").path
            _ = try await RefreshRace.run(
                storeArgument: "sqlite:\(path)",
                withStore: { keyring, body in try await body(try SQLiteTokenStore(path: path, keyring: keyring)) }
            )
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage), .timeLimit(.minutes(5)))
    func refreshRaceAcrossThreeProcessesSpendsOneRefreshTokenWithPostgres() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        _ = try await RefreshRace.run(
            storeArgument: url,
            withStore: { keyring, body in
                try await PostgresTokenStore.withStore(url: url, keyring: keyring, logger: Sim.quietLogger) {
                    try await body($0)
                }
            }
        )
    }
}
