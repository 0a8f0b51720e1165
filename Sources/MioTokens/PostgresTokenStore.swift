public import Foundation
public import Logging
public import PostgresNIO
public import ServiceLifecycle

/// The ``TokenStore`` for several replicas: PostgreSQL through a pool of connections (`PostgresClient`),
/// tokens encrypted at rest.
///
/// The per-user lock of ``withExclusiveLock(userID:_:)`` is `SELECT ... FOR UPDATE` on the user's row inside
/// a transaction bounded by `lock_timeout`, `statement_timeout` and `idle_in_transaction_session_timeout`
/// (all `SET LOCAL`). There are no session-level advisory locks, so the store works behind PgBouncer in
/// transaction mode. The table (`mioctx_tokens`) is created or migrated by ``migrate()``, under a
/// transaction-level advisory lock so that replicas starting together do not race.
///
/// The client must run: use ``withStore(url:keyring:configuration:now:logger:_:)``, or run the store as a
/// `Service` (its ``run()`` runs the connection pool) and call ``migrate()`` before use.
public final class PostgresTokenStore: TokenStore, Service {
    /// Settings of the PostgreSQL store.
    public struct Configuration: Sendable {
        /// How long the refresh lock waits for another replica's lock (`lock_timeout`); default 35 s, longer
        /// than the Mio client's default request timeout so a waiter outlasts a slow refresh.
        public var lockTimeout: Duration
        /// The bound on each statement inside the lock transaction (`statement_timeout`); default 40 s.
        public var statementTimeout: Duration
        /// How long the lock transaction may sit idle while the refresh calls Mio
        /// (`idle_in_transaction_session_timeout`): a crashed or hung holder frees the row after it; default 60 s.
        public var idleInTransactionTimeout: Duration
        /// The most connections the pool opens; default 16.
        public var maximumConnections: Int

        /// Creates a configuration.
        public init(
            lockTimeout: Duration = .seconds(35),
            statementTimeout: Duration = .seconds(40),
            idleInTransactionTimeout: Duration = .seconds(60),
            maximumConnections: Int = 16
        ) {
            self.lockTimeout = lockTimeout
            self.statementTimeout = statementTimeout
            self.idleInTransactionTimeout = idleInTransactionTimeout
            self.maximumConnections = maximumConnections
        }
    }

    private let client: PostgresClient
    private let keyring: TokenKeyring
    private let configuration: Configuration
    private let now: @Sendable () -> Date
    private let logger: Logger

