import Foundation
import Mio
import MioSimulator
import MioTokens
import Synchronization
import Testing

/// A store whose token writes fail while ``failing`` is set (the write or COMMIT after a refresh, as a store
/// that went away would): the write under the lock and `upsert` throw a retriable `storeFailure`, nothing is
/// written. Reads and status writes pass through.
final class WriteFailingStore: TokenStore {
    let base: any TokenStore
    private let state = Mutex((failing: false, failed: 0))

    init(_ base: any TokenStore) { self.base = base }

    var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    /// Token writes refused so far.
    var failed: Int { state.withLock { $0.failed } }

    private func refuseIfFailing(_ userID: String) throws {
        let refuse = state.withLock { state in
            if state.failing { state.failed += 1 }
            return state.failing
        }
        if refuse {
            throw TokenError(.storeFailure, userID: userID, detail: "injected: the store's write failed")
        }
    }

    func get(userID: String) async throws -> TokenRecord? { try await base.get(userID: userID) }
    func upsert(userID: String, tokens: TokenGrant) async throws -> TokenRecord {
        try refuseIfFailing(userID)
        return try await base.upsert(userID: userID, tokens: tokens)
    }
    func delete(userID: String) async throws -> Bool { try await base.delete(userID: userID) }
    func list(after cursor: String?, limit: Int) async throws -> TokenPage {
        try await base.list(after: cursor, limit: limit)
    }
    func setStatus(_ status: TokenStatus, userID: String) async throws -> Bool {
        try await base.setStatus(status, userID: userID)
    }
    func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        try await base.withExclusiveLock(userID: userID) { record in
            let update = try await body(record)
            if case .tokens = update.write { try self.refuseIfFailing(userID) }
            return update
        }
    }
    func rekey() async throws -> Int { try await base.rekey() }
}

/// Mio through a client that a test can swap (a short request timeout first, a patient one after).
final class SwitchableRefresher: TokenRefreshing {
    private let client: Mutex<MioClient>
    init(_ client: MioClient) { self.client = Mutex(client) }
    func use(_ client: MioClient) { self.client.withLock { $0 = client } }
    func refreshTokens(refreshToken: String) async throws -> MioTokenResponse {
        try await client.withLock { $0 }.refreshTokens(refreshToken: refreshToken)
    }
}

/// The three ways a rotated refresh token used to be lost (issue 16), each with 100 users against the simulator
/// over HTTP and a real store: with a 30 s reuse grace window at Mio no user ends broken; without one, every
/// user that ends broken is reported with the distinct reason `refresh_answer_lost`.
enum TokenLossScenarios {
    static let users = (0..<100).map { "user-\($0)" }

    static func withSetup<T: Sendable>(
        _ kind: StoreKind,
        grace: Duration,
        _ body: (MioSimulator, MioClient, any TokenStore) async throws -> T
    ) async throws -> T {
        var configuration = Sim.configuration()
        configuration.refreshReuseGrace = grace
        return try await MioSimulator.withSimulator(configuration, logger: Sim.quietLogger) { simulator in
            var mioConfiguration = Sim.mioConfiguration(baseURL: simulator.baseURL!)
            mioConfiguration.maxConnections = 128
            return try await MioClient.withClient(configuration: mioConfiguration) { mio in
                try await kind.withFreshStore { store in
                    try await body(simulator, mio, store)
                }
            }
        }
    }

    /// Connects every user; returns their first access tokens.
    static func connectAll(_ simulator: MioSimulator, _ mio: MioClient, _ store: any TokenStore) async throws
        -> [String: String]
    {
        var tokens: [String: String] = [:]
        for user in users {
            tokens[user] = try await Sim.connect(user, simulator: simulator, mio: mio, store: store).accessToken
        }
        return tokens
    }

    /// Refreshes every user (of `users`) at once after a 401 for `rejected[user]`; the outcome per user.
    static func refreshAll(
        _ provider: TokenProvider, rejected: [String: String], users: [String] = users
    ) async -> [String: Result<String, TokenError>] {
        await withTaskGroup(of: (String, Result<String, TokenError>).self) { group in
            for user in users {
                group.addTask {
                    do {
                        return (user, .success(try await provider.refreshAfterUnauthorized(
                            userID: user, rejected: rejected[user] ?? "")))
                    } catch let error as TokenError {
                        return (user, .failure(error))
                    } catch {
                        return (user, .failure(TokenError(.storeFailure, userID: user, detail: "\(error)")))
                    }
                }
            }
            var outcomes: [String: Result<String, TokenError>] = [:]
            for await (user, outcome) in group { outcomes[user] = outcome }
            return outcomes
        }
    }

    /// Another replica (a fresh provider on the same store) refreshes every user: the users it cannot refresh are
    /// the broken ones.
    static func brokenUsers(store: any TokenStore, mio: MioClient) async throws -> [String: TokenError] {
        let replica = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
        var rejected: [String: String] = [:]
        for user in users { rejected[user] = try await store.get(userID: user)?.accessToken ?? "" }
        var broken: [String: TokenError] = [:]
        for (user, outcome) in await refreshAll(replica, rejected: rejected) {
            if case .failure(let error) = outcome { broken[user] = error }
        }
        return broken
    }

