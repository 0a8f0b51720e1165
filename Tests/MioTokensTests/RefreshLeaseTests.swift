import Coordination
import Foundation
import GRDB
import Mio
import MioSimulator
import MioTokens
import PostgresNIO
import Synchronization
import Testing

/// Issue 16: the refresh lock is a lease on the user's row in both stores. On PostgreSQL no pooled connection is
/// held while Mio answers, so refreshes of different users are not capped by the pool; a lease left by a crashed
/// holder ends by itself; a holder whose lease ran out and was taken over does not overwrite what came after it,
/// and the grant Mio handed it is not lost.
enum RefreshLeaseScenarios {
    /// Opens the database of `kind` twice (two "processes"), the first store with `firstLeaseDuration`; `location`
    /// is the SQLite path or the PostgreSQL URL, for raw SQL.
    static func withTwoStores<T: Sendable>(
        _ kind: StoreKind,
        firstLeaseDuration: Duration = .seconds(15),
        firstRenewsLease: Bool = true,
        secondLockTimeout: Duration = .seconds(35),
        _ body: (_ one: any TokenStore, _ two: any TokenStore, _ location: String) async throws -> T
    ) async throws -> T {
        let keyring = TokenKeyring.ephemeral()
        switch kind {
        case .memory:
            throw TestFailure("the in-memory store has no lease")
        case .sqlite:
            return try await withTemporaryDirectory { directory in
                let path = directory.appendingPathComponent("tokens.sqlite").path
                let one = try SQLiteTokenStore(
                    path: path, keyring: keyring,
                    configuration: .init(leaseDuration: firstLeaseDuration, renewsLease: firstRenewsLease)
                )
                let two = try SQLiteTokenStore(
                    path: path, keyring: keyring, configuration: .init(lockTimeout: secondLockTimeout)
                )
                return try await body(one, two, path)
            }
        case .postgres:
            let url = try await TestPostgres.freshSchemaURL()
            return try await PostgresTokenStore.withStore(
                url: url, keyring: keyring,
                configuration: .init(leaseDuration: firstLeaseDuration, renewsLease: firstRenewsLease)
            ) { one in
                try await PostgresTokenStore.withStore(
                    url: url, keyring: keyring, configuration: .init(lockTimeout: secondLockTimeout)
                ) { two in
                    try await body(one, two, url)
                }
            }
        }
    }

    /// Puts a lease of a holder that is gone on the user's row, ending `endsIn` from now (negative: already ended).
    static func leaveLease(_ kind: StoreKind, location: String, userID: String, endsIn: Duration) async throws {
        let offset = endsIn.wholeMilliseconds
        switch kind {
        case .memory:
            throw TestFailure("the in-memory store has no lease")
        case .sqlite:
            let queue = try DatabaseQueue(path: location)
            let until = Int64((Date().timeIntervalSince1970 * 1000).rounded()) + offset
            try await queue.write { db in
                try db.execute(
                    sql: "UPDATE mioctx_tokens SET refresh_lease_owner = 'crashed', refresh_lease_until_ms = ? WHERE user_id = ?",
                    arguments: [until, userID]
                )
            }
            try queue.close()
        case .postgres:
            try await TestPostgres.withClient(url: location) { client in
                _ = try await client.query(
                    """
                    UPDATE mioctx_tokens SET refresh_lease_owner = 'crashed',
                        refresh_lease_until_ms = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + \(offset)
                    WHERE user_id = \(userID)
                    """
                )
            }
        }
    }

    /// The lease owner on the user's row (nil: no lease).
    static func leaseOwner(_ kind: StoreKind, location: String, userID: String) async throws -> String? {
        switch kind {
        case .memory:
            throw TestFailure("the in-memory store has no lease")
        case .sqlite:
            let queue = try DatabaseQueue(path: location)
            defer { try? queue.close() }
            return try await queue.read { db in
                try String.fetchOne(
                    db, sql: "SELECT refresh_lease_owner FROM mioctx_tokens WHERE user_id = ?", arguments: [userID]
                )
            }
        case .postgres:
            return try await TestPostgres.withClient(url: location) { client in
                var owner: String?
                for try await value in try await client.query(
                    "SELECT refresh_lease_owner FROM mioctx_tokens WHERE user_id = \(userID)"
                ).decode(String?.self) {
                    owner = value
                }
                return owner
            }
        }
    }

