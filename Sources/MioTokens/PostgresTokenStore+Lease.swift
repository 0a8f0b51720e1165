#if PostgreSQL
import Coordination
import Foundation
import Logging
import PostgresNIO

/// The refresh lease on a user's row (`refresh_lease_owner`, `refresh_lease_until_ms`): claimed by one `UPDATE`,
/// released with the write of the refresh's result, waited for (polling) by other holders and by plain writes.
///
/// Lease times are the server's clock (`clock_timestamp()`), not the replicas': replicas on several machines
/// compare one clock, and a replica whose clock is off neither steals a running lease nor waits out a dead one.
extension PostgresTokenStore {
    /// Milliseconds since 1970 by the server's clock, as SQL.
    private static let serverNowMs = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT"

    /// Claims the user's lease and returns the row as claimed (nil when the user has none: there is nothing to
    /// lease, and nothing to refresh). Waits, polling, while another holder's lease runs.
    /// - Throws: ``TokenError/Code/lockTimeout`` after ``Configuration/lockTimeout``.
    func claimLease(userID: String, owner: String) async throws -> EncryptedTokenRow? {
        let started = ContinuousClock.now
        var pause: Duration = .milliseconds(5)
        let duration = configuration.leaseDuration.wholeMilliseconds
        while true {
            let claim: (row: EncryptedTokenRow?, claimed: Bool) = try await run(userID: userID, "lock") {
                [client, logger] in
                // One statement: of two holders claiming at once, the second waits for the first's row lock and
                // then re-checks the WHERE against the row the first wrote (READ COMMITTED), so only one claims.
                let claimed = try await Self.fetchRows(
                    client.query(
                        """
                        UPDATE mioctx_tokens SET refresh_lease_owner = \(owner),
                            refresh_lease_until_ms = \(unescaped: Self.serverNowMs) + \(duration)
                        WHERE user_id = \(userID)
                          AND (refresh_lease_until_ms IS NULL OR refresh_lease_until_ms <= \(unescaped: Self.serverNowMs))
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

    /// Runs `query`, which writes the result and releases the lease in one statement (autocommit: one round trip,
    /// no transaction held open), or releases the lease when there is no write. Under a lease `query` matches the
    /// row only while the lease is still this holder's: a holder whose lease ran out and was taken over (another
    /// holder's lease, or a plain write, which clears an ended lease) writes nothing and gets
    /// ``TokenError/Code/lockTimeout``. A grant Mio handed out is then kept by the ``TokenProvider`` and written by
    /// its background writer while the row is still at the version its refresh token came from.
    /// - Parameters:
    ///   - query: The write (guarded by the lease owner when `leased`), or nil to release only.
    ///   - userID: The user.
    ///   - owner: This holder's lease owner.
    ///   - leased: Whether a lease was claimed (false when the user had no row at the claim: nothing to check).
    /// - Throws: ``TokenError/Code/lockTimeout`` when the lease is no longer this holder's, or a store error.
    func writeAndReleaseLease(_ query: PostgresQuery?, userID: String, owner: String, leased: Bool) async throws {
        guard let query else {
            if leased {
                try await run(userID: userID, "release the lease") { [client, logger] in
                    for try await _ in try await client.query(Self.releaseQuery(userID: userID, owner: owner), logger: logger) {}
                }
            }
            return
        }
        let written = try await run(userID: userID, "write under the lock") { [client, logger] in
            var rows = 0
            for try await _ in try await client.query(query, logger: logger) { rows += 1 }
            return rows
        }
        if leased, written == 0 {
            throw TokenError(
                .lockTimeout, userID: userID,
                detail: "PostgreSQL write under the lock: the refresh lease ran out (\(configuration.leaseDuration)) "
                    + "and the row was taken over (another holder's lease, or a write made after the lease); the "
                    + "result was not written"
            )
        }
    }

    /// Renews the lease while the holder's call runs (``LeaseRenewal``).
    func renewLease(userID: String, owner: String) async {
        let duration = configuration.leaseDuration
        await LeaseRenewal.run(every: duration) {
            do {
                var renewed = false
                for try await _ in try await client.query(
                    """
                    UPDATE mioctx_tokens SET refresh_lease_until_ms = \(unescaped: Self.serverNowMs) + \(duration.wholeMilliseconds)
                    WHERE user_id = \(userID) AND refresh_lease_owner = \(owner)
                    RETURNING user_id
                    """,
                    logger: logger
                ) {
                    renewed = true
                }
                return renewed
            } catch {
                logger.debug("renewing a refresh lease failed", metadata: ["user": "\(userID)", "error": "\(error)"])
                return nil
            }
        }
    }

    /// Releases the lease without writing (after the body threw); a failure leaves it to expire.
    func releaseLease(userID: String, owner: String) async {
        do {
            for try await _ in try await client.query(Self.releaseQuery(userID: userID, owner: owner), logger: logger) {}
        } catch {
            logger.debug(
                "releasing a refresh lease failed; it ends by itself", metadata: ["user": "\(userID)", "error": "\(error)"]
            )
        }
    }

    private static func releaseQuery(userID: String, owner: String) -> PostgresQuery {
        """
        UPDATE mioctx_tokens SET refresh_lease_owner = NULL, refresh_lease_until_ms = NULL
        WHERE user_id = \(userID) AND refresh_lease_owner = \(owner)
        RETURNING user_id
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
        let statementTimeout = "\(configuration.statementTimeout.wholeMilliseconds)ms"
        let idleTimeout = "\(configuration.idleInTransactionTimeout.wholeMilliseconds)ms"
        while true {
            let done: T? = try await run(userID: userID, action) { [client, logger] in
                try await client.withTransaction(logger: logger) { connection -> T? in
                    // Transaction-local (PgBouncer in transaction mode keeps no session state of ours).
                    try await connection.query(
                        """
                        SELECT set_config('statement_timeout', \(statementTimeout), true),
                               set_config('idle_in_transaction_session_timeout', \(idleTimeout), true)
                        """,
                        logger: logger
                    )
                    var leased = false
                    for try await value in try await connection.query(
                        """
                        SELECT COALESCE(refresh_lease_until_ms > \(unescaped: Self.serverNowMs), false)
                        FROM mioctx_tokens WHERE user_id = \(userID) FOR UPDATE
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
#endif