    /// Loss 1: Mio rotated, the store did not save. The grant is kept in memory, later refreshes in the process
    /// spend its refresh token, and it is written in the background once the store works again.
    static func rotatedTokensSurviveAFailingStoreWrite(_ kind: StoreKind, grace: Duration) async throws {
        try await withSetup(kind, grace: grace) { simulator, mio, base in
            let first = try await connectAll(simulator, mio, base)
            let store = WriteFailingStore(base)
            let provider = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
            store.failing = true

            let round1 = await refreshAll(provider, rejected: first)
            var second: [String: String] = [:]
            for (user, outcome) in round1 { second[user] = try outcome.get() }
            #expect(store.failed >= users.count)
            #expect(provider.unsavedGrants.count == users.count)
            // A second refresh while the store still fails spends the newest refresh token, held in memory.
            let round2 = await refreshAll(provider, rejected: second)
            for (_, outcome) in round2 { _ = try outcome.get() }
            #expect(simulator.stats().reuseDetections == 0)

            store.failing = false
            #expect(await provider.finishRefreshes(within: .seconds(60)))
            #expect(provider.unsavedGrants.count == 0)
            #expect(provider.statistics.grantsKeptUnsaved == 2 * users.count)

            let broken = try await brokenUsers(store: base, mio: mio)
            #expect(broken.isEmpty, "\(broken.count) users broken: \(broken.values.first.map { "\($0)" } ?? "")")
            #expect(simulator.stats().reuseDetections == 0)
            #expect(simulator.stats().reusesWithinGrace == 0)
        }
    }

    /// Loss 2: Mio may have rotated, the answer never arrived. The outcome is recorded as unknown; the next
    /// attempt sends the same refresh token once more: answered inside a grace window, else reported as
    /// `refresh_answer_lost`, never as a plain reauth_required.
    static func aRefreshWhoseAnswerIsLostIsRetriedOnceAndReportedDistinctly(
        _ kind: StoreKind, grace: Duration
    ) async throws {
        // The simulator's clock is moved by hand: a dropped answer hangs until the test moves it, and the grace
        // window is measured on it, so that a loaded machine can neither end a hang early nor outlast the window.
        let time = ManualTime(start: Date())
        var configuration = Sim.configuration()
        configuration.refreshReuseGrace = grace
        try await MioSimulator.withSimulator(configuration, logger: Sim.quietLogger, timeSource: time.source) {
            simulator in
            var mioConfiguration = Sim.mioConfiguration(baseURL: simulator.baseURL!)
            mioConfiguration.maxConnections = 128
            try await MioClient.withClient(configuration: mioConfiguration) { mio in
                try await kind.withFreshStore { store in
                    try await lostAnswerRounds(simulator, mio, store, time: time, grace: grace)
                }
            }
        }
    }

    static func lostAnswerRounds(
        _ simulator: MioSimulator, _ mio: MioClient, _ store: any TokenStore, time: ManualTime, grace: Duration
    ) async throws {
        do {
            let first = try await connectAll(simulator, mio, store)
            var faults = simulator.faults()
            faults.refreshAnswerDropRate = 1
            faults.hangMs = 4_000
            try simulator.setFaults(faults)
            var impatient = Sim.mioConfiguration(baseURL: simulator.baseURL!)
            impatient.maxConnections = 128
            impatient.requestTimeout = .seconds(3)
            try await MioClient.withClient(configuration: impatient) { impatientMio in
                let refresher = SwitchableRefresher(impatientMio)
                let provider = TokenProvider(store: store, refresher: refresher, logger: Sim.quietLogger)
                let round1 = await refreshAll(provider, rejected: first)
                for (_, outcome) in round1 {
                    guard case .failure(let error) = outcome else { continue }
                    #expect(error.code == .refreshFailed)
                    #expect(error.isRetriable)
                }
                // Refreshes still on their way to the simulator when the client gave up are dropped too, later.
                #expect(simulator.stats().refreshAnswersDropped > 0)
                #expect(provider.statistics.refreshesUncertain > 0)

                faults.refreshAnswerDropRate = 0
                try simulator.setFaults(faults)
                // Let the dropped requests end at the simulator, so that none arrives after the next attempt.
                time.advance(by: .milliseconds(4_000))
                while simulator.stats().concurrency.current > 0 {
                    time.advance(by: .milliseconds(4_000))
                    try await Task.sleep(for: .milliseconds(20))
                }
                // The same provider (the outcome is recorded in it) tries again, now with a patient client.
                refresher.use(mio)
                let round2 = await refreshAll(provider, rejected: first)
                var lost = 0
                for (user, outcome) in round2 {
                    guard case .failure(let error) = outcome else { continue }
                    #expect(error.code == .refreshAnswerLost, "\(user): \(error)")
                    #expect(try await store.get(userID: user)?.status == .reauthRequired)
                    lost += 1
                }
                #expect(simulator.stats().refreshAnswersDropped > 0)
                if grace > .zero {
                    #expect(lost == 0)
                    #expect(simulator.stats().reusesWithinGrace > 0)
                    #expect(simulator.stats().reuseDetections == 0)
                    let broken = try await brokenUsers(store: store, mio: mio)
                    #expect(broken.isEmpty)
                } else {
                    // Every user whose answer was lost is broken, and each is reported as such.
                    #expect(lost > 0)
                    #expect(lost <= simulator.stats().reuseDetections)
                    #expect(provider.statistics.usersLostToUnansweredRefresh == lost)
                }
            }
        }
    }

