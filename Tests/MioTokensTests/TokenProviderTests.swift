import Coordination
import Foundation
import Mio
import MioTokens
import Synchronization
import Testing

/// A scripted Mio token endpoint: counts calls, rotates tokens, or fails as told.
final class FakeRefresher: TokenRefreshing {
    enum Behaviour: Sendable {
        case rotate(lifetime: Int)
        case fail(MioError)
    }

    private let state: Mutex<(behaviour: Behaviour, calls: Int, spent: [String])>
    private let delay: Duration

    init(_ behaviour: Behaviour = .rotate(lifetime: 1000), delay: Duration = .zero) {
        state = Mutex((behaviour, 0, []))
        self.delay = delay
    }

    var calls: Int { state.withLock { $0.calls } }
    var spentRefreshTokens: [String] { state.withLock { $0.spent } }
    func set(_ behaviour: Behaviour) { state.withLock { $0.behaviour = behaviour } }

    func refreshTokens(refreshToken: String) async throws -> MioTokenResponse {
        let (behaviour, call) = state.withLock { state in
            state.calls += 1
            state.spent.append(refreshToken)
            return (state.behaviour, state.calls)
        }
        if delay > .zero { try await Task.sleep(for: delay) }
        switch behaviour {
        case .rotate(let lifetime):
            return MioTokenResponse(
                accessToken: "atk_new_\(call)", refreshToken: "rtk_new_\(call)", expiresIn: lifetime
            )
        case .fail(let error):
            throw error
        }
    }
}

/// A store that counts reads and makes each one take a while, so that concurrent callers overlap.
final class SlowCountingStore: TokenStore {
    private let base = InMemoryTokenStore()
    private let reads = Mutex(0)
    private let delay: Duration

    init(delay: Duration) { self.delay = delay }

    var readCount: Int { reads.withLock { $0 } }

    func get(userID: String) async throws -> TokenRecord? {
        reads.withLock { $0 += 1 }
        try await Task.sleep(for: delay)
        return await base.get(userID: userID)
    }
    @discardableResult
    func upsert(userID: String, tokens: TokenGrant) async throws -> TokenRecord {
        await base.upsert(userID: userID, tokens: tokens)
    }
    func delete(userID: String) async throws -> Bool { await base.delete(userID: userID) }
    func list(after cursor: String?, limit: Int) async throws -> TokenPage {
        await base.list(after: cursor, limit: limit)
    }
    func setStatus(_ status: TokenStatus, userID: String) async throws -> Bool {
        await base.setStatus(status, userID: userID)
    }
    func withExclusiveLock<Value: Sendable>(
        userID: String,
        _ body: @Sendable (TokenRecord?) async throws -> LockedUpdate<Value>
    ) async throws -> Value {
        try await base.withExclusiveLock(userID: userID, body)
    }
    func rekey() async throws -> Int { await base.rekey() }
}

