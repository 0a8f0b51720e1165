import Coordination
import Foundation
import Testing

@Suite struct ManualClockTests {
    @Test func aSleeperWakesOnlyOnceItsDeadlineHasPassed() async throws {
        let clock = ManualClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(5)) }
        await clock.waitForSleepers(1)
        clock.advance(by: .seconds(3))
        await clock.waitForSleepers(1)
        #expect(clock.sleepers == 1)
        clock.advance(by: .seconds(2))
        try await sleeper.value
        #expect(clock.now.offset == .seconds(5))
        #expect(clock.sleepers == 0)
    }

    @Test func cancellingASleeperThrowsCancellationError() async {
        let clock = ManualClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(1)) }
        await clock.waitForSleepers(1)
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(clock.sleepers == 0)
    }

    @Test func aTimeSourceOnAManualClockMovesItsWallClockWithIt() async throws {
        let clock = ManualClock()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let time = TimeSource(clock, start: start)
        #expect(time.now() == .zero)
        #expect(time.wallNow() == start)
        clock.advance(by: .milliseconds(1500))
        #expect(time.now() == .milliseconds(1500))
        #expect(time.wallNow() == start.addingTimeInterval(1.5))
        try await time.sleep(for: .zero)
    }

    @Test(arguments: [
        (Duration.milliseconds(1500), Int64(1500), 1.5),
        (Duration.nanoseconds(999_999), Int64(0), 0.000999999),
        (Duration.seconds(-2), Int64(-2000), -2.0),
    ])
    func durationConversions(duration: Duration, milliseconds: Int64, seconds: Double) {
        #expect(duration.wholeMilliseconds == milliseconds)
        #expect(abs(duration.timeInterval - seconds) < 1e-12)
        #expect(Duration.timeInterval(seconds) == .nanoseconds(Int64((seconds * 1e9).rounded())))
    }
}