    /// Loss 3: shutdown cuts a refresh in half. Refreshes are in flight at Mio (slow) while the store's writes
    /// fail for a moment; shutdown waits, within its grace period, until every new pair is stored, and only then
    /// is the store closed.
    static func shutdownWaitsUntilEveryRefreshedPairIsStored(_ kind: StoreKind, grace: Duration) async throws {
        try await withSetup(kind, grace: grace) { simulator, mio, base in
            let first = try await connectAll(simulator, mio, base)
            var faults = simulator.faults()
            faults.latencyMs = 500
            faults.targets = [.token]
            try simulator.setFaults(faults)
            let store = WriteFailingStore(base)
            store.failing = true
            let provider = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
            let callers = Task { await refreshAll(provider, rejected: first) }
            // Shutdown begins while the refreshes are at Mio; the store recovers a little later.
            while simulator.stats().concurrency.current == 0 { try await Task.sleep(for: .milliseconds(5)) }
            let recovery = Task {
                try await Task.sleep(for: .milliseconds(1_500))
                store.failing = false
            }
            #expect(await provider.finishRefreshes(within: .seconds(60)))
            // The moment it returns the store may close: everything Mio handed out is in it.
            #expect(provider.unsavedGrants.count == 0)
            try await recovery.value
            for (_, outcome) in await callers.value { _ = try outcome.get() }
            faults.latencyMs = 0
            try simulator.setFaults(faults)
            let broken = try await brokenUsers(store: base, mio: mio)
            #expect(broken.isEmpty)
            #expect(simulator.stats().reuseDetections == 0)
        }
    }
}

@Suite struct TokenLossTests {
    static let graces: [Duration] = [.zero, .seconds(30)]

    @Test(arguments: [StoreKind.memory, .sqlite], graces)
    func rotatedTokensSurviveAFailingStoreWrite(kind: StoreKind, grace: Duration) async throws {
        try await TokenLossScenarios.rotatedTokensSurviveAFailingStoreWrite(kind, grace: grace)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage), arguments: graces)
    func rotatedTokensSurviveAFailingStoreWriteInPostgres(grace: Duration) async throws {
        try await TokenLossScenarios.rotatedTokensSurviveAFailingStoreWrite(.postgres, grace: grace)
    }

    @Test(arguments: [StoreKind.memory, .sqlite], graces)
    func aRefreshWhoseAnswerIsLostIsRetriedOnceAndReportedDistinctly(kind: StoreKind, grace: Duration) async throws {
        try await TokenLossScenarios.aRefreshWhoseAnswerIsLostIsRetriedOnceAndReportedDistinctly(kind, grace: grace)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage), arguments: graces)
    func aRefreshWhoseAnswerIsLostIsRetriedOnceAndReportedDistinctlyInPostgres(grace: Duration) async throws {
        try await TokenLossScenarios.aRefreshWhoseAnswerIsLostIsRetriedOnceAndReportedDistinctly(.postgres, grace: grace)
    }

    @Test(arguments: [StoreKind.memory, .sqlite], graces)
    func shutdownWaitsUntilEveryRefreshedPairIsStored(kind: StoreKind, grace: Duration) async throws {
        try await TokenLossScenarios.shutdownWaitsUntilEveryRefreshedPairIsStored(kind, grace: grace)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage), arguments: graces)
    func shutdownWaitsUntilEveryRefreshedPairIsStoredInPostgres(grace: Duration) async throws {
        try await TokenLossScenarios.shutdownWaitsUntilEveryRefreshedPairIsStored(.postgres, grace: grace)
    }

    /// Answers that leave out what a refresh does not need still count as a successful rotation.
    @Test func aTokenAnswerWithoutTokenTypeOrScopeDecodes() throws {
        let body = #"{"access_token":"a","refresh_token":"r","expires_in":"3600"}"#
        let response = try JSONDecoder().decode(MioTokenResponse.self, from: Data(body.utf8))
        #expect(response.accessToken == "a")
        #expect(response.refreshToken == "r")
        #expect(response.expiresIn == 3600)
        #expect(response.tokenType == "Bearer")
        let unrotated = try JSONDecoder().decode(
            MioTokenResponse.self, from: Data(#"{"access_token":"a","expires_in":60,"scope":7}"#.utf8)
        )
        #expect(unrotated.refreshToken == "")
    }
}
