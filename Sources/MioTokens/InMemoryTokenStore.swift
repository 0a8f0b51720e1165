public import Coordination
import Foundation

/// A ``TokenStore`` in memory, for unit tests: no encryption (nothing is at rest), an injected clock, and a
/// real per-user lock so that refresh coordination can be tested without a database.
public actor InMemoryTokenStore: TokenStore {
    /// One user's lock: whether it is held, and the tasks waiting for it, oldest first. A waiter gets `true`
    /// when the lock is handed to it, `false` when its task is cancelled.
    private typealias UserLock = WaitableState<Bool, Bool>

    private var records: [String: TokenRecord] = [:]
    /// The OAuth states used, with their expiry (see `InMemoryTokenStore+OAuthStates.swift`).
    var usedOAuthStates: [String: Date] = [:]
    /// The locks of the users being locked or waited for, with the number of tasks holding or waiting.
    private var locks: [String: (lock: UserLock, users: Int)] = [:]
    private let timeSource: TimeSource

    /// Creates an empty store.
    /// - Parameter timeSource: The wall clock that stamps `updatedAt` (default: the system's).
    public init(timeSource: TimeSource = .system) {
        self.timeSource = timeSource
    }

    private func now() -> Date { timeSource.wallNow() }

    public func get(userID: String) -> TokenRecord? {
        records[userID]
    }

    @discardableResult
    public func upsert(userID: String, tokens: TokenGrant) -> TokenRecord {
        let record: TokenRecord
        if let existing = records[userID] {
            record = existing.applying(LockedUpdate<Bool>.Write.tokens(tokens), now: now())
        } else {
            record = TokenRecord(userID: userID, grant: tokens, now: now())
        }
        records[userID] = record
        return record
    }

    @discardableResult
    public func delete(userID: String) -> Bool {
        records.removeValue(forKey: userID) != nil
    }

    public func list(after cursor: String?, limit: Int) -> TokenPage {
        let sorted = records.values
            .filter { cursor == nil || $0.userID > cursor! }
            .sorted { $0.userID < $1.userID }
        let page = Array(sorted.prefix(max(1, limit)))
        return TokenPage(records: page, nextCursor: sorted.count > page.count ? page.last?.userID : nil)
    }

    @discardableResult
    public func setStatus(_ status: TokenStatus, userID: String) -> Bool {
        guard let existing = records[userID] else { return false }
        records[userID] = existing.applying(LockedUpdate<Bool>.Write.status(status), now: now())
        return true
    }

    public func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        let lock = try await acquire(userID)
        defer { release(userID, lock) }
        let update = try await body(records[userID])
        if let write = update.write, let existing = records[userID] {
            records[userID] = existing.applying(write, now: now())
        } else if case .tokens(let grant) = update.write {
            records[userID] = TokenRecord(userID: userID, grant: grant, now: now())
        }
        return update.value
    }

    /// Nothing is encrypted in memory.
    public func rekey() -> Int { 0 }

    /// Takes the user's lock, waiting in line behind its holder and earlier waiters.
    /// - Throws: `CancellationError` when the task is cancelled while waiting.
    private func acquire(_ userID: String) async throws -> UserLock {
        let lock = locks[userID]?.lock ?? UserLock(false)
        locks[userID] = (lock, (locks[userID]?.users ?? 0) + 1)
        let acquired = await lock.wait(cancelled: false) { isLocked in
            guard !isLocked else { return nil }
            isLocked = true
            return true
        }
        guard acquired else {
            leave(userID)
            throw CancellationError()
        }
        return lock
    }

    /// Hands the lock to the oldest waiter (the lock stays held), or frees it.
    private func release(_ userID: String, _ lock: UserLock) {
        lock.withLock { isLocked, waiters in
            if !waiters.wakeFirst(with: true) {
                isLocked = false
            }
        }
        leave(userID)
    }

    private func leave(_ userID: String) {
        guard let entry = locks[userID] else { return }
        locks[userID] = entry.users > 1 ? (entry.lock, entry.users - 1) : nil
    }
}