@Suite struct TokenProviderTests {
    @Test func concurrentCacheMissesForOneUserShareOneStoreRead() async throws {
        let store = SlowCountingStore(delay: .milliseconds(50))
        let provider = TokenProvider(store: store, refresher: FakeRefresher())
        try await store.upsert(userID: "u1", tokens: grant("1"))
        try await store.upsert(userID: "u2", tokens: grant("2"))
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<40 {
                group.addTask { try await provider.accessToken(for: index % 2 == 0 ? "u1" : "u2") }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(tokens.filter { $0 == "atk_plain_1" }.count == 20)
        #expect(tokens.filter { $0 == "atk_plain_2" }.count == 20)
        // One read per user; the other 38 callers joined a read in flight (or, arriving after it, hit the cache).
        #expect(store.readCount == 2)
        let statistics = provider.statistics
        #expect(statistics.storeReadsJoined + statistics.cacheHits == 38)
    }

    static func tokenEndpointError(_ code: MioError.Code, status: Int, oauth: String? = nil) -> MioError {
        MioError(code: code, endpoint: "POST /v1/auth/oauth2/token", status: status, oauthError: oauth)
    }

    @Test func proactiveRefreshFiresAtTheThresholdNotBefore() async throws {
        let time = ManualTime()
        let store: any TokenStore = InMemoryTokenStore(timeSource: time.source)
        let mio = FakeRefresher(.rotate(lifetime: 1000))
        // Revalidation against the store every 30 s would turn the cache hit below into a store read.
        let provider = TokenProvider(
            store: store, refresher: mio, configuration: .init(revalidationInterval: .seconds(3600)),
            timeSource: time.source
        )
        let issued = time.now
        try await store.upsert(userID: "u1", tokens: grant("1", issuedAt: issued, lifetime: 1000))

        #expect(try await provider.accessToken(for: "u1") == "atk_plain_1")
        time.advance(by: .seconds(799))  // 20.1% of the lifetime left
        #expect(time.now == issued.addingTimeInterval(799))
        #expect(try await provider.accessToken(for: "u1") == "atk_plain_1")
        #expect(mio.calls == 0)
        #expect(provider.statistics.cacheHits == 1)

        time.advance(by: .seconds(2))  // 19.9% left: refresh before use
        #expect(try await provider.accessToken(for: "u1") == "atk_new_1")
        #expect(mio.calls == 1)
        #expect(mio.spentRefreshTokens == ["rtk_plain_1"])
        let stored = try #require(try await store.get(userID: "u1"))
        #expect(stored.refreshToken == "rtk_new_1")
        #expect(stored.expiresAt == time.now.addingTimeInterval(1000))
        #expect(stored.updatedAt == time.now)
        #expect(provider.statistics.refreshesPerformed == 1)

        // The new token is fresh again: served from the cache, no further refresh.
        time.advance(by: .seconds(100))
        #expect(try await provider.accessToken(for: "u1") == "atk_new_1")
        #expect(mio.calls == 1)
    }

    @Test func thresholdIsConfigurable() async throws {
        let time = ManualTime()
        let store: any TokenStore = InMemoryTokenStore(timeSource: time.source)
        let mio = FakeRefresher()
        let provider = TokenProvider(
            store: store, refresher: mio, configuration: .init(proactiveRefreshThreshold: 0.5), timeSource: time.source
        )
        try await store.upsert(userID: "u1", tokens: grant("1", issuedAt: time.now, lifetime: 1000))
        time.advance(by: .seconds(499))
        #expect(try await provider.accessToken(for: "u1") == "atk_plain_1")
        time.advance(by: .seconds(2))
        #expect(try await provider.accessToken(for: "u1") == "atk_new_1")
    }

    @Test func concurrentCallersInOneProcessShareOneRefresh() async throws {
        let store: any TokenStore = InMemoryTokenStore()
        let mio = FakeRefresher(delay: .milliseconds(20))
        let provider = TokenProvider(store: store, refresher: mio)
        try await store.upsert(userID: "u1", tokens: grant("1"))
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<50 {
                group.addTask { try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1") }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(tokens) == ["atk_new_1"])
        #expect(tokens.count == 50)
        #expect(mio.calls == 1)
        let statistics = provider.statistics
        #expect(statistics.refreshesPerformed == 1)
        #expect(statistics.refreshesJoined + statistics.refreshesAvoided == 49)
    }

    @Test func refreshIsSkippedWhenAnotherReplicaAlreadyReplacedTheToken() async throws {
        let store: any TokenStore = InMemoryTokenStore()
        let mio = FakeRefresher()
        let provider = TokenProvider(store: store, refresher: mio)
        try await store.upsert(userID: "u1", tokens: grant("replica"))
        #expect(try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_old") == "atk_plain_replica")
        #expect(mio.calls == 0)
        #expect(provider.statistics.refreshesAvoided == 1)
        #expect(try await store.get(userID: "u1")?.version == 1)
    }

    @Test func invalidGrantMarksTheUserReauthRequiredAndLaterCallsFailFast() async throws {
        let store: any TokenStore = InMemoryTokenStore()
        let mio = FakeRefresher(.fail(Self.tokenEndpointError(.invalidGrant, status: 400, oauth: "invalid_grant")))
        let provider = TokenProvider(store: store, refresher: mio)
        try await store.upsert(userID: "u1", tokens: grant("1"))

        let error = await #expect(throws: TokenError.self) {
            try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1")
        }
        #expect(error?.code == .reauthRequired)
        #expect(error?.isRetriable == false)
        #expect((error?.underlying as? MioError)?.code == .invalidGrant)
        #expect(try await store.get(userID: "u1")?.status == .reauthRequired)

        for attempt in 0..<2 {
            let again = await #expect(throws: TokenError.self) {
                if attempt == 0 {
                    _ = try await provider.accessToken(for: "u1")
                } else {
                    _ = try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1")
                }
            }
            #expect(again?.code == .reauthRequired)
        }
        #expect(mio.calls == 1)
        #expect(provider.statistics.usersMarkedReauthRequired == 1)
        #expect(provider.statistics.refreshFailures == 1)
    }

    @Test func userWithoutTokensGetsNoTokensError() async throws {
        let provider = TokenProvider(store: InMemoryTokenStore(), refresher: FakeRefresher())
        let first = await #expect(throws: TokenError.self) { try await provider.accessToken(for: "ghost") }
        #expect(first?.code == .noTokens)
        let second = await #expect(throws: TokenError.self) {
            try await provider.refreshAfterUnauthorized(userID: "ghost", rejected: "x")
        }
        #expect(second?.code == .noTokens)
    }

