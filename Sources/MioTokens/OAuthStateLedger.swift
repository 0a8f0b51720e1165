public import Foundation

/// What happened when a connect flow's state was presented to an ``OAuthStateLedger``.
public enum OAuthStateClaim: Sendable, Equatable {
    /// The first use: the callback may go on.
    case first
    /// The state was used before (a replay, or a reload of the callback page).
    case replayed
    /// The ledger holds its most unexpired states already: the callback is refused until some expire.
    case full
}

/// Remembers the OAuth states already used, so that each is accepted once across every replica that shares the
/// token store (the SQLite file or the PostgreSQL database), not only in one process's memory.
///
/// A state is kept until it expires (it is refused as expired after that anyway), and the ledger holds at most
/// ``OAuthStateLedgerLimits/maximumStates`` unexpired states, so that a flood of callbacks cannot grow it without bound.
public protocol OAuthStateLedger: Sendable {
    /// Records the state `id` as used, unless it was used before.
    /// - Parameters:
    ///   - id: The state's identifier (a digest; never a secret).
    ///   - expiresAt: When the state expires; the row may be deleted after it.
    ///   - now: The current time, which also deletes the expired rows.
    /// - Returns: Whether this was the first use, a replay, or the ledger is full.
    /// - Throws: ``TokenError/Code/storeFailure`` when the store cannot be read or written.
    func claimOAuthState(id: String, expiresAt: Date, now: Date) async throws -> OAuthStateClaim
}

/// The bound on the states an ``OAuthStateLedger`` keeps.
public enum OAuthStateLedgerLimits {
    /// The most unexpired states kept (10 minutes of states at about 16 connections a second).
    public static let maximumStates = 10_000
}