    /// A holder that crashed mid-refresh left its lease: while it runs, a refresh and a reconnection of the user
    /// wait for it (and give up with lock_timeout); once it has ended, the next refresh takes the row over.
    static func aLeaseLeftByACrashedHolderIsTakenOverOnceItEnds(_ kind: StoreKind) async throws {
        try await withTwoStores(kind, secondLockTimeout: .milliseconds(300)) { one, two, location in
            try await one.upsert(userID: "u", tokens: grant("0"))
            try await leaveLease(kind, location: location, userID: "u", endsIn: .seconds(60))

            let mio = FakeRefresher()
            let provider = TokenProvider(store: two, refresher: mio, logger: Sim.quietLogger)
            let refreshError = await #expect(throws: TokenError.self) {
                try await provider.refreshAfterUnauthorized(userID: "u", rejected: "atk_plain_0")
            }
            #expect(refreshError?.code == .lockTimeout)
            let writeError = await #expect(throws: TokenError.self) {
                try await two.upsert(userID: "u", tokens: grant("reconnected"))
            }
            #expect(writeError?.code == .lockTimeout)
            #expect(mio.calls == 0)

            // The crashed holder's lease has ended (as it does leaseDuration after its claim).
            try await leaveLease(kind, location: location, userID: "u", endsIn: .milliseconds(-1))
            let token = try await provider.refreshAfterUnauthorized(userID: "u", rejected: "atk_plain_0")
            #expect(token == "atk_new_1")
            #expect(mio.spentRefreshTokens == ["rtk_plain_0"])
            let record = try #require(try await one.get(userID: "u"))
            #expect(record.accessToken == "atk_new_1")
            #expect(record.refreshToken == "rtk_new_1")
            #expect(try await leaseOwner(kind, location: location, userID: "u") == nil, "the lease was not released")
        }
    }

    /// A holder renews its lease while its call to Mio runs, so the lease can be short: a crashed holder's ends
    /// soon (the other replicas' jobs for the user waited 45 s for it before), and a live holder whose call
    /// outlasts the lease's duration keeps it. Here A's refresh is held at Mio for two and a half lease durations;
    /// a reconnection still waits for A's lease and gives up, A's result is written, and the lease is released.
    /// The lease is 3 s (renewed every second): a loaded test machine can delay a renewal by much of a second.
    static func aHolderRenewsItsLeaseWhileItsCallRuns(_ kind: StoreKind) async throws {
        try await withTwoStores(kind, firstLeaseDuration: .seconds(3), secondLockTimeout: .milliseconds(300)) {
            one, two, location in
            try await one.upsert(userID: "u", tokens: grant("0"))
            let gate = GatedRefresher()
            let a = TokenProvider(store: one, refresher: gate, logger: Sim.quietLogger)
            let refresh = Task { try await a.refreshAfterUnauthorized(userID: "u", rejected: "atk_plain_0") }
            await gate.waitUntilCalled()
            try await Task.sleep(for: .milliseconds(7500))

            let error = await #expect(throws: TokenError.self, "A's lease ended while A was refreshing") {
                try await two.upsert(userID: "u", tokens: grant("reconnected"))
            }
            #expect(error?.code == .lockTimeout)
            #expect(try await leaseOwner(kind, location: location, userID: "u") != nil)

            gate.answer()
            #expect(try await refresh.value == "atk_gated")
            await a.finishRefreshes()
            #expect(a.unsavedGrants.count == 0, "A's write was refused: its lease had ended")
            let record = try #require(try await two.get(userID: "u"))
            #expect(record.accessToken == "atk_gated")
            #expect(record.refreshToken == "rtk_gated")
            #expect(try await leaseOwner(kind, location: location, userID: "u") == nil, "the lease was not released")
        }
    }

    enum Takeover: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Another process stores a new consent once the lease has ended.
        case reconnection
        /// Another process's refresh takes the lease over and Mio refuses the spent refresh token.
        case refreshRefused
        var testDescription: String { rawValue }
    }

    /// Process A's refresh is at Mio longer than its lease lasts (a stalled process); process B takes the row over
    /// once the lease has ended. Then Mio answers A: A's result must not overwrite B's newer reconnection, and A's
    /// grant, the only copy of the rotated refresh token, must not be lost when B's refresh was refused (the row is
    /// reauth_required from the refresh token A spent): A's background writer stores it.
    static func aHolderWhoseLeaseRanOutDoesNotOverwriteTheNewerWrite(_ kind: StoreKind, _ takeover: Takeover) async throws {
        // A holder whose renewals fail (cut off from the database) is one that does not renew.
        try await withTwoStores(kind, firstLeaseDuration: .seconds(1), firstRenewsLease: false) { one, two, _ in
            try await two.upsert(userID: "u", tokens: grant("0"))
            let gate = GatedRefresher()
            let a = TokenProvider(store: one, refresher: gate, logger: Sim.quietLogger)
            let refresh = Task { try await a.refreshAfterUnauthorized(userID: "u", rejected: "atk_plain_0") }
            await gate.waitUntilCalled()

            // B waits for A's lease to end (1 s), then writes.
            switch takeover {
            case .reconnection:
                let record = try await two.upsert(userID: "u", tokens: grant("reconnected"))
                #expect(record.version == 2)
            case .refreshRefused:
                let refused = FakeRefresher(
                    .fail(TokenProviderTests.tokenEndpointError(.invalidGrant, status: 400, oauth: "invalid_grant"))
                )
                let b = TokenProvider(store: two, refresher: refused, logger: Sim.quietLogger)
                let error = await #expect(throws: TokenError.self) {
                    try await b.refreshAfterUnauthorized(userID: "u", rejected: "atk_plain_0")
                }
                #expect(error?.code == .reauthRequired)
                #expect(refused.spentRefreshTokens == ["rtk_plain_0"])
                #expect(try await two.get(userID: "u")?.status == .reauthRequired)
            }

            gate.answer()
            // A got Mio's answer: its caller is served with it, whatever the store says.
            #expect(try await refresh.value == "atk_gated")
            await a.finishRefreshes()
            #expect(a.unsavedGrants.count == 0)
            let record = try #require(try await two.get(userID: "u"))
            switch takeover {
            case .reconnection:
                #expect(record.accessToken == "atk_plain_reconnected", "the expired holder overwrote the reconnection")
                #expect(record.refreshToken == "rtk_plain_reconnected")
                #expect(record.status == .active)
            case .refreshRefused:
                #expect(record.accessToken == "atk_gated", "the grant Mio handed the expired holder was lost")
                #expect(record.refreshToken == "rtk_gated")
                #expect(record.status == .active)
            }
        }
    }

    /// Process wide: with a PostgreSQL pool of 4 connections, 24 users' refreshes are all at Mio at once (the row
    /// lock of the first version held a connection across the call, capped at 3 of 4), and token reads are served
    /// meanwhile. The simulator holds every refresh (its clock is moved by hand), so the count does not depend on
    /// how fast the machine is.
    static func refreshesAreNotCappedByThePostgresPool() async throws {
        let users = (0..<24).map { "pool-\($0)" }
        let time = ManualTime(start: Date())
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger, timeSource: time.source) {
            simulator in
            var configuration = Sim.mioConfiguration(baseURL: simulator.baseURL!)
            configuration.maxConnections = 64
            try await MioClient.withClient(configuration: configuration) { mio in
                let url = try await TestPostgres.freshSchemaURL()
                try await PostgresTokenStore.withStore(
                    url: url, keyring: .ephemeral(), configuration: .init(maximumConnections: 4)
                ) { store in
                    var rejected: [String: String] = [:]
                    for user in users {
                        rejected[user] = try await Sim.connect(user, simulator: simulator, mio: mio, store: store)
                            .accessToken
                    }
                    try await store.upsert(userID: "reader", tokens: grant("reader"))
                    var faults = simulator.faults()
                    faults.latencyMs = 20_000
                    faults.targets = [.token]
                    try simulator.setFaults(faults)
                    simulator.resetStats()

                    let provider = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
                    let rejectedTokens = rejected
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for user in users {
                            group.addTask {
                                _ = try await provider.refreshAfterUnauthorized(
                                    userID: user, rejected: rejectedTokens[user]!)
                            }
                        }
                        // Wait (real time, generously) for every refresh to reach Mio; capped, only 3 would.
                        let deadline = ContinuousClock.now + .seconds(30)
                        while simulator.stats().concurrency.current < users.count, ContinuousClock.now < deadline {
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        #expect(
                            simulator.stats().concurrency.current == users.count,
                            "refreshes at Mio at once: \(simulator.stats().concurrency.current) of \(users.count)"
                        )
                        // Token reads find a connection while every refresh waits for Mio.
                        for _ in 0..<8 {
                            #expect(try await store.get(userID: "reader")?.accessToken == "atk_plain_reader")
                        }
                        #expect(simulator.stats().concurrency.current == users.count)
                        time.advance(by: .milliseconds(20_000))
                        try await group.waitForAll()
                    }
                    let stats = simulator.stats()
                    #expect(stats.refreshesByUser.count == users.count)
                    #expect(stats.refreshesByUser.values.allSatisfy { $0 == 1 })
                    #expect(stats.reuseDetections == 0)
                    for user in users {
                        let record = try #require(try await store.get(userID: user))
                        #expect(record.accessToken != rejected[user])
                        #expect(record.status == .active)
                    }
                }
            }
        }
    }

    /// A table made by an older mioctx (schema version 1: no uncertain mark, no lease columns) gets the columns
    /// at start, and a refresh then runs under a lease.
    static func anOlderTableGetsTheLeaseColumns() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        try await TestPostgres.withClient(url: url) { client in
            _ = try await client.query(
                """
                CREATE TABLE mioctx_tokens (
                    user_id TEXT PRIMARY KEY, access_token TEXT NOT NULL, refresh_token TEXT NOT NULL, id_token TEXT,
                    expires_at_ms BIGINT NOT NULL, issued_at_ms BIGINT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('active', 'reauth_required', 'revoked')),
                    version BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL
                )
                """
            )
            _ = try await client.query(
                """
                CREATE TABLE mioctx_schema_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
                """
            )
            _ = try await client.query("INSERT INTO mioctx_schema_migrations (version) VALUES (1)")
        }
        try await PostgresTokenStore.withStore(url: url, keyring: .ephemeral()) { store in
            try await store.upsert(userID: "u", tokens: grant("0"))
            let provider = TokenProvider(store: store, refresher: FakeRefresher(), logger: Sim.quietLogger)
            #expect(try await provider.refreshAfterUnauthorized(userID: "u", rejected: "atk_plain_0") == "atk_new_1")
            #expect(try await store.get(userID: "u")?.refreshToken == "rtk_new_1")
        }
        let columns = try await TestPostgres.withClient(url: url) { client in
            var names: Set<String> = []
            for try await name in try await client.query(
                """
                SELECT column_name::TEXT FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'mioctx_tokens'
                """
            ).decode(String.self) {
                names.insert(name)
            }
            return names
        }
        #expect(columns.isSuperset(of: ["refresh_lease_owner", "refresh_lease_until_ms", "refresh_uncertain_since_ms"]))
    }
}

