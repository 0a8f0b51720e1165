public import Foundation

/// A ``TokenStore`` in memory, for unit tests: no encryption (nothing is at rest), an injected clock, and a
/// real per-user lock so that refresh coordination can be tested without a database.
public actor InMemoryTokenStore: TokenStore {
    private var records: [String: TokenRecord] = [:]
    private var lockedUsers: Set<String> = []
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    private let now: @Sendable () -> Date

    /// Creates an empty store.
    /// - Parameter now: The clock that stamps `updatedAt`.
    public init(now: @escaping @Sendable () -> Date = { Date() }) {
        self.now = now
    }

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
        await acquire(userID)
        defer { release(userID) }
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

    private func acquire(_ userID: String) async {
        if lockedUsers.insert(userID).inserted { return }
        // The releasing holder hands the lock over directly, so the user stays in `lockedUsers`.
        await withCheckedContinuation { waiters[userID, default: []].append($0) }
    }

    private func release(_ userID: String) {
        if var queue = waiters[userID], !queue.isEmpty {
            let next = queue.removeFirst()
            waiters[userID] = queue.isEmpty ? nil : queue
            next.resume()
        } else {
            lockedUsers.remove(userID)
        }
    }
}
