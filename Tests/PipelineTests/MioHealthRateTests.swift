import Coordination
import Foundation
import Pipeline
import Testing

/// The adaptive rate and the slow start of `MioHealth`, on virtual time only (a `VirtualClock` whose every sleep
/// advances it at once, or a `ManualClock` moved by the test): no test depends on how fast the machine is.
@Suite struct MioHealthRateTests {
    func health(_ clock: VirtualClock, _ configuration: MioHealth.Configuration) -> MioHealth {
        MioHealth(configuration: configuration, clock: clock.timeSource, logger: quietLogger)
    }

    /// Admits and answers `count` attempts one after the other.
    func answer(_ count: Int, _ health: MioHealth) async throws {
        for _ in 0 ..< count { health.record(try await health.admit(), .answered) }
    }

    @Test func aFirst429PacesAttemptsAtNineTenthsOfTheLastSecondsAnswers() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 64))
        try await answer(40, health)
        #expect(health.rateLimit == nil)
        #expect(clock.sleeps.isEmpty, "no pace before a 429")
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        #expect(health.rateLimit == 36)
        #expect(health.summary.contains("rate limit 36/s"))
        // Each attempt now waits for its permit: 1/36 s apart, where before they went at once.
        try await answer(3, health)
        #expect(clock.sleeps.count == 3)
        for sleep in clock.sleeps {
            #expect(sleep > .seconds(1.0 / 37) && sleep <= .seconds(1.0 / 36))
        }
    }

    @Test func afterA429TheRateGrowsBackOverSecondsOfAnswersNotOneRoundTripAndNotDuringThePause() async throws {
        let clock = VirtualClock()
        // Without the doubling (its maximum is the increase itself): a constant 5 % a second.
        let health = health(clock, .init(maxConcurrency: 64, rateIncrease: 0.05, maxRateIncrease: 0.05))
        try await answer(100, health)
        let inFlight = try await health.admit()
        health.record(try await health.admit(), .rateLimited(retryAfter: .seconds(1)))
        #expect(health.rateLimit == 90)
        // An attempt answered during the pause raises nothing.
        health.record(inFlight, .answered)
        #expect(health.rateLimit == 90)
        #expect(health.summary.contains("paused"))

        // The first attempt waits out the pause; from its end the rate grows by the configured 5 % of itself a second
        // of answers.
        try await answer(1, health)
        let resumedAt = clock.now
        #expect(clock.sleeps == [.seconds(1)])
        #expect(health.rateLimit == 90)
        var answers = 0
        while let rate = health.rateLimit, rate < 100 {
            try await answer(1, health)
            answers += 1
            #expect(answers < 1_000, "the rate never grew back")
            if answers >= 1_000 { break }
        }
        // ln(100 / 90) / 0.05 = 2.1 s at 90 to 100 attempts a second: about 200 answers, not 10 (one round trip).
        #expect(answers > 150)
        #expect(clock.now - resumedAt > .seconds(2))
        // Concurrency meanwhile: halved once by the 429 (64 to 32), grown by 1/limit per answer while in use only.
        #expect(health.concurrencyLimit == 32)
    }

    /// Paces a worker at 90/s by a 429 after 100 answers, then answers one attempt after the other (each waits for
    /// its permit) until the rate is `factor` times that: the virtual seconds it took.
    func secondsToGrow(by factor: Double, _ health: MioHealth, _ clock: VirtualClock) async throws -> Double {
        let start = clock.now
        let from = try #require(health.rateLimit)
        var answers = 0
        while let rate = health.rateLimit, rate < from * factor {
            try await answer(1, health)
            answers += 1
            if answers >= 100_000 { break }
        }
        return (clock.now - start).timeInterval
    }

    @Test func theRatesGrowthDoublesWithEachSecondWithoutA429SoALoneWorkerFindsAFreedQuotaInSeconds() async throws {
        // A worker paced at a third of a quota (the others' share was freed): 90/s to 270/s.
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 64))
        try await answer(100, health)
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        #expect(health.rateLimit == 90)
        // Growth of 10 % a second at first, doubling each second: ln 3 = 0.1 (2^t - 1) / ln 2 at t = 3.1 s. At a
        // constant 10 % it would take ln 3 / 0.1 = 11 s.
        let tripled = try await secondsToGrow(by: 3, health, clock)
        #expect(tripled > 2.5 && tripled < 4, "\(tripled) s")

        // A 429 starts the growth again at 10 % a second: the next second adds about 15 % (0.1 / ln 2), not the
        // 170 % of the growth reached (at most 1, the rate doubling in a second, e-fold over a second).
        let fast = try #require(health.rateLimit)
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        let cut = try #require(health.rateLimit)
        #expect(cut < fast)
        let cutAt = clock.now
        while clock.now - cutAt < .seconds(1) { try await answer(1, health) }
        let grown = try #require(health.rateLimit) / cut
        #expect(grown > 1.12 && grown < 1.2, "\(grown)")
    }

    @Test func theDoublingStopsAtTheMaximumAndAMaximumAtTheIncreaseIsAConstantGrowth() async throws {
        // Capped at 50 % a second: from 10 %, the doubling reaches it after log2(5) = 2.32 s, having grown the rate by
        // e^(0.1 (5 - 1) / ln 2) = e^0.58; to 6x (ln 6 = 1.79) then takes (1.79 - 0.58) / 0.5 = 2.43 s more: 4.75 s in
        // all (uncapped: log2(1 + 1.79 ln 2 / 0.1) = 3.74 s).
        let clock = VirtualClock()
        let capped = health(clock, .init(maxConcurrency: 64, maxRateIncrease: 0.5))
        try await answer(100, capped)
        capped.record(try await capped.admit(), .rateLimited(retryAfter: nil))
        let sixfold = try await secondsToGrow(by: 6, capped, clock)
        #expect(sixfold > 4.3 && sixfold < 4.8, "\(sixfold) s")

        // No doubling: 10 % a second throughout, ln 3 / 0.1 = 11 s to triple.
        let constantClock = VirtualClock()
        let constant = health(constantClock, .init(maxConcurrency: 64, maxRateIncrease: 0.1))
        try await answer(100, constant)
        constant.record(try await constant.admit(), .rateLimited(retryAfter: nil))
        let tripled = try await secondsToGrow(by: 3, constant, constantClock)
        #expect(tripled > 10.5 && tripled < 11.5, "\(tripled) s")
    }

    @Test func laterCutsFollowTheLowerOfTheRateAndTheAnswersButNeverHalveItMore() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 64))
        try await answer(50, health)
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        #expect(health.rateLimit == 45)
        // Another 429 of an attempt admitted after the cut: 90 % of the lower of 45/s and the 51 answers.
        let next = try await health.admit()
        health.record(next, .rateLimited(retryAfter: nil))
        let cut = try #require(health.rateLimit)
        #expect(abs(cut - 40.5) < 0.01)
        // One cut per round trip: an attempt admitted before the cut does not cut again.
        let early = try await health.admit()
        let late = try await health.admit()
        health.record(late, .rateLimited(retryAfter: nil))
        let again = try #require(health.rateLimit)
        #expect(abs(again - 36.45) < 0.1)
        health.record(early, .rateLimited(retryAfter: nil))
        #expect(health.rateLimit == again)
        // Nothing answered in the last second of running time: the cut stops at half the rate.
        try await clock.timeSource.sleep(for: .seconds(2))
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        let halved = try #require(health.rateLimit)
        #expect(abs(halved - again / 2) < 0.01)
    }

    @Test func withoutAnAnswerToMeasureByA429LeavesAttemptsUnpaced() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 8))
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        #expect(health.rateLimit == nil)
        #expect(health.concurrencyLimit == 4)
    }

    @Test func slowStartGrowsByHalfPerAnswerUntilTheFirstCut() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 64, initialConcurrency: 4))
        #expect(health.concurrencyLimit == 4)
        var tickets: [MioHealth.Ticket] = []
        for _ in 0 ..< 4 { tickets.append(try await health.admit()) }
        // Each answer of a full window adds a half: the limit grows 1.5 times in a round trip.
        for _ in 0 ..< 4 {
            health.record(tickets.removeFirst(), .answered)
            while tickets.count < health.concurrencyLimit { tickets.append(try await health.admit()) }
        }
        #expect(health.concurrencyLimit == 6)
        #expect(tickets.count == 6)
        health.record(tickets.removeFirst(), .timedOut)
        #expect(health.concurrencyLimit == 3)
        // After the cut, additive: the five answers raise it by 1/limit each while in use (four of them), not by
        // a half each: 3 + 1/3 + 1/3.3 + 1/3.6 + 1/3.9 = 4.16.
        for ticket in tickets { health.record(ticket, .answered) }
        #expect(health.concurrencyLimit == 4)
    }

    @Test(.timeLimit(.minutes(1)))
    func oneWaiterSleepsUntilThePacesNextPermitAndACancelledOneHandsOver() async throws {
        let clock = ManualClock()
        let health = MioHealth(configuration: .init(maxConcurrency: 64), clock: TimeSource(clock, start: Date()),
                               logger: quietLogger)
        for _ in 0 ..< 10 { health.record(try await health.admit(), .answered) }
        health.record(try await health.admit(), .rateLimited(retryAfter: nil))
        #expect(health.rateLimit == 9)
        let sleeper = Task { try await health.admit() }
        await clock.waitForSleepers(1)
        let second = Task { try await health.admit() }
        let third = Task { try await health.admit() }
        for _ in 0 ..< 100 { await Task.yield() }
        #expect(clock.sleepers == 1, "the others wait for the sleeper, not on the clock")
        // The sleeper goes away: another takes its place, and the permit comes 1/9 s later; then the last one sleeps
        // until the next.
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        await clock.waitForSleepers(1)
        clock.advance(by: .milliseconds(112))
        await clock.waitForSleepers(1)
        clock.advance(by: .milliseconds(112))
        for ticket in [try await second.value, try await third.value] { health.record(ticket, .answered) }
    }
}
