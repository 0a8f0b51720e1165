public import Coordination
import Dispatch
import Foundation
import GRDB
public import ServiceLifecycle

/// The embedded default ``TokenStore``: one SQLite file in WAL mode, tokens encrypted at rest.
///
/// Several processes on one machine may share the file. The per-user lock of
/// ``withExclusiveLock(userID:_:)`` is a lease on the user's row (`refresh_lease_owner`, `refresh_lease_until_ms`),
/// claimed in a short write transaction and released with the write of the result in another: no database lock is
/// held while the body runs (a call to Mio), so refreshes of different users run in parallel and token reads and
/// OAuth writes never wait for Mio. A lease held by someone else is waited for (polling) up to
/// ``Configuration/lockTimeout``. A holder renews its lease while its call runs; one that crashed frees the row
/// when its lease ends (``Configuration/leaseDuration`` after its last renewal), and a holder whose lease ran out
/// and was taken over writes nothing. For many
/// replicas on several machines use ``PostgresTokenStore``.
///
/// The store is open from `init` until ``close()``; as a `Service` in a `ServiceGroup`, its ``run()`` closes it at
/// graceful shutdown.
public final class SQLiteTokenStore: TokenStore, Service {
    /// Settings of the SQLite store.
    public struct Configuration: Sendable {
        /// How long a write waits for another process's write lock, and the refresh lock for another holder's
        /// lease; default 35 s, longer than the Mio client's default request timeout so a waiter outlasts a slow
        /// refresh.
        public var lockTimeout: Duration
        /// How long a refresh lease lasts past its holder's last renewal: the holder renews it every third of
        /// this while its call to Mio runs, so the lease of a holder that crashed ends within this time and the
        /// other replicas' jobs for the user wait no longer (default 15 s).
        public var leaseDuration: Duration
        /// Whether a holder renews its lease while its call runs (default `true`). Without renewal a lease ends
        /// ``leaseDuration`` after its claim, whatever the holder is doing: for tests of a holder that outlives
        /// its lease (one cut off from the database, whose renewals fail).
        public var renewsLease: Bool
        /// The timeouts for a Mio client whose requests time out after `requestTimeout`: a waiter outlasts a
        /// holder's call to Mio; the lease, renewed while the call runs, needs no margin over it.
        /// - Parameter requestTimeout: The Mio client's request timeout.
        /// - Returns: The configuration.
        public static func following(requestTimeout: Duration) -> Self {
            Self(lockTimeout: requestTimeout + .seconds(5))
        }

        /// Creates a configuration.
        public init(lockTimeout: Duration = .seconds(35), leaseDuration: Duration = .seconds(15), renewsLease: Bool = true) {
            self.lockTimeout = lockTimeout
            self.leaseDuration = leaseDuration
            self.renewsLease = renewsLease
        }
    }

    /// The database file.
    public let path: String
    let pool: DatabasePool
    private let keyring: TokenKeyring
    private let configuration: Configuration
    private let timeSource: TimeSource

