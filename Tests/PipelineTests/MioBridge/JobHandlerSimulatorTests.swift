import Pipeline
import PipelineMioBridge
import Foundation
import Mio
import MioSimulator
import Testing

/// `JobHandler` against the real Mio simulator over HTTP on loopback, with a token source that gets and
/// refreshes tokens at the simulator's token endpoint. Waits between attempts run on a virtual clock.
@Suite struct JobHandlerSimulatorTests {
    /// A handler whose jitter draws `random` (0 by default: waits are exactly `Retry-After`, or zero).
    func handler(_ harness: SimulatorHarness, clock: VirtualClock, api: (any ContextAPI)? = nil, random: Double = 0)
        -> JobHandler
    {
        JobHandler(
            api: api ?? MioContextAPI(harness.client),
            tokens: harness.tokens,
            clock: clock.timeSource,
            random: { random },
            logger: quietLogger
        )
    }

    func job(_ user: String, op: Job.Operation = .context) -> Job {
        Job(id: "job-\(user)", userID: user, operation: op, query: op == .context ? "what is \(user) doing?" : nil)
    }

    @Test func unauthorizedRefreshesExactlyOnceAtTheSimulatorAndRetries() async throws {
        try await withSimulatorHarness { harness in
            try await harness.tokens.connect("u1")
            harness.tokens.makeAccessTokenStale("u1")
            let result = try await handler(harness, clock: VirtualClock()).handle(job("u1"))
            #expect(result.status == .ok)
            #expect(result.payload == .context(MioSimulator.expectedContent(userID: "u1", query: "what is u1 doing?")))
            #expect(result.attempts == 2)
            let stats = try await harness.stats()
            #expect(stats.refreshesByUser["u1"] == 1)
            #expect(stats.count("POST /v1/context", status: 401) == 1)
            #expect(stats.count("POST /v1/context", status: 200) == 1)
        }
    }

