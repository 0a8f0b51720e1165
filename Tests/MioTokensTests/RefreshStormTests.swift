import Foundation
import Mio
import MioSimulator
import MioTokens
import Testing

/// Issue 16: refreshes of different users run in parallel, still exactly one per user across processes; and a
/// revocation or a reconnection made by another process reaches a provider's cache within a bounded time.
///
/// "Processes" here are two stores opened separately on the same database (two SQLite connections pools on one
/// file, two PostgreSQL pools on one schema), each with its own provider: everything two `mioctx` processes
/// share is shared, without the cost of starting processes.
enum RefreshStormScenarios {
    static let users = (0..<100).map { "storm-\($0)" }

    /// Two stores on one database, for the two "processes".
    static func withTwoStores<T: Sendable>(
        _ kind: StoreKind,
        _ body: (any TokenStore, any TokenStore) async throws -> T
    ) async throws -> T {
        let keyring = TokenKeyring.ephemeral()
        switch kind {
        case .memory:
            let store = InMemoryTokenStore()
            return try await body(store, store)
        case .sqlite:
            return try await withTemporaryDirectory { directory in
                let path = directory.appendingPathComponent("tokens.sqlite").path
                let one = try SQLiteTokenStore(path: path, keyring: keyring)
                let two = try SQLiteTokenStore(path: path, keyring: keyring)
                return try await body(one, two)
            }
        case .postgres:
            let url = try await TestPostgres.freshSchemaURL()
            return try await PostgresTokenStore.withStore(url: url, keyring: keyring) { one in
                try await PostgresTokenStore.withStore(url: url, keyring: keyring) { two in
                    try await body(one, two)
                }
            }
        }
    }

