import Foundation

/// Where users' tokens live. Implementations: ``SQLiteTokenStore`` (embedded default),
/// ``PostgresTokenStore`` (shared by replicas) and ``InMemoryTokenStore`` (unit tests).
///
/// Persistent stores encrypt every token at rest (see ``TokenKeyring``); records handed out are decrypted.
/// Errors thrown are ``TokenError``s (`storeFailure`, `lockTimeout`, `decryptionFailed`, ...), except that
/// ``withExclusiveLock(userID:_:)`` rethrows what its body throws.
///
/// In the persistent stores, ``upsert(userID:tokens:)``, ``setStatus(_:userID:)`` and ``delete(userID:)`` wait
/// while another holder has the user's lock: a reconnection, revocation or deletion made during a refresh is
/// applied after the refresh's result, never overwritten by it.
public protocol TokenStore: Sendable {
    /// The user's record, or nil when the store has none.
    func get(userID: String) async throws -> TokenRecord?

    /// Stores new tokens for the user (insert or replace), sets the status to active and increments the version.
    /// - Returns: The record as stored.
    @discardableResult
    func upsert(userID: String, tokens: TokenGrant) async throws -> TokenRecord

    /// Deletes the user's record.
    /// - Returns: Whether there was one.
    @discardableResult
    func delete(userID: String) async throws -> Bool

    /// A page of records ordered by user id, starting after `cursor` (nil: from the start).
    func list(after cursor: String?, limit: Int) async throws -> TokenPage

    /// Sets the user's status and increments the version. Setting ``TokenStatus/revoked`` also wipes the tokens.
    /// - Returns: Whether the user had a record.
    @discardableResult
    func setStatus(_ status: TokenStatus, userID: String) async throws -> Bool

    /// Runs `body` while holding an exclusive lock on the user's row, shared by every process that uses the
    /// same database, and applies the update `body` returns before releasing the lock.
    ///
    /// `body` gets the record as re-read inside the lock (nil when the user has none). When `body` throws,
    /// nothing is written and the error is rethrown as is.
    /// - Throws: ``TokenError/Code/lockTimeout`` when the lock is not obtained within the store's lock timeout.
    func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value

    /// Re-encrypts every row whose tokens are not encrypted with the keyring's primary key.
    /// - Returns: The number of rows rewritten.
    func rekey() async throws -> Int
}

extension TokenStore {
    /// Marks the user reauth_required (persisted): the provider fails fast for that user until new tokens are stored.
    /// - Returns: Whether the user had a record.
    @discardableResult
    public func markReauthRequired(userID: String) async throws -> Bool {
        try await setStatus(.reauthRequired, userID: userID)
    }

    /// Every record, page by page.
    public func all(pageSize: Int = 500) async throws -> [TokenRecord] {
        var result: [TokenRecord] = []
        var cursor: String?
        repeat {
            let page = try await list(after: cursor, limit: pageSize)
            result += page.records
            cursor = page.nextCursor
        } while cursor != nil
        return result
    }
}

/// What ``TokenStore/withExclusiveLock(userID:_:)`` writes before releasing the lock, and the value it returns.
public struct LockedUpdate<Value: Sendable>: Sendable {
    /// A write to apply under the lock.
    public enum Write: Sendable {
        /// Replace the tokens (status becomes active).
        case tokens(TokenGrant)
        /// Change the status.
        case status(TokenStatus)
        /// Record that a refresh spending the stored refresh token was sent without a known outcome
        /// (``TokenRecord/refreshOutcomeUnknownSince``, kept when already set); tokens, status and version stay.
        case refreshOutcomeUnknown
    }

    /// The write, or nil to leave the row as it is.
    public var write: Write?
    /// What `withExclusiveLock` returns.
    public var value: Value

    /// Creates an update.
    public init(write: Write?, value: Value) {
        self.write = write
        self.value = value
    }

    /// Leave the row unchanged and return `value`.
    public static func keep(_ value: Value) -> Self { Self(write: nil, value: value) }

    /// Store `tokens` and return `value`.
    public static func store(_ tokens: TokenGrant, returning value: Value) -> Self {
        Self(write: .tokens(tokens), value: value)
    }

    /// Set `status` and return `value`.
    public static func setStatus(_ status: TokenStatus, returning value: Value) -> Self {
        Self(write: .status(status), value: value)
    }

    /// Record an unknown refresh outcome on the row and return `value`.
    public static func markRefreshOutcomeUnknown(returning value: Value) -> Self {
        Self(write: .refreshOutcomeUnknown, value: value)
    }
}

extension TokenRecord {
    /// The record after `write`, with the version incremented and `updatedAt` set to `now` (an unknown refresh
    /// outcome only sets its mark).
    func applying(_ write: LockedUpdate<some Sendable>.Write, now: Date) -> TokenRecord {
        var record = self
        record.refreshOutcomeUnknownSince = nil
        switch write {
        case .refreshOutcomeUnknown:
            record.refreshOutcomeUnknownSince = refreshOutcomeUnknownSince ?? now.roundedToMilliseconds
            return record
        case .tokens(let grant):
            record = TokenRecord(
                userID: userID, accessToken: grant.accessToken, refreshToken: grant.refreshToken,
                idToken: grant.idToken, expiresAt: grant.expiresAt, issuedAt: grant.issuedAt, status: .active,
                version: version, updatedAt: now
            )
        case .status(let status):
            record.status = status
            if status == .revoked {
                record.accessToken = ""
                record.refreshToken = ""
                record.idToken = nil
            }
        }
        record.version = version + 1
        record.updatedAt = now.roundedToMilliseconds
        return record
    }

    /// A new record (version 1) from a grant.
    init(userID: String, grant: TokenGrant, now: Date) {
        self.init(
            userID: userID, accessToken: grant.accessToken, refreshToken: grant.refreshToken, idToken: grant.idToken,
            expiresAt: grant.expiresAt, issuedAt: grant.issuedAt, status: .active, version: 1, updatedAt: now
        )
    }
}
