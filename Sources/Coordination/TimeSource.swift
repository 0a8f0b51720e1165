public import Foundation

/// The one time source of mioctx: a monotonic clock for waiting, deadlines and durations, and a wall clock
/// for timestamps (results' `completedAt`, token expiry).
///
/// Every part that waits or reads time takes one; tests inject a ``ManualClock`` to make backoff, expiry and
/// commit intervals exact without real sleeps.
public struct TimeSource: Sendable {
    private let nowClosure: @Sendable () -> Duration
    private let sleepClosure: @Sendable (Duration) async throws -> Void
    private let wallClosure: @Sendable () -> Date

    /// A time source built from closures.
    /// - Parameters:
    ///   - now: Monotonic time since an arbitrary, fixed origin.
    ///   - sleep: Suspends for a duration; throws `CancellationError` when the task is cancelled.
    ///   - wallClock: The current date.
    public init(
        now: @escaping @Sendable () -> Duration,
        sleep: @escaping @Sendable (Duration) async throws -> Void,
        wallClock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.nowClosure = now
        self.sleepClosure = sleep
        self.wallClosure = wallClock
    }

    /// A time source built from a Swift `Clock` measured in `Duration`.
    /// - Parameters:
    ///   - clock: The monotonic clock.
    ///   - wallClock: The current date.
    public init<C: Clock>(_ clock: C, wallClock: @escaping @Sendable () -> Date = { Date() })
    where C.Duration == Duration {
        let origin = clock.now
        self.init(
            now: { origin.duration(to: clock.now) },
            sleep: { try await clock.sleep(for: $0) },
            wallClock: wallClock
        )
    }

    /// A time source driven by `clock`, whose wall clock starts at `start` and moves with it.
    /// - Parameters:
    ///   - clock: The manual clock.
    ///   - start: The date at the clock's origin.
    public init(_ clock: ManualClock, start: Date) {
        self.init(
            now: { clock.now.offset },
            sleep: { try await clock.sleep(for: $0) },
            wallClock: { start.addingTimeInterval(clock.now.offset.timeInterval) }
        )
    }

    /// The system's `ContinuousClock` and `Date()`.
    public static var system: TimeSource { TimeSource(ContinuousClock()) }

    /// Monotonic time since the source's origin.
    public func now() -> Duration { nowClosure() }

    /// Suspends for `duration` (returns at once for zero or negative durations).
    /// - Throws: `CancellationError` when the task is cancelled.
    public func sleep(for duration: Duration) async throws {
        if duration <= .zero {
            try Task.checkCancellation()
            return
        }
        try await sleepClosure(duration)
    }

    /// The current date.
    public func wallNow() -> Date { wallClosure() }
}

extension Duration {
    /// The duration in seconds, as `TimeInterval`.
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The duration in whole milliseconds, rounded toward zero (what librdkafka, SQL timeouts and HTTP
    /// headers take).
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// A duration of `interval` seconds.
    /// - Parameter interval: Seconds; negative values give a negative duration.
    public static func timeInterval(_ interval: TimeInterval) -> Duration {
        .nanoseconds(Int64((interval * 1e9).rounded()))
    }
}
