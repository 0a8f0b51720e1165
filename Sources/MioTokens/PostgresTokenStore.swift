#if PostgreSQL
public import Coordination
import Foundation
public import Logging
public import PostgresNIO
public import ServiceLifecycle

/// The ``TokenStore`` for several replicas: PostgreSQL through a pool of connections (`PostgresClient`),
/// tokens encrypted at rest.
///
/// The per-user lock of ``withExclusiveLock(userID:_:)`` is a lease on the user's row (`refresh_lease_owner`,
/// `refresh_lease_until_ms`), claimed by one `UPDATE` and released with the write of the result in a short
/// transaction: no connection is held while the body runs (a call to Mio), so refreshes of different users run
/// in parallel, as many as there are jobs waiting for them, and token reads never wait for a connection that a
/// refresh holds. A lease held by someone else is waited for (polling) up to ``Configuration/lockTimeout``. A
/// holder renews its lease while its call runs; one that crashed frees the row when its lease ends
/// (``Configuration/leaseDuration`` after its last renewal, by the server's clock), and a holder whose lease ran out
/// and was taken over writes nothing. `upsert`, `setStatus` and `delete` wait
/// likewise, so a write made during a refresh is applied after its result. There are no session-level locks or
/// settings, so the store works behind PgBouncer in transaction mode. The table (`mioctx_tokens`) is created or
/// migrated by ``migrate()``, under a transaction-level advisory lock so that replicas starting together do not race.
///
/// The client must run: use ``withStore(url:keyring:configuration:timeSource:logger:_:)``, or run the store as a
/// `Service` (its ``run()`` runs the connection pool until graceful shutdown or ``close()``) and call ``migrate()``
/// before use.
///
/// The SQL (queries, rows, error mapping) is in `PostgresTokenStore+SQL.swift`, the URL parsing and the schema
/// migrations beside it.
public final class PostgresTokenStore: TokenStore, Service {
    /// Settings of the PostgreSQL store.
    public struct Configuration: Sendable {
        /// How long the refresh lock (and a write) waits for another holder's lease; default 35 s, longer than
        /// the Mio client's default request timeout so a waiter outlasts a slow refresh.
        public var lockTimeout: Duration
        /// The bound on each statement of the short transactions of `upsert`, `setStatus` and `delete`, which
        /// lock the row while they check for a lease (`statement_timeout`, `SET LOCAL`); default 40 s. The
        /// refresh's own statements (claim, write-and-release) are single statements outside a transaction.
        public var statementTimeout: Duration
        /// How long those transactions may sit idle (`idle_in_transaction_session_timeout`); default 60 s.
        public var idleInTransactionTimeout: Duration
        /// How long a refresh lease lasts past its holder's last renewal: the holder renews it every third of
        /// this while its call to Mio runs, so the lease of a holder that crashed ends within this time and the
        /// other replicas' jobs for the user wait no longer (default 15 s).
        public var leaseDuration: Duration
        /// Whether a holder renews its lease while its call runs (default `true`). Without renewal a lease ends
        /// ``leaseDuration`` after its claim, whatever the holder is doing: for tests of a holder that outlives
        /// its lease (one cut off from the database, whose renewals fail).
        public var renewsLease: Bool
        /// The most connections the pool opens; default 16. No connection is held across a call to Mio.
        public var maximumConnections: Int

        /// The timeouts for a Mio client whose requests time out after `requestTimeout`: the lock wait outlasts a
        /// holder's call to Mio; the lease, renewed while the call runs, needs no margin over it.
        /// - Parameters:
        ///   - requestTimeout: The Mio client's request timeout.
        ///   - maximumConnections: The pool size.
        /// - Returns: The configuration.
        public static func following(
            requestTimeout: Duration,
            maximumConnections: Int = TokenStoreLocation.defaultPostgresPoolSize
        ) -> Self {
            Self(
                lockTimeout: requestTimeout + .seconds(5),
                statementTimeout: requestTimeout + .seconds(10),
                idleInTransactionTimeout: requestTimeout + .seconds(15),
                maximumConnections: maximumConnections
            )
        }

        /// Creates a configuration.
        public init(
            lockTimeout: Duration = .seconds(35),
            statementTimeout: Duration = .seconds(40),
            idleInTransactionTimeout: Duration = .seconds(60),
            leaseDuration: Duration = .seconds(15),
            renewsLease: Bool = true,
            maximumConnections: Int = TokenStoreLocation.defaultPostgresPoolSize
        ) {
            self.lockTimeout = lockTimeout
            self.statementTimeout = statementTimeout
            self.idleInTransactionTimeout = idleInTransactionTimeout
            self.leaseDuration = leaseDuration
            self.renewsLease = renewsLease
            self.maximumConnections = maximumConnections
        }
    }

    let client: PostgresClient
    let keyring: TokenKeyring
    let configuration: Configuration
    let timeSource: TimeSource
    let logger: Logger
    /// Where the pool is in its life; ``close()`` waits on it until ``run()`` has returned.
    private let phase = WaitableState<Phase, PhaseWake>(.idle)

