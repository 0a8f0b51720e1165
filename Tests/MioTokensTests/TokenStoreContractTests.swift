import Foundation
import MioTokens
import MioctxTestSupport
import Testing

/// The behaviour every ``TokenStore`` must have, run against each backend.
enum TokenStoreContract {
    static func run(_ kind: StoreKind) async throws {
        try await kind.withFreshStore { try await upsertAndGetRoundTrip($0) }
        try await kind.withFreshStore { try await upsertReplacesTokensAndBumpsVersion($0) }
        try await kind.withFreshStore { try await statusChangesPersistAndRevokeWipesTokens($0) }
        try await kind.withFreshStore { try await listPagesInUserOrder($0) }
        try await kind.withFreshStore { try await deleteRemovesTheRecord($0) }
        try await kind.withFreshStore { try await lockedUpdateWritesBeforeRelease($0) }
        try await kind.withFreshStore { try await lockBodyErrorWritesNothing($0) }
        try await kind.withFreshStore { try await lockSerializesHoldersOfOneUser($0) }
    }

    static func upsertAndGetRoundTrip(_ store: any TokenStore) async throws {
        #expect(try await store.get(userID: "u1") == nil)
        let issued = Date(timeIntervalSince1970: 1_800_000_000.123)
        let stored = try await store.upsert(userID: "u1", tokens: grant("1", issuedAt: issued))
        let read = try #require(try await store.get(userID: "u1"))
        #expect(read == stored)
        #expect(read.accessToken == "atk_plain_1")
        #expect(read.refreshToken == "rtk_plain_1")
        #expect(read.idToken == "idt_plain_1")
        #expect(read.issuedAt == issued.addingTimeInterval(0))
        #expect(read.expiresAt.timeIntervalSince(read.issuedAt) == 3600)
        #expect(read.status == .active)
        #expect(read.version == 1)
    }

    static func upsertReplacesTokensAndBumpsVersion(_ store: any TokenStore) async throws {
        try await store.upsert(userID: "u1", tokens: grant("1"))
        try await store.markReauthRequired(userID: "u1")
        let second = try await store.upsert(userID: "u1", tokens: grant("2"))
        #expect(second.version == 3)
        let read = try #require(try await store.get(userID: "u1"))
        #expect(read.refreshToken == "rtk_plain_2")
        #expect(read.status == .active)
        #expect(read.version == 3)
    }

    static func statusChangesPersistAndRevokeWipesTokens(_ store: any TokenStore) async throws {
        #expect(try await store.markReauthRequired(userID: "nobody") == false)
        try await store.upsert(userID: "u1", tokens: grant("1"))
        #expect(try await store.markReauthRequired(userID: "u1"))
        #expect(try await store.get(userID: "u1")?.status == .reauthRequired)
        #expect(try await store.get(userID: "u1")?.refreshToken == "rtk_plain_1")
        #expect(try await store.setStatus(.revoked, userID: "u1"))
        let revoked = try #require(try await store.get(userID: "u1"))
        #expect(revoked.status == .revoked)
        #expect(revoked.accessToken.isEmpty && revoked.refreshToken.isEmpty && revoked.idToken == nil)
    }

    static func listPagesInUserOrder(_ store: any TokenStore) async throws {
        let users = (0..<7).map { "user-\($0)" }.shuffled()
        for user in users { try await store.upsert(userID: user, tokens: grant(user)) }
        var seen: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await store.list(after: cursor, limit: 3)
            #expect(page.records.count <= 3)
            seen += page.records.map(\.userID)
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil
        #expect(seen == users.sorted())
        #expect(pages == 3)
        #expect(try await store.all(pageSize: 2).map(\.accessToken) == users.sorted().map { "atk_plain_\($0)" })
    }

    static func deleteRemovesTheRecord(_ store: any TokenStore) async throws {
        try await store.upsert(userID: "u1", tokens: grant("1"))
        #expect(try await store.delete(userID: "u1"))
        #expect(try await store.delete(userID: "u1") == false)
        #expect(try await store.get(userID: "u1") == nil)
    }

    static func lockedUpdateWritesBeforeRelease(_ store: any TokenStore) async throws {
        try await store.upsert(userID: "u1", tokens: grant("1"))
        let seen = try await store.withExclusiveLock(userID: "u1") { record in
            LockedUpdate.store(grant("2"), returning: record?.accessToken)
        }
        #expect(seen == "atk_plain_1")
        let read = try #require(try await store.get(userID: "u1"))
        #expect(read.accessToken == "atk_plain_2")
        #expect(read.version == 2)
        let missing = try await store.withExclusiveLock(userID: "nobody") { record in
            LockedUpdate.keep(record == nil)
        }
        #expect(missing)
        try await store.withExclusiveLock(userID: "u1") { _ in LockedUpdate.setStatus(.reauthRequired, returning: ()) }
        #expect(try await store.get(userID: "u1")?.status == .reauthRequired)
    }