    /// Opens (creating when missing) the store at `path` and creates or migrates its table.
    /// - Parameters:
    ///   - path: The database file; its `-wal` and `-shm` companions are created beside it.
    ///   - keyring: The keys that encrypt the tokens.
    ///   - configuration: Timeouts.
    ///   - timeSource: The wall clock that stamps `updatedAt` (default: the system's).
    /// - Throws: ``TokenError/Code/storeFailure`` when the file cannot be opened or migrated.
    public init(
        path: String,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        timeSource: TimeSource = .system
    ) throws {
        self.path = path
        self.keyring = keyring
        self.configuration = configuration
        self.timeSource = timeSource
        do {
            var config = GRDB.Configuration()
            config.busyMode = .timeout(configuration.lockTimeout.timeInterval)
            self.pool = try DatabasePool(path: path, configuration: config)
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    try Self.migrate(db)
                    try Self.createOAuthStatesTable(db)
                    return .commit
                }
            }
        } catch {
            throw Self.storeError(error, userID: "", action: "open \(path)")
        }
    }

    /// Waits for graceful shutdown (or cancellation), then closes the store.
    /// - Throws: ``TokenError/Code/storeFailure`` when the database cannot be closed.
    public func run() async throws {
        try? await gracefulShutdown()
        try await close()
    }

    /// Closes the database once the reads and writes under way have ended; every later call fails with
    /// ``TokenError/Code/storeFailure``. Closing again does nothing.
    /// - Throws: ``TokenError/Code/storeFailure`` when the database cannot be closed.
    public func close() async throws {
        let pool = self.pool
        // GRDB's close waits for the reads under way: keep that wait off the cooperative thread pool.
        let result: Result<Void, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { try pool.close() })
            }
        }
        do {
            try result.get()
        } catch {
            throw Self.storeError(error, userID: "", action: "close \(path)")
        }
    }

    private func now() -> Date { timeSource.wallNow() }

    private static func migrate(_ db: Database) throws {
        let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        if version < 1 {
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS mioctx_tokens (
                        user_id TEXT PRIMARY KEY NOT NULL,
                        access_token TEXT NOT NULL,
                        refresh_token TEXT NOT NULL,
                        id_token TEXT,
                        expires_at_ms INTEGER NOT NULL,
                        issued_at_ms INTEGER NOT NULL,
                        status TEXT NOT NULL CHECK (status IN ('active', 'reauth_required', 'revoked')),
                        version INTEGER NOT NULL,
                        updated_at_ms INTEGER NOT NULL
                    );
                    PRAGMA user_version = 1;
                    """
            )
        }
        // The refresh lease (issue 16), keyed on the columns rather than user_version so that it composes with
        // other migrations: added when missing, whatever the version.
        let columns = Set(try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info('mioctx_tokens')"))
        if !columns.contains("refresh_lease_owner") {
            try db.execute(sql: "ALTER TABLE mioctx_tokens ADD COLUMN refresh_lease_owner TEXT")
        }
        if !columns.contains("refresh_lease_until_ms") {
            try db.execute(sql: "ALTER TABLE mioctx_tokens ADD COLUMN refresh_lease_until_ms INTEGER")
        }
        // A refresh sent without a known outcome (``TokenRecord/refreshOutcomeUnknownSince``), seen by every process.
        if !columns.contains("refresh_uncertain_since_ms") {
            try db.execute(sql: "ALTER TABLE mioctx_tokens ADD COLUMN refresh_uncertain_since_ms INTEGER")
        }
    }

    public func get(userID: String) async throws -> TokenRecord? {
        let row = try await run(userID: userID, "read") { [pool] in
            try await pool.read { db in try Self.fetchRow(db, userID: userID) }
        }
        return try row?.decrypted(with: keyring)
    }

    @discardableResult
    public func upsert(userID: String, tokens: TokenGrant) async throws -> TokenRecord {
        let now = now()
        var record = TokenRecord(userID: userID, grant: tokens, now: now)
        let row = try EncryptedTokenRow(record, keyring: keyring)
        record.version = try await writeOutsideLease(userID: userID, "write") { db in try Self.upsertRow(db, row) }
        return record
    }

    @discardableResult
    public func delete(userID: String) async throws -> Bool {
        try await writeOutsideLease(userID: userID, "delete") { db in
            try db.execute(sql: "DELETE FROM mioctx_tokens WHERE user_id = ?", arguments: [userID])
            return db.changesCount > 0
        }
    }

    public func list(after cursor: String?, limit: Int) async throws -> TokenPage {
        let limit = max(1, limit)
        let rows = try await run(userID: "", "list") { [pool] in
            try await pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM mioctx_tokens WHERE user_id > ? ORDER BY user_id LIMIT ?",
                    arguments: [cursor ?? "", limit + 1]
                ).map(Self.decode)
            }
        }
        let records = try rows.prefix(limit).map { try $0.decrypted(with: keyring) }
        return TokenPage(records: records, nextCursor: rows.count > limit ? records.last?.userID : nil)
    }

    @discardableResult
    public func setStatus(_ status: TokenStatus, userID: String) async throws -> Bool {
        let wiped = status == .revoked ? try wipedTokens(userID: userID) : nil
        let now = now().millisecondsSince1970
        return try await writeOutsideLease(userID: userID, "write") { db in
            try Self.updateStatus(db, userID: userID, status: status, wiped: wiped, now: now)
        }
    }

    /// Runs `write` in a write transaction in which no other holder's refresh lease is on the user's row, waiting
    /// (polling) while one is, up to ``Configuration/lockTimeout``: a reconnection, a revocation or a deletion made
    /// during a refresh is applied after that refresh's result, not overwritten by it (PostgreSQL's lease orders
    /// them the same way).
    /// - Throws: ``TokenError/Code/lockTimeout`` when the lease stays held.
    private func writeOutsideLease<T: Sendable>(
        userID: String, _ action: String, _ write: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        let started = ContinuousClock.now
        var pause: Duration = .milliseconds(5)
        while true {
            let now = now().millisecondsSince1970
            let done: T? = try await run(userID: userID, action) { [pool] in
                try await pool.write { db in
                    let leased = try Bool.fetchOne(
                        db,
                        sql: "SELECT refresh_lease_until_ms > ? FROM mioctx_tokens WHERE user_id = ?",
                        arguments: [now, userID]
                    ) ?? false
                    return leased ? nil : try write(db)
                }
            }
            if let done { return done }
            if ContinuousClock.now - started >= configuration.lockTimeout {
                throw TokenError(
                    .lockTimeout, userID: userID,
                    detail: "SQLite \(action): a refresh of this user held its lease for \(configuration.lockTimeout)"
                )
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    public func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        let owner = UUID().uuidString
        let row = try await claimLease(userID: userID, owner: owner)
        let renewal = row != nil && configuration.renewsLease ? Task { await renewLease(userID: userID, owner: owner) } : nil
        defer { renewal?.cancel() }
        do {
            let record = try row?.decrypted(with: keyring)
            let update = try await body(record)
            var statement: (@Sendable (Database) throws -> Void)?
            switch update.write {
            case nil:
                break
            case .tokens(let grant):
                let newRow = try EncryptedTokenRow(TokenRecord(userID: userID, grant: grant, now: now()), keyring: keyring)
                statement = { db in _ = try Self.upsertRow(db, newRow) }
            case .status(let status):
                let wiped = status == .revoked ? try wipedTokens(userID: userID) : nil
                let now = now().millisecondsSince1970
                statement = { db in
                    _ = try Self.updateStatus(db, userID: userID, status: status, wiped: wiped, now: now)
                }
            case .refreshOutcomeUnknown:
                let now = now().millisecondsSince1970
                statement = { db in
                    try db.execute(
                        sql: """
                            UPDATE mioctx_tokens SET refresh_uncertain_since_ms = COALESCE(refresh_uncertain_since_ms, ?)
                            WHERE user_id = ?
                            """,
                        arguments: [now, userID]
                    )
                }
            }
            let write = statement
            let leased = row != nil
            let leaseDuration = configuration.leaseDuration
            try await run(userID: userID, "write under the lease") { [pool] in
                try await pool.write { db in
                    if leased {
                        // The release is the guard: a holder whose lease ran out and was taken over writes nothing
                        // (the newer holder's result, or a write made after the lease ended, stays).
                        try Self.releaseLease(db, userID: userID, owner: owner)
                        guard db.changesCount > 0 || write == nil else {
                            throw TokenError(
                                .lockTimeout, userID: userID,
                                detail: "SQLite write under the lease: the refresh lease ran out (\(leaseDuration)) and "
                                    + "the row was taken over (another holder's lease, or a write made after the "
                                    + "lease); the result was not written"
                            )
                        }
                    }
                    try write?(db)
                }
            }
            return update.value
        } catch {
            releaseLeaseSynchronously(userID: userID, owner: owner)
            throw error
        }
    }

    /// Claims the user's refresh lease in a short write transaction and returns the row as read in it (nil when
    /// the user has none: there is nothing to lease, and nothing to refresh). Waits, polling, while another holder's
    /// lease runs.
    /// - Throws: ``TokenError/Code/lockTimeout`` after ``Configuration/lockTimeout``.
    private func claimLease(userID: String, owner: String) async throws -> EncryptedTokenRow? {
        let started = ContinuousClock.now
        var pause: Duration = .milliseconds(5)
        while true {
            let now = now().millisecondsSince1970
            let until = now + configuration.leaseDuration.wholeMilliseconds
            let claim: (row: EncryptedTokenRow?, claimed: Bool) = try await run(userID: userID, "lock") { [pool] in
                try await pool.write { db in
                    guard let row = try Self.fetchRow(db, userID: userID) else { return (nil, true) }
                    try db.execute(
                        sql: """
                            UPDATE mioctx_tokens SET refresh_lease_owner = ?, refresh_lease_until_ms = ?
                            WHERE user_id = ? AND (refresh_lease_until_ms IS NULL OR refresh_lease_until_ms <= ?)
                            """,
                        arguments: [owner, until, userID, now]
                    )
                    return (row, db.changesCount > 0)
                }
            }
            if claim.claimed { return claim.row }
            if ContinuousClock.now - started >= configuration.lockTimeout {
                throw TokenError(
                    .lockTimeout, userID: userID,
                    detail: "SQLite lock: another refresh of this user held its lease for \(configuration.lockTimeout)"
                )
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    /// Renews the lease while the holder's call runs (``LeaseRenewal``).
    private func renewLease(userID: String, owner: String) async {
        let duration = configuration.leaseDuration
        await LeaseRenewal.run(every: duration) {
            let until = now().millisecondsSince1970 + duration.wholeMilliseconds
            return try? await pool.write { db in
                try db.execute(
                    sql: """
                        UPDATE mioctx_tokens SET refresh_lease_until_ms = ?
                        WHERE user_id = ? AND refresh_lease_owner = ?
                        """,
                    arguments: [until, userID, owner]
                )
                return db.changesCount > 0
            }
        }
    }

    /// Synchronous on purpose: the lease must be released even when the task is cancelled.
    private func releaseLeaseSynchronously(userID: String, owner: String) {
        try? pool.write { db in try Self.releaseLease(db, userID: userID, owner: owner) }
    }

    private static func releaseLease(_ db: Database, userID: String, owner: String) throws {
        try db.execute(
            sql: """
                UPDATE mioctx_tokens SET refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
                WHERE user_id = ? AND refresh_lease_owner = ?
                """,
            arguments: [userID, owner]
        )
    }

    public func rekey() async throws -> Int {
        try await rekeyReport().rewritten
    }

    /// Re-encrypts every row not encrypted with the primary key, skipping (and reporting) a row it cannot decrypt.
    public func rekeyReport() async throws -> RekeyReport {
        let prefix = "v1:\(keyring.primaryKeyID):"
        var report = RekeyReport()
        var cursor = ""
        while true {
            let batch = try await run(userID: "", "rekey") { [pool, keyring, cursor] in
                try await pool.writeWithoutTransaction { db in
                    var batch = RekeyBatch()
                    try db.inTransaction(.immediate) {
                        let rows = try Row.fetchAll(
                            db,
                            sql: """
                                SELECT * FROM mioctx_tokens
                                WHERE user_id > ?2 AND (substr(access_token, 1, length(?1)) <> ?1
                                   OR substr(refresh_token, 1, length(?1)) <> ?1
                                   OR (id_token IS NOT NULL AND substr(id_token, 1, length(?1)) <> ?1))
                                ORDER BY user_id LIMIT 200
                                """,
                            arguments: [prefix, cursor]
                        ).map(Self.decode)
                        for row in rows {
                            batch.last = row.userID
                            guard let new = try? row.reencrypted(with: keyring) else {
                                batch.undecryptable.append(row.userID)
                                continue
                            }
                            try db.execute(
                                sql: """
                                    UPDATE mioctx_tokens SET access_token = ?, refresh_token = ?, id_token = ?
                                    WHERE user_id = ?
                                    """,
                                arguments: [new.accessToken, new.refreshToken, new.idToken, new.userID]
                            )
                            batch.rewritten += 1
                        }
                        return .commit
                    }
                    return batch
                }
            }
            report.rewritten += batch.rewritten
            report.undecryptable += batch.undecryptable
            guard let last = batch.last else { return report }
            cursor = last
        }
    }

    // MARK: - SQL

    private func wipedTokens(userID: String) throws -> (access: String, refresh: String) {
        (
            try keyring.seal("", userID: userID, field: .access),
            try keyring.seal("", userID: userID, field: .refresh)
        )
    }

    private static func fetchRow(_ db: Database, userID: String) throws -> EncryptedTokenRow? {
        // Read on every job: the statement is prepared once per connection and kept (GRDB's statement cache).
        let statement = try db.cachedStatement(sql: "SELECT * FROM mioctx_tokens WHERE user_id = ?")
        return try Row.fetchOne(statement, arguments: [userID]).map(decode)
    }

    private static func decode(_ row: Row) -> EncryptedTokenRow {
        EncryptedTokenRow(
            userID: row["user_id"], accessToken: row["access_token"], refreshToken: row["refresh_token"],
            idToken: row["id_token"], expiresAt: row["expires_at_ms"], issuedAt: row["issued_at_ms"],
            status: row["status"], version: row["version"], updatedAt: row["updated_at_ms"],
            refreshOutcomeUnknownSince: row["refresh_uncertain_since_ms"]
        )
    }

    /// Inserts or replaces the tokens (status active); returns the new version. Like `updateStatus` it clears a
    /// lease on the row: these writes run only under their own lease or when no lease is live, so a lease still
    /// there has ended, and its holder (stalled past it) must find it gone rather than write over this.
    private static func upsertRow(_ db: Database, _ row: EncryptedTokenRow) throws -> Int64 {
        try Int64.fetchOne(
            db,
            sql: """
                INSERT INTO mioctx_tokens (user_id, access_token, refresh_token, id_token, expires_at_ms,
                                           issued_at_ms, status, version, updated_at_ms)
                VALUES (?, ?, ?, ?, ?, ?, 'active', 1, ?)
                ON CONFLICT (user_id) DO UPDATE SET
                    access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                    id_token = excluded.id_token, expires_at_ms = excluded.expires_at_ms,
                    issued_at_ms = excluded.issued_at_ms, status = 'active',
                    version = mioctx_tokens.version + 1, updated_at_ms = excluded.updated_at_ms,
                    refresh_uncertain_since_ms = NULL, refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
                RETURNING version
                """,
            arguments: [
                row.userID, row.accessToken, row.refreshToken, row.idToken, row.expiresAt, row.issuedAt,
                row.updatedAt,
            ]
        ) ?? 1
    }

    private static func updateStatus(
        _ db: Database, userID: String, status: TokenStatus, wiped: (access: String, refresh: String)?, now: Int64
    ) throws -> Bool {
        if let wiped {
            try db.execute(
                sql: """
                    UPDATE mioctx_tokens SET status = ?, version = version + 1, updated_at_ms = ?,
                        access_token = ?, refresh_token = ?, id_token = NULL, refresh_uncertain_since_ms = NULL,
                        refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
                    WHERE user_id = ?
                    """,
                arguments: [status.rawValue, now, wiped.access, wiped.refresh, userID]
            )
        } else {
            try db.execute(
                sql: """
                    UPDATE mioctx_tokens SET status = ?, version = version + 1, updated_at_ms = ?,
                        refresh_uncertain_since_ms = NULL, refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
                    WHERE user_id = ?
                    """,
                arguments: [status.rawValue, now, userID]
            )
        }
        return db.changesCount > 0
    }

    // MARK: - Errors

    private func run<T: Sendable>(
        userID: String, _ action: String, _ operation: () async throws -> T
    ) async throws -> T {
        do {
            return try await operation()
        } catch {
            throw Self.storeError(error, userID: userID, action: action)
        }
    }

    private static func storeError(_ error: any Error, userID: String, action: String) -> TokenError {
        if let error = error as? TokenError { return error }
        if let error = error as? DatabaseError, error.resultCode == .SQLITE_BUSY {
            return TokenError(
                .lockTimeout, userID: userID, detail: "SQLite \(action): the database stayed locked", underlying: error
            )
        }
        let underlying: any Error & Sendable = (error as? DatabaseError) ?? DescribedError(error)
        return TokenError(.storeFailure, userID: userID, detail: "SQLite \(action) failed", underlying: underlying)
    }
}

/// A non-Sendable error reduced to its description (which never holds tokens: statements bind ciphertexts).
struct DescribedError: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ error: any Error) { description = String(describing: error) }
}