    private enum Phase {
        case idle, running, closing, closed
    }

    private enum PhaseWake {
        case changed, reached, cancelled
    }

    /// Creates a store over `client`; nothing is started.
    /// - Parameters:
    ///   - client: The PostgreSQL client; the store runs it (see ``run()``).
    ///   - keyring: The keys that encrypt the tokens.
    ///   - configuration: Timeouts and pool size.
    ///   - timeSource: The wall clock that stamps `updatedAt` (default: the system's).
    ///   - logger: For the store's queries.
    public init(
        client: PostgresClient,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        timeSource: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.tokens.postgres")
    ) {
        self.client = client
        self.keyring = keyring
        self.configuration = configuration
        self.timeSource = timeSource
        self.logger = logger
    }

    /// Creates a store for a `postgres://user:password@host:port/database?sslmode=disable|prefer|require` URL
    /// (an optional `search_path=SCHEMA` query item selects the schema); nothing is started (see ``run()``).
    /// - Parameters:
    ///   - url: The database URL; its password never appears in errors or logs.
    ///   - keyring: The keys that encrypt the tokens.
    ///   - configuration: Timeouts and pool size.
    ///   - timeSource: The wall clock that stamps `updatedAt` (default: the system's).
    ///   - logger: For the pool's background messages and the store's queries.
    /// - Throws: ``TokenError/Code/invalidInput`` for a malformed URL.
    public convenience init(
        url: String,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        timeSource: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.tokens.postgres")
    ) throws {
        var clientConfiguration = try Self.clientConfiguration(url: url)
        clientConfiguration.options.maximumConnections = configuration.maximumConnections
        self.init(
            client: PostgresClient(configuration: clientConfiguration, backgroundLogger: logger),
            keyring: keyring, configuration: configuration, timeSource: timeSource, logger: logger
        )
    }

