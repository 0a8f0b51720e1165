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
        let health = health(clock, .init(maxConcurrency: 64, rateIncrease: 0.05))
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

    @Test func slowStartGrowsByOnePerAnswerUntilTheFirstCut() async throws {
        let clock = VirtualClock()
        let health = health(clock, .init(maxConcurrency: 64, initialConcurrency: 4))
        #expect(health.concurrencyLimit == 4)
        var tickets: [MioHealth.Ticket] = []
        for _ in 0 ..< 4 { tickets.append(try await health.admit()) }
        // Each answer of a full window adds one: the limit doubles in a round trip.
        for _ in 0 ..< 4 {
            health.record(tickets.removeFirst(), .answered)
            while tickets.count < health.concurrencyLimit { tickets.append(try await health.admit()) }
        }
        #expect(health.concurrencyLimit == 8)
        health.record(tickets.removeFirst(), .timedOut)
        #expect(health.concurrencyLimit == 4)
        // After the cut, additive: seven answers raise it by 1/limit each while in use, not by seven.
        for ticket in tickets { health.record(ticket, .answered) }
        #expect(health.concurrencyLimit == 5)
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
