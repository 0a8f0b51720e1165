import Coordination
import Foundation
import Logging
import PostgresNIO

/// The refresh lease on a user's row (`refresh_lease_owner`, `refresh_lease_until_ms`): claimed by one `UPDATE`,
/// released with the write of the refresh's result, waited for (polling) by other holders and by plain writes.
extension PostgresTokenStore {
    /// Claims the user's lease and returns the row as claimed (nil when the user has none: there is nothing to
    /// lease, and nothing to refresh). Waits, polling, while another holder's lease runs.
    /// - Throws: ``TokenError/Code/lockTimeout`` after ``Configuration/lockTimeout``.
    func claimLease(userID: String, owner: String) async throws -> EncryptedTokenRow? {
        let started = ContinuousClock.now
        var pause: Duration = .milliseconds(5)
        while true {
            let now = timeSource.wallNow().millisecondsSince1970
            let until = now + configuration.leaseDuration.wholeMilliseconds
            let claim: (row: EncryptedTokenRow?, claimed: Bool) = try await run(userID: userID, "lock") {
                [client, logger] in
                let claimed = try await Self.fetchRows(
                    client.query(
                        """
                        UPDATE mioctx_tokens SET refresh_lease_owner = \(owner), refresh_lease_until_ms = \(until)
                        WHERE user_id = \(userID) AND (refresh_lease_until_ms IS NULL OR refresh_lease_until_ms <= \(now))
                        RETURNING \(unescaped: Self.columns)
                        """,
                        logger: logger
                    )
                ).first
                if let claimed { return (claimed, true) }
                var exists = false
                for try await _ in try await client.query(
                    "SELECT user_id FROM mioctx_tokens WHERE user_id = \(userID)", logger: logger
                ).decode(String.self) {
                    exists = true
                }
                return (nil, !exists)
            }
            if claim.claimed { return claim.row }
            try await pauseForLease(userID: userID, started: started, pause: &pause, action: "lock")
        }
    }

    /// Runs `query` (when there is one) and releases the lease in one short transaction.
    func writeAndReleaseLease(_ query: PostgresQuery?, userID: String, owner: String) async throws {
        let release = Self.releaseQuery(userID: userID, owner: owner)
        guard let query else {
            try await run(userID: userID, "release the lease") { [client, logger] in
                _ = try await client.query(release, logger: logger)
            }
            return
        }
        let statementTimeout = "\(configuration.statementTimeout.wholeMilliseconds)ms"
        let idleTimeout = "\(configuration.idleInTransactionTimeout.wholeMilliseconds)ms"
        try await run(userID: userID, "write under the lock") { [client, logger] in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query(
                    """
                    SELECT set_config('statement_timeout', \(statementTimeout), true),
                           set_config('idle_in_transaction_session_timeout', \(idleTimeout), true)
                    """,
                    logger: logger
                )
                try await connection.query(query, logger: logger)
                try await connection.query(release, logger: logger)
            }
        }
    }

    /// Releases the lease without writing (after the body threw); a failure leaves it to expire.
    func releaseLease(userID: String, owner: String) async {
        _ = try? await client.query(Self.releaseQuery(userID: userID, owner: owner), logger: logger)
    }

    private static func releaseQuery(userID: String, owner: String) -> PostgresQuery {
        """
        UPDATE mioctx_tokens SET refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
        WHERE user_id = \(userID) AND refresh_lease_owner = \(owner)
        """
    }

    /// Runs `write` in a short transaction in which no other holder's lease is on the user's row (the row is
    /// locked for that transaction, so no lease is claimed meanwhile), waiting (polling) while one is, up to
    /// ``Configuration/lockTimeout``: a reconnection, a revocation or a deletion made during a refresh is applied
    /// after that refresh's result, not overwritten by it.
    /// - Throws: ``TokenError/Code/lockTimeout`` when the lease stays held.
    func writeOutsideLease<T: Sendable>(
        userID: String, _ action: String, _ write: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let started = ContinuousClock.now
        var pause: Duration = .milliseconds(5)
        while true {
            let now = timeSource.wallNow().millisecondsSince1970
            let done: T? = try await run(userID: userID, action) { [client, logger] in
                try await client.withTransaction(logger: logger) { connection -> T? in
                    var leased = false
                    for try await value in try await connection.query(
                        """
                        SELECT COALESCE(refresh_lease_until_ms > \(now), false) FROM mioctx_tokens
                        WHERE user_id = \(userID) FOR UPDATE
                        """,
                        logger: logger
                    ).decode(Bool.self) {
                        leased = value
                    }
                    return leased ? nil : try await write(connection)
                }
            }
            if let done { return done }
            try await pauseForLease(userID: userID, started: started, pause: &pause, action: action)
        }
    }

    /// Sleeps before the next poll of a lease (5 ms doubling to 100 ms), or throws once the lock timeout is over.
    private func pauseForLease(userID: String, started: ContinuousClock.Instant, pause: inout Duration, action: String)
        async throws
    {
        if ContinuousClock.now - started >= configuration.lockTimeout {
            throw TokenError(
                .lockTimeout, userID: userID,
                detail: "PostgreSQL \(action): a refresh of this user held its lease for \(configuration.lockTimeout)"
            )
        }
        try await Task.sleep(for: pause)
        pause = min(pause * 2, .milliseconds(100))
    }
}