    static func lockBodyErrorWritesNothing(_ store: any TokenStore) async throws {
        try await store.upsert(userID: "u1", tokens: grant("1"))
        await #expect(throws: TestFailure.self) {
            try await store.withExclusiveLock(userID: "u1") { _ -> LockedUpdate<Void> in
                throw TestFailure("body failed")
            }
        }
        #expect(try await store.get(userID: "u1")?.version == 1)
        // The lock was released: another holder gets it.
        try await store.withExclusiveLock(userID: "u1") { _ in LockedUpdate.store(grant("2"), returning: ()) }
        #expect(try await store.get(userID: "u1")?.accessToken == "atk_plain_2")
    }

    /// Holders of one user's lock never overlap, and each sees the previous holder's write.
    static func lockSerializesHoldersOfOneUser(_ store: any TokenStore) async throws {
        try await store.upsert(userID: "u1", tokens: grant("0"))
        let inside = Gauge()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await store.withExclusiveLock(userID: "u1") { record in
                        inside.enter()
                        await Task.yield()
                        try await Task.sleep(for: .milliseconds(5))
                        inside.leave()
                        let next = Int(record!.accessToken.dropFirst("atk_plain_".count))! + 1
                        return .store(grant("\(next)"), returning: ())
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(inside.peak == 1)
        #expect(try await store.get(userID: "u1")?.accessToken == "atk_plain_8")
        #expect(try await store.get(userID: "u1")?.version == 9)
    }
}

@Suite struct TokenStoreTests {
    @Test(arguments: [StoreKind.memory, .sqlite])
    func storeKeepsTheTokenStoreContract(kind: StoreKind) async throws {
        try await TokenStoreContract.run(kind)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresStoreKeepsTheTokenStoreContract() async throws {
        try await TokenStoreContract.run(.postgres)
    }

    /// While one holder keeps a user's lock, another store on the same database gives up with lock_timeout.
    static func lockTimeoutIsReported(holder: any TokenStore, contender: any TokenStore) async throws {
        try await holder.upsert(userID: "u1", tokens: grant("1"))
        let (entered, enteredContinuation) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseContinuation) = AsyncStream.makeStream(of: Void.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await holder.withExclusiveLock(userID: "u1") { _ in
                    enteredContinuation.yield()
                    for await _ in release { break }
                    return .keep(())
                }
            }
            for await _ in entered { break }
            let error = await #expect(throws: TokenError.self) {
                try await contender.withExclusiveLock(userID: "u1") { _ in LockedUpdate.keep(()) }
            }
            #expect(error?.code == .lockTimeout)
            #expect(error?.isRetriable == true)
            releaseContinuation.yield()
            releaseContinuation.finish()
            try await group.waitForAll()
        }
        // Once released, the lock is available again.
        try await contender.withExclusiveLock(userID: "u1") { _ in LockedUpdate.store(grant("2"), returning: ()) }
        #expect(try await holder.get(userID: "u1")?.accessToken == "atk_plain_2")
    }

    @Test func sqliteLockTimesOutWhileAnotherProcessHoldsIt() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let keyring = TokenKeyring.ephemeral()
            try await Self.lockTimeoutIsReported(
                holder: try SQLiteTokenStore(path: path, keyring: keyring),
                contender: try SQLiteTokenStore(
                    path: path, keyring: keyring, configuration: .init(lockTimeout: .milliseconds(200))
                )
            )
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func openingAPostgresStoreLogsNoWarning() async throws {
        // The pool's run() starts before the migration's first query; PostgresNIO warned at every start before.
        let url = try await TestPostgres.freshSchemaURL()
        let lines = RecordingLogHandler.Store()
        try await PostgresTokenStore.withStore(
            url: url, keyring: .ephemeral(), logger: .recording("postgres-store", into: lines)
        ) { store in
            let record = try await store.get(userID: "nobody")
            #expect(record == nil)
        }
        let warnings = lines.all.filter { $0.hasPrefix("warning") || $0.hasPrefix("error") || $0.hasPrefix("critical") }
        #expect(warnings.isEmpty, "\(warnings)")
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresLockTimesOutWhileAnotherReplicaHoldsIt() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        let keyring = TokenKeyring.ephemeral()
        try await PostgresTokenStore.withStore(url: url, keyring: keyring) { holder in
            try await PostgresTokenStore.withStore(
                url: url, keyring: keyring, configuration: .init(lockTimeout: .milliseconds(200))
            ) { contender in
                try await Self.lockTimeoutIsReported(holder: holder, contender: contender)
            }
        }
    }

    @Test func storeLocationParsesSQLiteAndPostgresAndHidesThePassword() throws {
        #expect(try TokenStoreLocation(parsing: "sqlite:/tmp/x.sqlite") == .sqlite(path: "/tmp/x.sqlite"))
        let postgres = try TokenStoreLocation(parsing: "postgres://u:secret@127.0.0.1:5432/db")
        #expect(postgres == .postgres(url: "postgres://u:secret@127.0.0.1:5432/db"))
        #expect(!postgres.description.contains("secret"))
        #expect(throws: TokenError.self) { try TokenStoreLocation(parsing: "mysql://x") }
        #expect(throws: TokenError.self) { try TokenStoreLocation(parsing: "sqlite:") }
    }

    @Test func recordDescriptionsNeverShowTokens() {
        let record = TokenRecord(
            userID: "u1", accessToken: "atk_secret", refreshToken: "rtk_secret", idToken: "idt_secret",
            expiresAt: Date(), issuedAt: Date(), updatedAt: Date()
        )
        var dumped = ""
        dump(record, to: &dumped)
        for text in [String(describing: record), String(reflecting: record), dumped, "\(grant("secret"))"] {
            #expect(!text.contains("secret"), "\(text)")
        }
    }
}
