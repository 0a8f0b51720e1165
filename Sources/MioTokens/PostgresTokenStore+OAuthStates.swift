#if PostgreSQL
public import Foundation
import PostgresNIO

extension PostgresTokenStore: OAuthStateLedger {
    /// The table of used OAuth states (digests of states and their expiry, no secret), created by ``migrate()``.
    static let createOAuthStatesTable: PostgresQuery = """
        CREATE TABLE IF NOT EXISTS mioctx_oauth_states (
            state_id TEXT PRIMARY KEY,
            expires_at_ms BIGINT NOT NULL
        )
        """

    public func claimOAuthState(id: String, expiresAt: Date, now: Date) async throws -> OAuthStateClaim {
        let expires = Int64((expiresAt.timeIntervalSince1970 * 1000).rounded(.down))
        let current = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        let limit = OAuthStateLedgerLimits.maximumStates
        return try await run(userID: "", "OAuth state ledger") { [client, logger] in
            try await client.query("DELETE FROM mioctx_oauth_states WHERE expires_at_ms <= \(current)", logger: logger)
            // One statement: the insert happens only while the ledger is under its bound, and the primary key
            // makes a concurrent second use of the same state insert nothing.
            let rows = try await client.query(
                """
                INSERT INTO mioctx_oauth_states (state_id, expires_at_ms)
                SELECT \(id), \(expires) WHERE (SELECT count(*) FROM mioctx_oauth_states) < \(limit)
                ON CONFLICT (state_id) DO NOTHING
                RETURNING state_id
                """,
                logger: logger
            )
            var inserted = false
            for try await _ in rows.decode(String.self) { inserted = true }
            if inserted { return .first }
            var known = false
            let existing = try await client.query(
                "SELECT state_id FROM mioctx_oauth_states WHERE state_id = \(id)", logger: logger
            )
            for try await _ in existing.decode(String.self) { known = true }
            return known ? .replayed : .full
        }
    }
}
#endif