    /// Runs the connection pool until the task is cancelled, the service group shuts down, or ``close()`` is
    /// called. A second call, or a call after ``close()``, returns at once.
    public func run() async {
        let starts = phase.withLock { phase, _ -> Bool in
            guard phase == .idle else { return false }
            phase = .running
            return true
        }
        guard starts else { return }
        await withTaskGroup(of: Void.self) { group in
            // Started immediately, so that the pool counts as running before the first query: PostgresNIO logs a
            // warning ("`PostgresClient.run()` hasn't been called yet") at every start otherwise.
            if #available(macOS 26, *) {
                group.addImmediateTask { await self.client.run() }
            } else {
                group.addTask { await self.client.run() }
            }
            group.addTask { _ = await self.waitForPhase { $0 == .closing } }
            // The pool ends (cancellation, graceful shutdown) or close() is called: stop the other.
            _ = await group.next()
            group.cancelAll()
        }
        phase.withLock { phase, waiters in
            phase = .closed
            waiters.wakeAll(with: .changed)
        }
    }

    /// Closes the connection pool and waits until ``run()`` has returned; queries after it fail. Closing again,
    /// or a store whose pool never ran, returns at once. Returns early if the calling task is cancelled.
    public func close() async {
        phase.withLock { phase, waiters in
            switch phase {
            case .idle:
                phase = .closed
            case .running:
                phase = .closing
                waiters.wakeAll(with: .changed)
            case .closing, .closed:
                break
            }
        }
        _ = await waitForPhase { $0 == .closed }
    }

    /// Waits until the phase satisfies `reached`; false when the task was cancelled first.
    private func waitForPhase(_ reached: (Phase) -> Bool) async -> Bool {
        while true {
            switch await phase.wait(cancelled: .cancelled, { reached($0) ? .reached : nil }) {
            case .reached: return true
            case .changed: continue
            case .cancelled: return false
            }
        }
    }

    /// Opens a store for `url`, runs its pool, migrates the table, and runs `body` with it; the pool is shut down
    /// when `body` returns or throws.
    /// - Parameters:
    ///   - url: The database URL.
    ///   - keyring: The keys that encrypt the tokens.
    ///   - configuration: Timeouts and pool size.
    ///   - timeSource: The wall clock that stamps `updatedAt` (default: the system's).
    ///   - logger: For the pool's background messages and the store's queries.
    ///   - body: Uses the store.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, ``TokenError/Code/invalidInput`` for a malformed URL, or
    ///   ``TokenError/Code/storeFailure`` when the server cannot be reached or the migration fails.
    public static func withStore<T: Sendable>(
        url: String,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        timeSource: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.tokens.postgres"),
        _ body: (PostgresTokenStore) async throws -> T
    ) async throws -> T {
        let store = try PostgresTokenStore(
            url: url, keyring: keyring, configuration: configuration, timeSource: timeSource, logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            // Started immediately, so that the pool counts as running before the first query (see `run()`).
            if #available(macOS 26, *) {
                group.addImmediateTask { await store.run() }
            } else {
                group.addTask { await store.run() }
            }
            defer { group.cancelAll() }
            try await store.migrate()
            return try await body(store)
        }
    }

    // MARK: - TokenStore

    public func get(userID: String) async throws -> TokenRecord? {
        let row = try await run(userID: userID, "read") { [client, logger] in
            try await Self.fetchRows(
                client.query("SELECT \(unescaped: Self.columns) FROM mioctx_tokens WHERE user_id = \(userID)", logger: logger)
            ).first
        }
        return try row?.decrypted(with: keyring)
    }

    @discardableResult
    public func upsert(userID: String, tokens: TokenGrant) async throws -> TokenRecord {
        var record = TokenRecord(userID: userID, grant: tokens, now: timeSource.wallNow())
        let row = try EncryptedTokenRow(record, keyring: keyring)
        record.version = try await writeOutsideLease(userID: userID, "write") { [logger] connection in
            try await Self.upsertRow(row, logger: logger) { try await connection.query($0, logger: logger) }
        }
        return record
    }

    @discardableResult
    public func delete(userID: String) async throws -> Bool {
        try await writeOutsideLease(userID: userID, "delete") { [logger] connection in
            let rows = try await connection.query(
                "DELETE FROM mioctx_tokens WHERE user_id = \(userID) RETURNING user_id", logger: logger
            )
            var deleted = false
            for try await _ in rows.decode(String.self) { deleted = true }
            return deleted
        }
    }

    public func list(after cursor: String?, limit: Int) async throws -> TokenPage {
        let limit = max(1, limit)
        let rows = try await run(userID: "", "list") { [client, logger] in
            try await Self.fetchRows(
                client.query(
                    """
                    SELECT \(unescaped: Self.columns) FROM mioctx_tokens WHERE user_id COLLATE "C" > \(cursor ?? "")
                    ORDER BY user_id COLLATE "C" LIMIT \(limit + 1)
                    """,
                    logger: logger
                )
            )
        }
        let records = try rows.prefix(limit).map { try $0.decrypted(with: keyring) }
        return TokenPage(records: records, nextCursor: rows.count > limit ? records.last?.userID : nil)
    }

    @discardableResult
    public func setStatus(_ status: TokenStatus, userID: String) async throws -> Bool {
        let query = try statusUpdate(status, userID: userID)
        return try await writeOutsideLease(userID: userID, "write") { [logger] connection in
            var updated = false
            for try await _ in try await connection.query(query, logger: logger).decode(String.self) { updated = true }
            return updated
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
        // The write releases the lease in the same statement, and applies only while the lease is still this
        // holder's. With no row at the claim there is no lease to check.
        let leaseOwner = row == nil ? nil : owner
        do {
            let update = try await body(try row?.decrypted(with: keyring))
            let query: PostgresQuery?
            switch update.write {
            case nil:
                query = nil
            case .tokens(let grant):
                let newRow = try EncryptedTokenRow(
                    TokenRecord(userID: userID, grant: grant, now: timeSource.wallNow()), keyring: keyring
                )
                query = leaseOwner.map { Self.leasedTokensUpdate(newRow, owner: $0) } ?? Self.upsertQuery(newRow)
            case .status(let status):
                query = try statusUpdate(status, userID: userID, leaseOwner: leaseOwner)
            case .refreshOutcomeUnknown:
                query = refreshOutcomeUnknownUpdate(userID: userID, leaseOwner: leaseOwner)
            }
            try await writeAndReleaseLease(query, userID: userID, owner: owner, leased: row != nil)
            return update.value
        } catch {
            await releaseLease(userID: userID, owner: owner)
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
            let batch = try await run(userID: "", "rekey") { [client, logger, keyring, cursor] in
                try await client.withTransaction(logger: logger) { connection in
                    let rows = try await Self.fetchRows(
                        connection.query(
                            """
                            SELECT \(unescaped: Self.columns) FROM mioctx_tokens
                            WHERE user_id > \(cursor) AND (substr(access_token, 1, length(\(prefix))) <> \(prefix)
                               OR substr(refresh_token, 1, length(\(prefix))) <> \(prefix)
                               OR (id_token IS NOT NULL AND substr(id_token, 1, length(\(prefix))) <> \(prefix)))
                            ORDER BY user_id LIMIT 200 FOR UPDATE
                            """,
                            logger: logger
                        )
                    )
                    var batch = RekeyBatch()
                    for row in rows {
                        batch.last = row.userID
                        guard let new = try? row.reencrypted(with: keyring) else {
                            batch.undecryptable.append(row.userID)
                            continue
                        }
                        try await connection.query(
                            """
                            UPDATE mioctx_tokens SET access_token = \(new.accessToken),
                                refresh_token = \(new.refreshToken), id_token = \(new.idToken)
                            WHERE user_id = \(new.userID)
                            """,
                            logger: logger
                        )
                        batch.rewritten += 1
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
}
#endif
