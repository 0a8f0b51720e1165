public import Foundation
import GRDB

extension SQLiteTokenStore: OAuthStateLedger {
    /// Creates the table of used OAuth states (it holds digests of states and their expiry, no secret).
    static func createOAuthStatesTable(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS mioctx_oauth_states (
                    state_id TEXT PRIMARY KEY NOT NULL,
                    expires_at_ms INTEGER NOT NULL
                )
                """
        )
    }

    public func claimOAuthState(id: String, expiresAt: Date, now: Date) async throws -> OAuthStateClaim {
        let expires = Int64((expiresAt.timeIntervalSince1970 * 1000).rounded(.down))
        let current = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        do {
            return try await pool.write { db in
                try db.execute(sql: "DELETE FROM mioctx_oauth_states WHERE expires_at_ms <= ?", arguments: [current])
                let known = try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM mioctx_oauth_states WHERE state_id = ?", arguments: [id]
                ) ?? 0
                if known > 0 { return .replayed }
                let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM mioctx_oauth_states") ?? 0
                guard count < OAuthStateLedgerLimits.maximumStates else { return .full }
                try db.execute(
                    sql: "INSERT INTO mioctx_oauth_states (state_id, expires_at_ms) VALUES (?, ?)",
                    arguments: [id, expires]
                )
                return .first
            }
        } catch {
            throw TokenError(
                .storeFailure, detail: "SQLite OAuth state ledger failed",
                underlying: (error as? DatabaseError) ?? DescribedError(error)
            )
        }
    }
}