    /// 100 users whose tokens Mio rejected, refreshed by two processes at once while the token endpoint takes
    /// 200 ms: the refreshes overlap at Mio (they no longer take turns), and each user is refreshed exactly once.
    static func refreshesOfDifferentUsersRunInParallelAndOncePerUser(_ kind: StoreKind) async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            var configuration = Sim.mioConfiguration(baseURL: simulator.baseURL!)
            configuration.maxConnections = 128
            try await MioClient.withClient(configuration: configuration) { mio in
                try await withTwoStores(kind) { one, two in
                    var rejected: [String: String] = [:]
                    for user in users {
                        rejected[user] = try await Sim.connect(user, simulator: simulator, mio: mio, store: one)
                            .accessToken
                    }
                    var faults = simulator.faults()
                    faults.latencyMs = 200
                    faults.targets = [.token]
                    try simulator.setFaults(faults)
                    simulator.resetStats()
                    let rejectedTokens = rejected
                    let providers = [one, two].map {
                        TokenProvider(store: $0, refresher: mio, logger: Sim.quietLogger)
                    }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for provider in providers {
                            for user in users {
                                group.addTask {
                                    _ = try await provider.refreshAfterUnauthorized(
                                        userID: user, rejected: rejectedTokens[user]!)
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    let stats = simulator.stats()
                    #expect(stats.refreshesByUser.count == users.count)
                    #expect(stats.refreshesByUser.values.allSatisfy { $0 == 1 })
                    #expect(stats.reuseDetections == 0)
                    // Serialized refreshes would never overlap at Mio.
                    #expect(stats.concurrency.peak > 1, "refreshes took turns: peak \(stats.concurrency.peak)")
                    for user in users {
                        let record = try #require(try await two.get(userID: user))
                        #expect(record.status == .active)
                        #expect(record.accessToken != rejected[user])
                    }
                }
            }
        }
    }

    /// Process A serves a user's token from its cache; process B revokes the user (`tokens revoke`), then
    /// another user reconnects with new tokens. Within the revalidation interval A stops using the revoked token
    /// and uses the new one.
    static func revocationAndReconnectionReachAnotherProcessWithinTheInterval(_ kind: StoreKind) async throws {
        try await withTwoStores(kind) { one, two in
            let time = ManualTime(start: Date())
            let a = TokenProvider(
                store: one, refresher: FakeRefresher(), configuration: .init(revalidationInterval: .seconds(30)),
                timeSource: time.source
            )
            try await two.upsert(userID: "revoked", tokens: grant("r", issuedAt: time.now))
            try await two.upsert(userID: "reconnected", tokens: grant("c1", issuedAt: time.now))
            #expect(try await a.accessToken(for: "revoked") == "atk_plain_r")
            #expect(try await a.accessToken(for: "reconnected") == "atk_plain_c1")

            // Process B: `tokens revoke` for one user, a new consent for the other.
            try await two.setStatus(.revoked, userID: "revoked")
            try await two.upsert(userID: "reconnected", tokens: grant("c2", issuedAt: time.now))

            time.advance(by: .seconds(29))
            // Still within the bound: the cache may serve what it had.
            #expect(try await a.accessToken(for: "reconnected") == "atk_plain_c1")
            time.advance(by: .seconds(2))
            let error = await #expect(throws: TokenError.self) { try await a.accessToken(for: "revoked") }
            #expect(error?.code == .reauthRequired)
            #expect(try await a.accessToken(for: "reconnected") == "atk_plain_c2")
            // And it stays so (the revoked token is not cached any more).
            await #expect(throws: TokenError.self) { try await a.accessToken(for: "revoked") }
        }
    }
}

@Suite struct RefreshStormTests {
    @Test(arguments: [StoreKind.memory, .sqlite])
    func refreshesOfDifferentUsersRunInParallelAndOncePerUser(kind: StoreKind) async throws {
        try await RefreshStormScenarios.refreshesOfDifferentUsersRunInParallelAndOncePerUser(kind)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func refreshesOfDifferentUsersRunInParallelAndOncePerUserInPostgres() async throws {
        try await RefreshStormScenarios.refreshesOfDifferentUsersRunInParallelAndOncePerUser(.postgres)
    }

    @Test(arguments: [StoreKind.memory, .sqlite])
    func revocationAndReconnectionReachAnotherProcessWithinTheInterval(kind: StoreKind) async throws {
        try await RefreshStormScenarios.revocationAndReconnectionReachAnotherProcessWithinTheInterval(kind)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func revocationAndReconnectionReachAnotherProcessWithinTheIntervalInPostgres() async throws {
        try await RefreshStormScenarios.revocationAndReconnectionReachAnotherProcessWithinTheInterval(.postgres)
    }

    /// A store that does not answer fails the read after the timeout instead of holding the job, and the
    /// readiness check reports it.
    @Test func aStoreThatDoesNotAnswerFailsReadsAfterTheTimeoutAndReadinessSaysSo() async throws {
        let provider = TokenProvider(
            store: HangingStore(), refresher: FakeRefresher(),
            configuration: .init(storeReadTimeout: .milliseconds(200)), logger: Sim.quietLogger
        )
        let error = await #expect(throws: TokenError.self) { try await provider.accessToken(for: "u1") }
        #expect(error?.code == .storeFailure)
        #expect(error?.isRetriable == true)
        let problem = await provider.storeProblem()
        #expect(problem?.contains("did not answer") == true)
    }
}

/// A store whose reads never answer (a database that hangs).
final class HangingStore: TokenStore {
    func get(userID: String) async throws -> TokenRecord? {
        try await Task.sleep(for: .seconds(3600))
        return nil
    }
    func upsert(userID: String, tokens: TokenGrant) async throws -> TokenRecord { throw CancellationError() }
    func delete(userID: String) async throws -> Bool { false }
    func list(after cursor: String?, limit: Int) async throws -> TokenPage { TokenPage(records: [], nextCursor: nil) }
    func setStatus(_ status: TokenStatus, userID: String) async throws -> Bool { false }
    func withExclusiveLock<Value: Sendable>(
        userID: String, _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        try await body(nil).value
    }
    func rekey() async throws -> Int { 0 }
}
