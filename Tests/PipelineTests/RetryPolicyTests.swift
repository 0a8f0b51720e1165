import Pipeline
import Testing

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy(
        maxAttempts: 5,
        maxTimePerJob: .seconds(60),
        initialBackoff: .milliseconds(200),
        maxBackoff: .seconds(2)
    )

    @Test func backoffCapDoublesUpToTheMaximum() {
        let caps = (1 ... 6).map { policy.backoffCap(afterAttempt: $0) }
        #expect(caps == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .seconds(2), .seconds(2)])
    }

    @Test func fullJitterSpansZeroToTheCap() {
        #expect(policy.delay(afterAttempt: 3, retryAfter: nil, random: 0) == .zero)
        #expect(policy.delay(afterAttempt: 3, retryAfter: nil, random: 0.5) == .milliseconds(400))
        let nearlyOne = policy.delay(afterAttempt: 3, retryAfter: nil, random: 0.999_999)
        #expect(nearlyOne < .milliseconds(800))
        #expect(nearlyOne > .milliseconds(799))
        var generator = SplitMix64(seed: 1)
        for attempt in 1 ... 10 {
            let delay = policy.delay(afterAttempt: attempt, retryAfter: nil, random: Double.random(in: 0 ..< 1, using: &generator))
            #expect(delay >= .zero)
            #expect(delay < policy.backoffCap(afterAttempt: attempt))
        }
    }

    @Test func retryAfterIsAFloorNeverACeiling() {
        #expect(policy.delay(afterAttempt: 1, retryAfter: .seconds(3), random: 0) == .seconds(3))
        #expect(policy.delay(afterAttempt: 5, retryAfter: .seconds(30), random: 0.9) == .seconds(30))
        #expect(policy.delay(afterAttempt: 4, retryAfter: .milliseconds(10), random: 0.5) == .milliseconds(800))
    }

    @Test func maxAttemptsIsAtLeastOne() {
        #expect(RetryPolicy(maxAttempts: 0).maxAttempts == 1)
    }
}
