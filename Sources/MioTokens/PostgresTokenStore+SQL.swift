#if PostgreSQL
import Coordination
import Foundation
import Logging
import PostgresNIO

/// The store's SQL: the row columns, the upsert and status updates, and the mapping of PostgreSQL errors to
/// ``TokenError``s.
extension PostgresTokenStore {
    static let columns =
        "user_id, access_token, refresh_token, id_token, expires_at_ms, issued_at_ms, status, version, updated_at_ms, "
        + "refresh_uncertain_since_ms"

    static func fetchRows(_ rows: PostgresRowSequence) async throws -> [EncryptedTokenRow] {
        var result: [EncryptedTokenRow] = []
        for try await (user, access, refresh, id, expires, issued, status, version, updated, uncertain) in rows.decode(
            (String, String, String, String?, Int64, Int64, String, Int64, Int64, Int64?).self
        ) {
            result.append(
                EncryptedTokenRow(
                    userID: user, accessToken: access, refreshToken: refresh, idToken: id, expiresAt: expires,
                    issuedAt: issued, status: status, version: version, updatedAt: updated,
                    refreshOutcomeUnknownSince: uncertain
                )
            )
        }
        return result
    }

    /// Stores the tokens (status active). Like ``statusUpdate(_:userID:)`` it clears a lease on the row: these
    /// writes run only under their own lease or when no lease is live, so a lease still there has ended, and its
    /// holder (stalled past it) must find it gone rather than write over this.
    static func upsertQuery(_ row: EncryptedTokenRow) -> PostgresQuery {
        """
        INSERT INTO mioctx_tokens (user_id, access_token, refresh_token, id_token, expires_at_ms, issued_at_ms,
                                   status, version, updated_at_ms)
        VALUES (\(row.userID), \(row.accessToken), \(row.refreshToken), \(row.idToken), \(row.expiresAt),
                \(row.issuedAt), 'active', 1, \(row.updatedAt))
        ON CONFLICT (user_id) DO UPDATE SET
            access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
            id_token = EXCLUDED.id_token, expires_at_ms = EXCLUDED.expires_at_ms,
            issued_at_ms = EXCLUDED.issued_at_ms, status = 'active',
            version = mioctx_tokens.version + 1, updated_at_ms = EXCLUDED.updated_at_ms,
            refresh_uncertain_since_ms = NULL, refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
        RETURNING version
        """
    }

    static func upsertRow(
        _ row: EncryptedTokenRow, logger: Logger, query: (PostgresQuery) async throws -> PostgresRowSequence
    ) async throws -> Int64 {
        var version: Int64 = 1
        for try await value in try await query(upsertQuery(row)).decode(Int64.self) { version = value }
        return version
    }

    /// Sets the status; with `leaseOwner`, only while that holder's lease is on the row (no row otherwise).
    func statusUpdate(_ status: TokenStatus, userID: String, leaseOwner: String? = nil) throws -> PostgresQuery {
        let now = timeSource.wallNow().millisecondsSince1970
        if status == .revoked {
            let access = try keyring.seal("", userID: userID, field: .access)
            let refresh = try keyring.seal("", userID: userID, field: .refresh)
            return """
                UPDATE mioctx_tokens SET status = \(status.rawValue), version = version + 1, updated_at_ms = \(now),
                    access_token = \(access), refresh_token = \(refresh), id_token = NULL,
                    refresh_uncertain_since_ms = NULL, refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
                WHERE user_id = \(userID) AND (\(leaseOwner)::TEXT IS NULL OR refresh_lease_owner = \(leaseOwner))
                RETURNING user_id
                """
        }
        return """
            UPDATE mioctx_tokens SET status = \(status.rawValue), version = version + 1, updated_at_ms = \(now),
                refresh_uncertain_since_ms = NULL, refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
            WHERE user_id = \(userID) AND (\(leaseOwner)::TEXT IS NULL OR refresh_lease_owner = \(leaseOwner))
            RETURNING user_id
            """
    }

    /// Stores a refresh's tokens and releases the lease in one statement, only while `owner`'s lease is on the row
    /// (no row otherwise): a holder whose lease ran out and was taken over writes nothing.
    static func leasedTokensUpdate(_ row: EncryptedTokenRow, owner: String) -> PostgresQuery {
        """
        UPDATE mioctx_tokens SET access_token = \(row.accessToken), refresh_token = \(row.refreshToken),
            id_token = \(row.idToken), expires_at_ms = \(row.expiresAt), issued_at_ms = \(row.issuedAt),
            status = 'active', version = version + 1, updated_at_ms = \(row.updatedAt),
            refresh_uncertain_since_ms = NULL, refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
        WHERE user_id = \(row.userID) AND refresh_lease_owner = \(owner)
        RETURNING user_id
        """
    }

    /// Records an unknown refresh outcome (``TokenRecord/refreshOutcomeUnknownSince``), keeping an earlier mark;
    /// with `leaseOwner`, only while that holder's lease is on the row, and releases it (no row otherwise).
    func refreshOutcomeUnknownUpdate(userID: String, leaseOwner: String? = nil) -> PostgresQuery {
        let now = timeSource.wallNow().millisecondsSince1970
        return """
            UPDATE mioctx_tokens SET refresh_uncertain_since_ms = COALESCE(refresh_uncertain_since_ms, \(now)),
                refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
            WHERE user_id = \(userID) AND (\(leaseOwner)::TEXT IS NULL OR refresh_lease_owner = \(leaseOwner))
            RETURNING user_id
            """
    }

    // MARK: - Errors

    func run<T: Sendable>(
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

    static func storeError(_ error: any Error, userID: String, action: String) -> TokenError {
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
#endif
