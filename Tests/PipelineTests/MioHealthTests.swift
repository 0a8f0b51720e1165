import Coordination
import Foundation
import Pipeline
import PipelineMioBridge
import Mio
import MioSimulator
import MioTokens
import Synchronization
import Testing

/// `MioHealth` alone on a virtual clock (each wait advances it at once), and with a handler against the simulator.
@Suite struct MioHealthTests {
    func health(_ clock: VirtualClock, _ configuration: MioHealth.Configuration) -> MioHealth {
        MioHealth(configuration: configuration, clock: clock.timeSource, logger: quietLogger)
    }

    @Test func breakerOpensOnFailuresAcrossAttemptsAndProbesOneAtATimeWithBackoff() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(failureThreshold: 3, probeInterval: .seconds(1), maxProbeInterval: .seconds(4),
                                         adaptiveConcurrency: false))
        let tickets = [try await health.admit(), try await health.admit(), try await health.admit()]
        #expect(health.record(tickets[0], .unavailable) == .counts)
        #expect(health.record(tickets[1], .timedOut) == .counts)
        #expect(health.isTakingJobs)
        // The third failure in the window opens the breaker: that attempt is not the job's to pay for.
        #expect(health.record(tickets[2], .unavailable) == .waitForMio)
        #expect(health.breakerState == .open)
        #expect(!health.isTakingJobs)

        // Each failed probe doubles the wait before the next, up to the longest.
        for _ in 0 ..< 4 {
            let probe = try await health.admit()
            #expect(health.breakerState == .halfOpen)
            #expect(health.record(probe, .unavailable) == .waitForMio)
        }
        #expect(clock.sleeps == [.seconds(1), .seconds(1), .seconds(2), .seconds(4)])

        // While a probe is out, nobody else is admitted; its answer closes the breaker and lets the others in.
        let probe = try await health.admit()
        let waiting = Task { try await health.admit() }
        try await Task.sleep(for: .milliseconds(50))
        #expect(clock.sleeps.count == 5)
        health.record(probe, .answered)
        let admitted = try await waiting.value
        #expect(health.breakerState == .closed)
        #expect(health.isTakingJobs)
        health.record(admitted, .answered)
    }

    @Test func failuresBelowTheRatioDoNotOpenTheBreaker() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(failureThreshold: 2, failureRatio: 0.5, adaptiveConcurrency: false))
        for _ in 0 ..< 5 { health.record(try await health.admit(), .answered) }
        for _ in 0 ..< 4 { #expect(health.record(try await health.admit(), .unavailable) == .counts) }
        #expect(health.breakerState == .closed)
        // Failures that left the window no longer count.
        try await clock.timeSource.sleep(for: .seconds(11))
        #expect(health.record(try await health.admit(), .unavailable) == .counts)
        #expect(health.breakerState == .closed)
    }

    @Test func rateLimitsHalveTheLimitOncePerRoundTripAndAnswersRaiseItByOnePerRoundTrip() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 8))
        var tickets: [MioHealth.Ticket] = []
        for _ in 0 ..< 8 { tickets.append(try await health.admit()) }
        #expect(health.concurrencyLimit == 8)
        health.record(tickets[0], .rateLimited(retryAfter: nil))
        #expect(health.concurrencyLimit == 4)
        // Attempts started before the cut saw the old limit: they do not cut again.
        health.record(tickets[1], .timedOut)
        #expect(health.concurrencyLimit == 4)
        // Each answer raises the limit by 1/limit: about one per round trip of `limit` answers.
        for ticket in tickets[2 ..< 6] { health.record(ticket, .answered) }
        #expect(health.concurrencyLimit == 4)
        let more = try await health.admit()
        health.record(more, .answered)
        #expect(health.concurrencyLimit == 5)
        // A limit far from used does not grow: 2 attempts in flight under a limit of 5.
        health.record(tickets[6], .answered)
        health.record(tickets[7], .answered)
        #expect(health.concurrencyLimit == 5)
        // An attempt started after the cut cuts again.
        let late = try await health.admit()
        health.record(late, .rateLimited(retryAfter: nil))
        #expect(health.concurrencyLimit == 2)
    }

    @Test func concurrencyLimitHoldsAttemptsBack() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 2))
        let first = try await health.admit()
        let second = try await health.admit()
        let third = Task { try await health.admit() }
        try await Task.sleep(for: .milliseconds(50))
        health.record(first, .answered)
        health.record(try await third.value, .answered)
        health.record(second, .answered)
    }

    @Test func retryAfterOnA429PausesEveryAttemptOfTheWorker() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init())
        let ticket = try await health.admit()
        health.record(ticket, .rateLimited(retryAfter: .seconds(2)))
        #expect(health.summary.contains("paused"))
        let next = try await health.admit()
        #expect(clock.sleeps == [.seconds(2)])
        health.record(next, .answered)
        // The breaker stays closed: a 429 is an answer.
        #expect(health.breakerState == .closed)
    }

    @Test func operatorFaultStopsTheLineUntilATryGetsThrough() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(haltProbeInterval: .seconds(30)))
        let ticket = try await health.admit()
        let verdict = health.record(ticket, .operatorFault(code: "invalid_client", reason: "set MIO_CLIENT_SECRET"))
        #expect(verdict == .waitForMio)
        #expect(health.haltReason == "set MIO_CLIENT_SECRET")
        #expect(!health.isTakingJobs)
        // Still wrong: the line stays stopped, the next try 30 s later.
        let retry = try await health.admit()
        health.record(retry, .operatorFault(code: "invalid_client", reason: "set MIO_CLIENT_SECRET"))
        #expect(health.haltReason != nil)
        let fixed = try await health.admit()
        #expect(clock.sleeps == [.seconds(30), .seconds(30)])
        health.record(fixed, .answered)
        #expect(health.haltReason == nil)
        #expect(health.isTakingJobs)
    }

    func handler(_ api: ScriptedAPI, _ clock: VirtualClock, health: MioHealth, tokens: ScriptedTokens = ScriptedTokens(),
                 retry: RetryPolicy = RetryPolicy()) -> JobHandler {
        JobHandler(api: api, tokens: tokens, configuration: .init(retry: retry), health: health, clock: clock.timeSource,
                   random: { 0 }, logger: quietLogger)
    }

    @Test func a429DoesNotUseUpAttemptsButTheTimeWindowDoes() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init())
        let retry = RetryPolicy(maxAttempts: 3, maxTimeRateLimited: .seconds(60))
        // Ten 429s with Retry-After 2 s, then an answer: more than the 3 attempts, well within the 60 s.
        let api = ScriptedAPI(Array(repeating: .failure(.http(429, retryAfter: .seconds(2))), count: 10) + [.content("ctx")])
        let result = try await handler(api, clock, health: health, retry: retry).handle(job())
        #expect(result.status == .ok)
        #expect(result.attempts == 11)
        // Every wait was the worker's pause, not the job's own backoff.
        #expect(clock.sleeps == Array(repeating: .seconds(2), count: 10))

        // Only 429s for longer than the window: `rate_limited` in the end.
        let endless = ScriptedAPI([.failure(.http(429, retryAfter: .seconds(2)))])
        let limited = try await handler(endless, clock, health: health, retry: retry).handle(job())
        #expect(limited.status == .rateLimited)
        #expect(limited.attempts == 31)
    }

    @Test func attemptsFailedWhileTheBreakerIsOpenAreNotTheJobs() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(failureThreshold: 1, probeInterval: .seconds(1), maxProbeInterval: .seconds(8),
                                         adaptiveConcurrency: false))
        // Twelve 503s, more than maxAttempts: the first opens the breaker, the others fail probes.
        let api = ScriptedAPI(Array(repeating: .failure(.http(503)), count: 12) + [.content("ctx")])
        let result = try await handler(api, clock, health: health, retry: RetryPolicy(maxAttempts: 2)).handle(job())
        #expect(result.status == .ok)
        #expect(result.attempts == 13)
        #expect(health.breakerState == .closed)
    }

    @Test func aStoppedLineHoldsTheJobWithoutAResult() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(haltProbeInterval: .seconds(30)))
        let tokens = ScriptedTokens(accessErrors: Array(repeating: TokenError(.keyConfiguration, userID: "u1",
                                                                              detail: "key id k9 is not configured"),
                                                        count: 3))
        let api = ScriptedAPI([.content("ctx")])
        let result = try await handler(api, clock, health: health, tokens: tokens).handle(job())
        // Three tries 30 s apart found the key missing; the fourth found it (the key was configured meanwhile).
        #expect(result.status == .ok)
        #expect(clock.sleeps == [.seconds(30), .seconds(30), .seconds(30)])
        #expect(health.haltReason == nil)
    }

    func job() -> Job { Job(id: "j1", userID: "u1", query: "q") }

    /// An outage of every context request for a few seconds, then recovery: with the health, no job spends its
    /// attempts on it (without, each job gives up after 3 attempts within about a second).
    @Test func outageEndsWithEveryJobOkAndNoneUpstreamUnavailable() async throws {
        try await withSimulatorHarness(faults: .init(latencyMs: 5, rate503: 1, retryAfterSeconds: 0)) { harness in
            let users = (0 ..< 20).map { "user-\($0)" }
            for user in users { try await harness.tokens.connect(user) }
            let health = MioHealth(
                configuration: .init(failureThreshold: 5, probeInterval: .milliseconds(100),
                                     maxProbeInterval: .milliseconds(400), maxConcurrency: 64),
                logger: quietLogger
            )
            let handler = JobHandler(
                api: MioContextAPI(harness.client),
                tokens: harness.tokens,
                configuration: .init(retry: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(50),
                                                        maxBackoff: .milliseconds(100))),
                health: health,
                logger: quietLogger
            )
            let recovery = Task {
                try await Task.sleep(for: .seconds(3))
                var faults = harness.simulator.faults()
                faults.rate503 = 0
                try harness.simulator.setFaults(faults)
            }
            let results = try await withThrowingTaskGroup(of: JobResult.self) { group in
                for index in 0 ..< 200 {
                    group.addTask {
                        try await handler.handle(Job(id: "j\(index)", userID: users[index % users.count], query: "q\(index)"))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            try await recovery.value
            #expect(results.count == 200)
            #expect(results.filter { $0.status == .upstreamUnavailable }.count == 0)
            #expect(results.filter { $0.status == .ok }.count == 200)
            let stats = try await harness.stats()
            #expect(stats.count("POST /v1/context", status: 503) > 0, "the outage was seen")
            #expect(health.breakerState == .closed)
        }
    }
}
