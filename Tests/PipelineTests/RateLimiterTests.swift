import Coordination
import Pipeline
import Synchronization
import Testing

/// The token bucket's guarantee on virtual time: at most `burst + permitsPerSecond × t` permits in any interval of
/// length `t`, callers served in order.
@Suite struct RateLimiterTests {
    /// A time source frozen at `now`, which records each requested sleep instead of sleeping.
    final class RecordingTime: Sendable {
        let now = Mutex<Duration>(.zero)
        let sleeps = Mutex<[Duration]>([])

        var source: TimeSource {
            TimeSource(now: { self.now.withLock { $0 } }, sleep: { duration in self.sleeps.withLock { $0.append(duration) } })
        }
    }

    @Test(arguments: [1, 5])
    func permitsTakenAtOnceAreDueOneIntervalApartAfterTheBurst(burst: Int) async throws {
        let time = RecordingTime()
        let limiter = RateLimiter(permitsPerSecond: 20, burst: burst, clock: time.source)
        for _ in 0..<50 { try await limiter.acquire() }
        let sleeps = time.sleeps.withLock { $0 }
        // The first `burst` are due at once (no sleep), then one every 50 ms: permit k waits (k - burst + 1) / 20 s.
        let expected = (burst..<50).map { index in Duration.milliseconds(50 * (index - burst + 1)) }
        #expect(sleeps.count == expected.count)
        for (sleep, due) in zip(sleeps, expected) {
            #expect(abs((sleep - due).timeInterval) < 0.000_001, "permit due in \(due), waited \(sleep)")
        }
    }

    @Test func anIdleBucketRefillsOnlyUpToItsBurst() async throws {
        let time = RecordingTime()
        let limiter = RateLimiter(permitsPerSecond: 20, burst: 3, clock: time.source)
        for _ in 0..<3 { try await limiter.acquire() }
        #expect(time.sleeps.withLock { $0 }.isEmpty, "a full bucket of 3 grants 3 at once")
        try await limiter.acquire()
        #expect(time.sleeps.withLock { $0 }.map(\.timeInterval) == [0.05], "the fourth waits one interval")
        // Ten idle seconds refill the bucket to 3 permits, not 200: three at once, then one interval.
        time.now.withLock { $0 = .seconds(10) }
        for _ in 0..<4 { try await limiter.acquire() }
        let sleeps = time.sleeps.withLock { $0 }.map { ($0.timeInterval * 1000).rounded() }
        #expect(sleeps == [50, 50])
    }
}