    @Test func concurrentUnauthorizedJobsOfOneUserShareOneRefresh() async throws {
        try await withSimulatorHarness { harness in
            try await harness.tokens.connect("u1")
            harness.tokens.makeAccessTokenStale("u1")
            let handler = handler(harness, clock: VirtualClock())
            let results = try await withThrowingTaskGroup(of: JobResult.self) { group in
                for index in 0 ..< 8 {
                    group.addTask { try await handler.handle(Job(id: "j\(index)", userID: "u1", query: "q\(index)")) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.allSatisfy { $0.status == .ok })
            let stats = try await harness.stats()
            #expect(stats.refreshesByUser["u1"] == 1)
            #expect(stats.reuseDetections == 0)
        }
    }

    @Test func revokedUserEndsAsReauthRequired() async throws {
        try await withSimulatorHarness { harness in
            try await harness.tokens.connect("u1")
            try await SimControl(baseURL: harness.baseURL).revoke("u1")
            let result = try await handler(harness, clock: VirtualClock()).handle(job("u1"))
            #expect(result.status == .reauthRequired)
            #expect(result.failure?.code == "reauth_required")
            #expect(result.attempts == 1)
            let stats = try await harness.stats()
            #expect(stats.count("POST /v1/context", status: 401) == 1)
            #expect(stats.refreshesByUser["u1"] == nil)
        }
    }

    @Test func unknownUserEndsAsNoTokens() async throws {
        try await withSimulatorHarness { harness in
            let result = try await handler(harness, clock: VirtualClock()).handle(job("stranger"))
            #expect(result.status == .noTokens)
            #expect(result.failure?.code == "no_tokens")
            #expect(try await harness.stats().count("POST /v1/context", status: 200) == 0)
        }
    }

    @Test func rateLimitIsRetriedNoSoonerThanRetryAfter() async throws {
        try await withSimulatorHarness(faults: .init(rate429: 1, retryAfterSeconds: 3)) { harness in
            try await harness.tokens.connect("u1")
            let simulator = harness.simulator
            let clock = VirtualClock { _ in try? simulator.setFaults(.init()) }
            let result = try await handler(harness, clock: clock).handle(job("u1"))
            #expect(result.status == .ok)
            #expect(result.attempts == 2)
            #expect(clock.sleeps == [.seconds(3)], "full jitter drew 0: the wait is Retry-After")
            let stats = try await harness.stats()
            #expect(stats.count("POST /v1/context", status: 429) == 1)
            #expect(stats.count("POST /v1/context", status: 200) == 1)
        }
    }

    @Test func persistentRateLimitEndsAsRateLimitedAfterMaxAttempts() async throws {
        try await withSimulatorHarness(faults: .init(rate429: 1, retryAfterSeconds: 2)) { harness in
            try await harness.tokens.connect("u1")
            let clock = VirtualClock()
            let result = try await handler(harness, clock: clock).handle(job("u1"))
            #expect(result.status == .rateLimited)
            #expect(result.attempts == 5)
            #expect(clock.sleeps.count == 4)
            #expect(clock.sleeps.allSatisfy { $0 >= .seconds(2) })
            #expect(try await harness.stats().count("POST /v1/context", status: 429) == 5)
        }
    }

    @Test(arguments: [(500, 0.0), (0, 1.0)])
    func serverErrorsAreRetried(rate500: Double, rate503: Double) async throws {
        let faults = MioSimulator.Faults(rate500: rate500 > 0 ? 1 : 0, rate503: rate503, retryAfterSeconds: 1)
        try await withSimulatorHarness(faults: faults) { harness in
            try await harness.tokens.connect("u1")
            let simulator = harness.simulator
            let clock = VirtualClock { count in if count == 2 { try? simulator.setFaults(.init()) } }
            let result = try await handler(harness, clock: clock, random: 0.5).handle(job("u1"))
            #expect(result.status == .ok)
            #expect(result.attempts == 3)
            let status = rate503 > 0 ? 503 : 500
            #expect(try await harness.stats().count("POST /v1/context", status: status) == 2)
            if status == 503 { #expect(clock.sleeps.allSatisfy { $0 >= .seconds(1) }) }
        }
    }

    @Test func persistentServerErrorsEndAsUpstreamUnavailable() async throws {
        try await withSimulatorHarness(faults: .init(rate500: 1)) { harness in
            try await harness.tokens.connect("u1")
            let result = try await handler(harness, clock: VirtualClock()).handle(job("u1"))
            #expect(result.status == .upstreamUnavailable)
            #expect(result.failure?.code == "server_error")
            #expect(result.attempts == 5)
            #expect(try await harness.stats().count("POST /v1/context", status: 500) == 5)
        }
    }

    @Test func timeoutsAreRetried() async throws {
        try await withSimulatorHarness(faults: .init(hangRate: 1, hangMs: 60_000), requestTimeout: .seconds(2)) { harness in
            try await harness.tokens.connect("u1")
            let simulator = harness.simulator
            let clock = VirtualClock { _ in try? simulator.setFaults(.init()) }
            let result = try await handler(harness, clock: clock, random: 0.5).handle(job("u1"))
            #expect(result.status == .ok)
            #expect(result.attempts == 2)
        }
    }

    @Test func otherClientErrorsAreRejectedWithoutRetry() async throws {
        try await withSimulatorHarness { harness in
            try await harness.tokens.connect("u1")
            var configuration = harness.clientConfiguration
            configuration.apiURL = harness.baseURL + "/no-such-prefix"
            try await MioClient.withClient(configuration: configuration, logger: quietLogger) { misdirected in
                let result = try await handler(harness, clock: VirtualClock(), api: MioContextAPI(misdirected)).handle(job("u1"))
                #expect(result.status == .rejected)
                #expect(result.failure?.code == "client_error")
                #expect(result.failure?.message.contains("404") == true)
                #expect(result.attempts == 1)
            }
        }
    }

    @Test func summaryJobsGetTheSummaryOrNull() async throws {
        try await withSimulatorHarness { harness in
            try await harness.tokens.connect("old")
            try await harness.tokens.connect("new")
            harness.simulator.markNew(userID: "new")
            let handler = handler(harness, clock: VirtualClock())
            let old = try await handler.handle(job("old", op: .summary))
            #expect(old.payload == .summary(MioSimulator.expectedSummary(userID: "old")))
            let new = try await handler.handle(job("new", op: .summary))
            #expect(new.status == .ok)
            #expect(new.payload == .summary(nil))
        }
    }

    @Test func resultsNeverContainTheTokensTheSimulatorIssued() async throws {
        try await withSimulatorHarness(faults: .init(rate503: 0.5)) { harness in
            var results: [JobResult] = []
            let handler = handler(harness, clock: VirtualClock())
            for user in ["a", "b", "c"] { try await harness.tokens.connect(user) }
            harness.tokens.makeAccessTokenStale("b")
            try await SimControl(baseURL: harness.baseURL).revoke("c")
            for user in ["a", "b", "c", "d"] { results.append(try await handler.handle(job(user))) }
            let secrets = harness.tokens.allTokens.filter { !$0.hasPrefix("atk-stale") }
            #expect(secrets.count >= 6)
            for result in results {
                let text = String(decoding: result.encoded(), as: UTF8.self)
                for secret in secrets { #expect(!text.contains(secret)) }
            }
        }
    }

    @Test func requestsPerSecondCapHoldsAtTheSimulator() async throws {
        try await withSimulatorHarness { harness in
            for user in 0 ..< 4 { try await harness.tokens.connect("u\(user)") }
            let limiter = RateLimiter(permitsPerSecond: 20)
            let handler = JobHandler(api: MioContextAPI(harness.client), tokens: harness.tokens, rateLimiter: limiter, logger: quietLogger)
            let started = ContinuousClock.now
            let results = try await withThrowingTaskGroup(of: JobResult.self) { group in
                for index in 0 ..< 50 {
                    group.addTask { try await handler.handle(Job(id: "j\(index)", userID: "u\(index % 4)", query: "q")) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let elapsed = ContinuousClock.now - started
            #expect(results.allSatisfy { $0.status == .ok })
            // 50 permits at 20 per second with a burst of 1 take at least 49 / 20 s: a lower bound, which a slow
            // machine can only exceed. Unlimited, the 50 calls finish in a fraction of a second.
            #expect(elapsed >= .milliseconds(2400))
            let stats = try await harness.stats()
            // The simulator's peak per one-second window is printed, not asserted: on a loaded machine requests
            // granted on time can wait in the client and reach the simulator bunched (32 in one window once, in a
            // CI run), so it measures the machine as much as the limiter. The limiter's own guarantee is tested on
            // virtual time (`RateLimiterTests`); the elapsed time above is the load-proof check at this level.
            print("rate cap 20/s: 50 calls in \(elapsed), simulator peak \(stats.contextRequestsPerSecondPeak) per second")
            #expect(stats.count("POST /v1/context", status: 200) == 50)
        }
    }
}