    @Test func retriableRefreshFailureKeepsTheStoredTokensAndIsRetriable() async throws {
        let time = ManualTime()
        let store: any TokenStore = InMemoryTokenStore(timeSource: time.source)
        let mio = FakeRefresher(.fail(Self.tokenEndpointError(.serverError, status: 503)))
        let provider = TokenProvider(store: store, refresher: mio, timeSource: time.source)
        try await store.upsert(userID: "u1", tokens: grant("1", issuedAt: time.now, lifetime: 1000))

        let error = await #expect(throws: TokenError.self) {
            try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1")
        }
        #expect(error?.code == .refreshFailed)
        #expect(error?.isRetriable == true)
        #expect(try await store.get(userID: "u1")?.refreshToken == "rtk_plain_1")
        #expect(try await store.get(userID: "u1")?.status == .active)

        // A failed proactive refresh of a still-valid token serves the current token.
        time.advance(by: .seconds(900))
        #expect(try await provider.accessToken(for: "u1") == "atk_plain_1")
        #expect(mio.calls == 2)

        mio.set(.rotate(lifetime: 1000))
        #expect(try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1") == "atk_new_3")
    }

    @Test func errorsAndLogsNeverContainTokens() async throws {
        let store: any TokenStore = InMemoryTokenStore()
        let mio = FakeRefresher(.fail(Self.tokenEndpointError(.invalidGrant, status: 400, oauth: "invalid_grant")))
        let provider = TokenProvider(store: store, refresher: mio)
        try await store.upsert(userID: "u1", tokens: grant("SECRET"))
        do {
            _ = try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_SECRET")
            Issue.record("expected an error")
        } catch {
            for text in ["\(error)", String(reflecting: error), error.localizedDescription] {
                #expect(!text.contains("SECRET"), "\(text)")
            }
        }
    }

    /// A caller cancelled mid-refresh must not lose the rotated refresh token: the refresh completes and is stored.
    @Test func cancelledCallerDoesNotAbandonTheRefresh() async throws {
        let store: any TokenStore = InMemoryTokenStore()
        let mio = FakeRefresher(delay: .milliseconds(50))
        let provider = TokenProvider(store: store, refresher: mio)
        try await store.upsert(userID: "u1", tokens: grant("1"))
        let caller = Task { try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1") }
        caller.cancel()
        _ = await caller.result
        // Another caller joins the refresh still in flight (or finds its result): Mio was called once.
        #expect(try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1") == "atk_new_1")
        #expect(mio.calls == 1)
        #expect(try await store.get(userID: "u1")?.refreshToken == "rtk_new_1")
    }

    @Test func proactiveRefreshUsesTheTokenAnotherReplicaAlreadyStored() async throws {
        let time = ManualTime()
        let store: any TokenStore = InMemoryTokenStore(timeSource: time.source)
        let mio = FakeRefresher()
        let provider = TokenProvider(store: store, refresher: mio, timeSource: time.source)
        try await store.upsert(userID: "u1", tokens: grant("1", issuedAt: time.now, lifetime: 1000))
        #expect(try await provider.accessToken(for: "u1") == "atk_plain_1")
        time.advance(by: .seconds(900))
        // Another replica refreshed meanwhile.
        try await store.upsert(userID: "u1", tokens: grant("replica", issuedAt: time.now, lifetime: 1000))
        #expect(try await provider.accessToken(for: "u1") == "atk_plain_replica")
        #expect(mio.calls == 0)
    }
}
