#if PostgreSQL
import PostgresNIO

extension PostgresTokenStore {
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
                // Outside the numbered migrations, so that it merges with schema changes made beside it.
                try await connection.query(Self.createOAuthStatesTable, logger: logger)
                // Columns of issue 16, likewise outside (added when missing): a refresh sent without a known outcome,
                // seen by every replica, and the refresh lease. Looked up first: ALTER TABLE takes an exclusive lock
                // even when the column exists, which would queue every read behind it.
                let existing = try await connection.query(
                    """
                    SELECT column_name::TEXT FROM information_schema.columns
                    WHERE table_schema = current_schema() AND table_name = 'mioctx_tokens'
                    """,
                    logger: logger
                )
                var present: Set<String> = []
                for try await name in existing.decode(String.self) { present.insert(name) }
                for (column, type) in [
                    ("refresh_uncertain_since_ms", "BIGINT"), ("refresh_lease_owner", "TEXT"),
                    ("refresh_lease_until_ms", "BIGINT"),
                ] where !present.contains(column) {
                    try await connection.query(
                        PostgresQuery(unsafeSQL: "ALTER TABLE mioctx_tokens ADD COLUMN \(column) \(type)"), logger: logger
                    )
                }
            }
        }
    }
}
#endif