    /// Creates a store over `client`; nothing is started.
    public init(
        client: PostgresClient,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "mioctx.tokens.postgres")
    ) {
        self.client = client
        self.keyring = keyring
        self.configuration = configuration
        self.now = now
        self.logger = logger
    }

    /// Creates a store for a `postgres://user:password@host:port/database?sslmode=disable|prefer|require` URL
    /// (an optional `search_path=SCHEMA` query item selects the schema); nothing is started (see ``run()``).
    /// - Throws: ``TokenError/Code/invalidInput`` for a malformed URL.
    public convenience init(
        url: String,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "mioctx.tokens.postgres")
    ) throws {
        var clientConfiguration = try Self.clientConfiguration(url: url)
        clientConfiguration.options.maximumConnections = configuration.maximumConnections
        self.init(
            client: PostgresClient(configuration: clientConfiguration, backgroundLogger: logger),
            keyring: keyring, configuration: configuration, now: now, logger: logger
        )
    }

    /// Runs the connection pool until the task is cancelled or the service group shuts down.
    public func run() async {
        await client.run()
    }

    /// Opens a store for `url`, runs its pool, migrates the table, and runs `body` with it; the pool is shut down
    /// when `body` returns or throws.
    public static func withStore<T: Sendable>(
        url: String,
        keyring: TokenKeyring,
        configuration: Configuration = .init(),
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "mioctx.tokens.postgres"),
        _ body: (PostgresTokenStore) async throws -> T
    ) async throws -> T {
        let store = try PostgresTokenStore(
            url: url, keyring: keyring, configuration: configuration, now: now, logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            // Started immediately, so that the pool counts as running before the first query: PostgresNIO logs a
            // warning ("`PostgresClient.run()` hasn't been called yet") at every start otherwise, although the
            // query then waits for the pool and succeeds.
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

    /// Parses a `postgres://` (or `postgresql://`) URL into a client configuration.
    static func clientConfiguration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty,
            let user = components.user, !user.isEmpty
        else {
            throw TokenError(
                .invalidInput,
                detail: "not a PostgreSQL URL of the form postgres://user:password@host:port/database"
            )
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let sslMode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default:
            throw TokenError(.invalidInput, detail: "unknown sslmode \(sslMode) (disable, prefer or require)")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432,
            username: user.removingPercentEncoding ?? user,
            password: components.password.map { $0.removingPercentEncoding ?? $0 },
            database: database.isEmpty ? nil : database, tls: tls
        )
        if let searchPath = components.queryItems?.first(where: { $0.name == "search_path" })?.value {
            configuration.options.additionalStartupParameters.append(("search_path", searchPath))
        }
        return configuration
    }

    // MARK: - Schema

    /// Each entry upgrades the schema by one version; appended to, never edited.
    private static let migrations: [PostgresQuery] = [
        """
        CREATE TABLE IF NOT EXISTS mioctx_tokens (
            user_id TEXT PRIMARY KEY,
            access_token TEXT NOT NULL,
            refresh_token TEXT NOT NULL,
            id_token TEXT,
            expires_at_ms BIGINT NOT NULL,
            issued_at_ms BIGINT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'reauth_required', 'revoked')),
            version BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL
        )
        """
    ]

    /// Creates the table or brings it to the current schema version; safe when several replicas start at once.
    /// - Throws: ``TokenError/Code/storeFailure`` when the server cannot be reached or refuses the login (the
    ///   message says so), or the migration fails.
    public func migrate() async throws {
        do {
            try await migrateTable()
        } catch var error as TokenError where error.underlying.map({ "\($0)" })?.contains("ConnectionPool") ?? false {
            // The pool reports a refused login or an unreachable server only as a tripped circuit breaker.
            error.detail = "cannot connect to PostgreSQL (is the server up, and are the host, port, user, password "
                + "and database of the URL right?)"
            throw error
        }
    }

    private func migrateTable() async throws {
        try await run(userID: "", "migrate") { [client, logger] in
            try await client.withTransaction(logger: logger) { connection in
                // Transaction-scoped: released at COMMIT, so it is safe behind PgBouncer in transaction mode.
                try await connection.query("SELECT pg_advisory_xact_lock(7295314470231901)", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS mioctx_schema_migrations (
                        version INT PRIMARY KEY,
                        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                    )
                    """,
                    logger: logger
                )
                let rows = try await connection.query(
                    "SELECT COALESCE(max(version), 0)::INT FROM mioctx_schema_migrations", logger: logger
                )
                var current = 0
                for try await version in rows.decode(Int.self) { current = version }
                for (index, migration) in Self.migrations.enumerated() where index + 1 > current {
                    try await connection.query(migration, logger: logger)
                    try await connection.query(
                        "INSERT INTO mioctx_schema_migrations (version) VALUES (\(index + 1))", logger: logger
                    )
                }
            }
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
        var record = TokenRecord(userID: userID, grant: tokens, now: now())
        let row = try EncryptedTokenRow(record, keyring: keyring)
        record.version = try await run(userID: userID, "write") { [client, logger] in
            try await Self.upsertRow(row, logger: logger) { try await client.query($0, logger: logger) }
        }
        return record
    }

    @discardableResult
    public func delete(userID: String) async throws -> Bool {
        try await run(userID: userID, "delete") { [client, logger] in
            let rows = try await client.query(
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
        return try await run(userID: userID, "write") { [client, logger] in
            var updated = false
            for try await _ in try await client.query(query, logger: logger).decode(String.self) { updated = true }
            return updated
        }
    }

    public func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        let lockTimeout = "\(configuration.lockTimeout.milliseconds)ms"
        let statementTimeout = "\(configuration.statementTimeout.milliseconds)ms"
        let idleTimeout = "\(configuration.idleInTransactionTimeout.milliseconds)ms"
        do {
            return try await client.withTransaction(logger: logger) { [logger, keyring] connection in
                let row: EncryptedTokenRow?
                do {
                    try await connection.query(
                        """
                        SELECT set_config('lock_timeout', \(lockTimeout), true),
                               set_config('statement_timeout', \(statementTimeout), true),
                               set_config('idle_in_transaction_session_timeout', \(idleTimeout), true)
                        """,
                        logger: logger
                    )
                    row = try await Self.fetchRows(
                        connection.query(
                            "SELECT \(unescaped: Self.columns) FROM mioctx_tokens WHERE user_id = \(userID) FOR UPDATE",
                            logger: logger
                        )
                    ).first
                } catch {
                    throw Self.storeError(error, userID: userID, action: "lock")
                }
                let update = try await body(try row?.decrypted(with: keyring))
                let query: PostgresQuery?
                switch update.write {
                case nil:
                    query = nil
                case .tokens(let grant):
                    let newRow = try EncryptedTokenRow(
                        TokenRecord(userID: userID, grant: grant, now: self.now()), keyring: keyring
                    )
                    query = Self.upsertQuery(newRow)
                case .status(let status):
                    query = try self.statusUpdate(status, userID: userID)
                }
                if let query {
                    do {
                        try await connection.query(query, logger: logger)
                    } catch {
                        throw Self.storeError(error, userID: userID, action: "write under the lock")
                    }
                }
                return update.value
            }
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError { throw closureError }
            throw Self.storeError(
                error.commitError ?? error.beginError ?? error, userID: userID, action: "lock transaction"
            )
        } catch {
            throw Self.storeError(error, userID: userID, action: "lock")
        }
    }

    public func rekey() async throws -> Int {
        let prefix = "v1:\(keyring.primaryKeyID):"
        var total = 0
        while true {
            let count = try await run(userID: "", "rekey") { [client, logger, keyring] in
                try await client.withTransaction(logger: logger) { connection in
                    let rows = try await Self.fetchRows(
                        connection.query(
                            """
                            SELECT \(unescaped: Self.columns) FROM mioctx_tokens
                            WHERE substr(access_token, 1, length(\(prefix))) <> \(prefix)
                               OR substr(refresh_token, 1, length(\(prefix))) <> \(prefix)
                               OR (id_token IS NOT NULL AND substr(id_token, 1, length(\(prefix))) <> \(prefix))
                            ORDER BY user_id LIMIT 200 FOR UPDATE
                            """,
                            logger: logger
                        )
                    )
                    for row in rows {
                        let new = try row.reencrypted(with: keyring)
                        try await connection.query(
                            """
                            UPDATE mioctx_tokens SET access_token = \(new.accessToken),
                                refresh_token = \(new.refreshToken), id_token = \(new.idToken)
                            WHERE user_id = \(new.userID)
                            """,
                            logger: logger
                        )
                    }
                    return rows.count
                }
            }
            total += count
            if count == 0 { return total }
        }
    }

    // MARK: - SQL

    private static let columns =
        "user_id, access_token, refresh_token, id_token, expires_at_ms, issued_at_ms, status, version, updated_at_ms"

    private static func fetchRows(_ rows: PostgresRowSequence) async throws -> [EncryptedTokenRow] {
        var result: [EncryptedTokenRow] = []
        for try await (user, access, refresh, id, expires, issued, status, version, updated) in rows.decode(
            (String, String, String, String?, Int64, Int64, String, Int64, Int64).self
        ) {
            result.append(
                EncryptedTokenRow(
                    userID: user, accessToken: access, refreshToken: refresh, idToken: id, expiresAt: expires,
                    issuedAt: issued, status: status, version: version, updatedAt: updated
                )
            )
        }
        return result
    }

    private static func upsertQuery(_ row: EncryptedTokenRow) -> PostgresQuery {
        """
        INSERT INTO mioctx_tokens (user_id, access_token, refresh_token, id_token, expires_at_ms, issued_at_ms,
                                   status, version, updated_at_ms)
        VALUES (\(row.userID), \(row.accessToken), \(row.refreshToken), \(row.idToken), \(row.expiresAt),
                \(row.issuedAt), 'active', 1, \(row.updatedAt))
        ON CONFLICT (user_id) DO UPDATE SET
            access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
            id_token = EXCLUDED.id_token, expires_at_ms = EXCLUDED.expires_at_ms,
            issued_at_ms = EXCLUDED.issued_at_ms, status = 'active',
            version = mioctx_tokens.version + 1, updated_at_ms = EXCLUDED.updated_at_ms
        RETURNING version
        """
    }

    private static func upsertRow(
        _ row: EncryptedTokenRow, logger: Logger, query: (PostgresQuery) async throws -> PostgresRowSequence
    ) async throws -> Int64 {
        var version: Int64 = 1
        for try await value in try await query(upsertQuery(row)).decode(Int64.self) { version = value }
        return version
    }

    private func statusUpdate(_ status: TokenStatus, userID: String) throws -> PostgresQuery {
        let now = now().millisecondsSince1970
        if status == .revoked {
            let access = try keyring.seal("", userID: userID, field: .access)
            let refresh = try keyring.seal("", userID: userID, field: .refresh)
            return """
                UPDATE mioctx_tokens SET status = \(status.rawValue), version = version + 1, updated_at_ms = \(now),
                    access_token = \(access), refresh_token = \(refresh), id_token = NULL
                WHERE user_id = \(userID) RETURNING user_id
                """
        }
        return """
            UPDATE mioctx_tokens SET status = \(status.rawValue), version = version + 1, updated_at_ms = \(now)
            WHERE user_id = \(userID) RETURNING user_id
            """
    }

    // MARK: - Errors

    private func run<T: Sendable>(
        userID: String, _ action: String, _ operation: () async throws -> T
    ) async throws -> T {
        do {
            return try await operation()
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError { throw Self.storeError(closureError, userID: userID, action: action) }
            throw Self.storeError(
                error.commitError ?? error.beginError ?? error, userID: userID, action: action
            )
        } catch {
            throw Self.storeError(error, userID: userID, action: action)
        }
    }

    private static func storeError(_ error: any Error, userID: String, action: String) -> TokenError {
        if let error = error as? TokenError { return error }
        guard let error = error as? PSQLError else {
            return TokenError(
                .storeFailure, userID: userID, detail: "PostgreSQL \(action) failed", underlying: DescribedError(error)
            )
        }
        let sqlState = error.serverInfo?[.sqlState]
        let message = error.serverInfo?[.message]
        let underlying = DescribedError(
            description: "PostgreSQL \(error.code)" + (sqlState.map { " \($0)" } ?? "") + (message.map { ": \($0)" } ?? "")
        )
        // 55P03 lock_not_available (lock_timeout), 57014 query_canceled (statement_timeout).
        if sqlState == "55P03" || sqlState == "57014" {
            return TokenError(
                .lockTimeout, userID: userID, detail: "PostgreSQL \(action): the row stayed locked",
                underlying: underlying
            )
        }
        return TokenError(.storeFailure, userID: userID, detail: "PostgreSQL \(action) failed", underlying: underlying)
    }
}

extension DescribedError {
    init(description: String) { self.description = description }
}
