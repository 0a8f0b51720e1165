import Coordination
import Foundation
import Mio
import MioSimulator
import MioTokens
import Synchronization
import Testing

/// A Mio token endpoint that takes `delay` on a manual clock to answer, then rotates the tokens.
final class SlowRefresher: TokenRefreshing {
    private let time: ManualTime
    private let delay: Duration
    private let count = Mutex(0)

    init(time: ManualTime, delay: Duration) {
        self.time = time
        self.delay = delay
    }

    var calls: Int { count.withLock { $0 } }

    func refreshTokens(refreshToken: String) async throws -> MioTokenResponse {
        let call = count.withLock { count in
            count += 1
            return count
        }
        try await time.source.sleep(for: delay)
        return MioTokenResponse(accessToken: "atk_slow_\(call)", refreshToken: "rtk_slow_\(call)", expiresIn: 1000)
    }
}

/// Shutdown of the token provider: refreshes in flight are awaited (their rotated tokens stored), new ones refused.
@Suite struct FinishRefreshesTests {
    @Test func finishRefreshesAwaitsTheRefreshInFlightThenRefusesNewOnes() async throws {
        let time = ManualTime()
        let store: any TokenStore = InMemoryTokenStore(timeSource: time.source)
        let mio = SlowRefresher(time: time, delay: .seconds(5))
        let provider = TokenProvider(store: store, refresher: mio, timeSource: time.source)
        try await store.upsert(userID: "u1", tokens: grant("1", issuedAt: time.now))

        let caller = Task { try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_plain_1") }
        await time.clock.waitForSleepers(1)  // Mio is answering the refresh
        let finished = Mutex(false)
        let finisher = Task {
            await provider.finishRefreshes()
            finished.withLock { $0 = true }
            // What the store holds the moment finishRefreshes returns: the store may close now.
            return try await store.get(userID: "u1")?.refreshToken
        }
        for _ in 0..<200 { await Task.yield() }
        #expect(!finished.withLock { $0 }, "finishRefreshes returned while a refresh was in flight")
        #expect(time.clock.sleepers == 1)

        time.advance(by: .seconds(5))
        #expect(try await finisher.value == "rtk_slow_1")
        #expect(try await caller.value == "atk_slow_1")

        // Afterwards the cached token is still served; a refresh, or a store read for a user not in the cache,
        // is refused with a retriable shuttingDown, without calling Mio.
        #expect(try await provider.accessToken(for: "u1") == "atk_slow_1")
        let refused = await #expect(throws: TokenError.self) {
            try await provider.refreshAfterUnauthorized(userID: "u1", rejected: "atk_slow_1")
        }
        #expect(refused?.code == .shuttingDown)
        #expect(refused?.isRetriable == true)
        try await store.upsert(userID: "u2", tokens: grant("2", issuedAt: time.now))
        let unread = await #expect(throws: TokenError.self) { try await provider.accessToken(for: "u2") }
        #expect(unread?.code == .shuttingDown)
        #expect(mio.calls == 1)
        #expect(provider.statistics.refreshesPerformed == 1)

        // Again: nothing is in flight, it returns at once.
        await provider.finishRefreshes()
    }

    @Test func finishRefreshesWithNothingInFlightReturnsAtOnceAndCanBeCalledFromSeveralTasks() async throws {
        let provider = TokenProvider(store: InMemoryTokenStore(), refresher: FakeRefresher())
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask { await provider.finishRefreshes() }
            }
        }
        let error = await #expect(throws: TokenError.self) { try await provider.accessToken(for: "u1") }
        #expect(error?.code == .shuttingDown)
        #expect("\(error!)".contains("shutting_down"))
    }

    /// The same against the simulator over HTTP, whose token endpoint answers after a latency on the manual clock,
    /// with a real store: the refresh held at Mio is awaited, and its rotated pair is in the store.
    @Test(arguments: [StoreKind.memory, .sqlite])
    func finishRefreshesAwaitsARefreshHeldByASlowSimulator(kind: StoreKind) async throws {
        let time = ManualTime(start: Date())
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger, timeSource: time.source) {
            simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                try await kind.withFreshStore(timeSource: time.source) { store in
                    let first = try await Sim.connect("u1", simulator: simulator, mio: mio, store: store)
                    var faults = simulator.faults()
                    faults.latencyMs = 10_000
                    faults.targets = [.token]
                    try simulator.setFaults(faults)
                    let provider = TokenProvider(
                        store: store, refresher: mio, timeSource: time.source, logger: Sim.quietLogger
                    )

                    let caller = Task {
                        try await provider.refreshAfterUnauthorized(userID: "u1", rejected: first.accessToken)
                    }
                    await time.clock.waitForSleepers(1)  // the simulator holds the refresh
                    let finisher = Task {
                        await provider.finishRefreshes()
                        return try await store.get(userID: "u1")
                    }
                    for _ in 0..<200 { await Task.yield() }
                    time.advance(by: .seconds(10))

                    let stored = try #require(try await finisher.value)
                    let token = try await caller.value
                    #expect(stored.accessToken == token)
                    #expect(stored.refreshToken != first.refreshToken)
                    #expect(simulator.stats().refreshesByUser["u1"] == 1)
                    #expect(simulator.stats().reuseDetections == 0)
                    _ = try await mio.getContext(query: "after shutdown", accessToken: token)
                }
            }
        }
    }
}
