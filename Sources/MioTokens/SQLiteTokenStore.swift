public import Coordination
import Dispatch
import Foundation
import GRDB
public import ServiceLifecycle

/// The embedded default ``TokenStore``: one SQLite file in WAL mode, tokens encrypted at rest.
///
/// Several processes on one machine may share the file. The per-user lock of
/// ``withExclusiveLock(userID:_:)`` is an SQLite write transaction (`BEGIN IMMEDIATE`) on a dedicated
/// connection, waited for up to ``Configuration/lockTimeout``; SQLite locks the whole database, so two
/// refreshes of different users also run one after the other. For many replicas use ``PostgresTokenStore``.
///
/// The store is open from `init` until ``close()``; as a `Service` in a `ServiceGroup`, its ``run()`` closes it at
/// graceful shutdown.
public final class SQLiteTokenStore: TokenStore, Service {
    /// Settings of the SQLite store.
    public struct Configuration: Sendable {
        /// How long a write (and the refresh lock) waits for another process's write lock; default 35 s, longer
        /// than the Mio client's default request timeout so a waiter outlasts a slow refresh.
        public var lockTimeout: Duration
        /// Creates a configuration.
        public init(lockTimeout: Duration = .seconds(35)) {
            self.lockTimeout = lockTimeout
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
        record.version = try await run(userID: userID, "write") { [pool] in
            try await pool.write { db in try Self.upsertRow(db, row) }
        }
        return record
    }

    @discardableResult
    public func delete(userID: String) async throws -> Bool {
        try await run(userID: userID, "delete") { [pool] in
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM mioctx_tokens WHERE user_id = ?", arguments: [userID])
                return db.changesCount > 0
            }
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
        return try await run(userID: userID, "write") { [pool] in
            try await pool.write { db in
                try Self.updateStatus(db, userID: userID, status: status, wiped: wiped, now: now)
            }
        }
    }

    public func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        // A dedicated connection: the transaction stays open while `body` awaits (a call to Mio).
        var config = GRDB.Configuration()
        config.busyMode = .timeout(configuration.lockTimeout.timeInterval)
        config.allowsUnsafeTransactions = true
        let connection: DatabaseQueue
        let row: EncryptedTokenRow?
        do {
            connection = try DatabaseQueue(path: path, configuration: config)
        } catch {
            throw Self.storeError(error, userID: userID, action: "open a lock connection")
        }
        do {
            row = try await connection.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                return try Self.fetchRow(db, userID: userID)
            }
        } catch {
            throw Self.storeError(error, userID: userID, action: "lock")
        }
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
            }
            let write = statement
            try await run(userID: userID, "commit") {
                try await connection.writeWithoutTransaction { db in
                    try write?(db)
                    try db.execute(sql: "COMMIT")
                }
            }
            return update.value
        } catch {
            // Synchronous on purpose: the rollback must run even when the task is cancelled.
            try? connection.inDatabase { db in
                if db.isInsideTransaction { try db.execute(sql: "ROLLBACK") }
            }
            throw error
        }
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
            status: row["status"], version: row["version"], updatedAt: row["updated_at_ms"]
        )
    }

    /// Inserts or replaces the tokens (status active); returns the new version.
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
                    version = mioctx_tokens.version + 1, updated_at_ms = excluded.updated_at_ms
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
                        access_token = ?, refresh_token = ?, id_token = NULL
                    WHERE user_id = ?
                    """,
                arguments: [status.rawValue, now, wiped.access, wiped.refresh, userID]
            )
        } else {
            try db.execute(
                sql: "UPDATE mioctx_tokens SET status = ?, version = version + 1, updated_at_ms = ? WHERE user_id = ?",
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