/// A Mio token endpoint that holds the first refresh until ``answer()``, then rotates to `atk_gated`/`rtk_gated`.
final class GatedRefresher: TokenRefreshing {
    private let called = AsyncStream.makeStream(of: Void.self)
    private let answered = AsyncStream.makeStream(of: Void.self)

    func refreshTokens(refreshToken: String) async throws -> MioTokenResponse {
        called.continuation.yield()
        for await _ in answered.stream { break }
        return MioTokenResponse(accessToken: "atk_gated", refreshToken: "rtk_gated", expiresIn: 3600)
    }

    /// Returns once a refresh has reached the endpoint.
    func waitUntilCalled() async {
        for await _ in called.stream { break }
    }

    /// Lets the held refresh answer.
    func answer() {
        answered.continuation.yield()
        answered.continuation.finish()
    }
}

@Suite struct RefreshLeaseTests {
    @Test(arguments: [StoreKind.sqlite])
    func aLeaseLeftByACrashedHolderIsTakenOverOnceItEnds(kind: StoreKind) async throws {
        try await RefreshLeaseScenarios.aLeaseLeftByACrashedHolderIsTakenOverOnceItEnds(kind)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func aLeaseLeftByACrashedHolderIsTakenOverOnceItEndsInPostgres() async throws {
        try await RefreshLeaseScenarios.aLeaseLeftByACrashedHolderIsTakenOverOnceItEnds(.postgres)
    }

    @Test func aHolderRenewsItsLeaseWhileItsCallRunsInSQLite() async throws {
        try await RefreshLeaseScenarios.aHolderRenewsItsLeaseWhileItsCallRuns(.sqlite)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func aHolderRenewsItsLeaseWhileItsCallRunsInPostgres() async throws {
        try await RefreshLeaseScenarios.aHolderRenewsItsLeaseWhileItsCallRuns(.postgres)
    }

    @Test(arguments: RefreshLeaseScenarios.Takeover.allCases)
    func aHolderWhoseLeaseRanOutDoesNotOverwriteTheNewerWriteInSQLite(takeover: RefreshLeaseScenarios.Takeover)
        async throws
    {
        try await RefreshLeaseScenarios.aHolderWhoseLeaseRanOutDoesNotOverwriteTheNewerWrite(.sqlite, takeover)
    }

    @Test(
        .enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage),
        arguments: RefreshLeaseScenarios.Takeover.allCases
    )
    func aHolderWhoseLeaseRanOutDoesNotOverwriteTheNewerWriteInPostgres(takeover: RefreshLeaseScenarios.Takeover)
        async throws
    {
        try await RefreshLeaseScenarios.aHolderWhoseLeaseRanOutDoesNotOverwriteTheNewerWrite(.postgres, takeover)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func refreshesAreNotCappedByThePostgresPool() async throws {
        try await RefreshLeaseScenarios.refreshesAreNotCappedByThePostgresPool()
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func anOlderPostgresTableGetsTheLeaseColumns() async throws {
        try await RefreshLeaseScenarios.anOlderTableGetsTheLeaseColumns()
    }
}
