public import Foundation

/// The time source of the processor: a monotonic clock for backoff, deadlines and durations, and a wall clock
/// for the results' `completedAt`.
///
/// Inject a test clock to make retries and rate limits testable without real sleeps.
public struct ProcessorClock: Sendable {
    private let nowClosure: @Sendable () -> Duration
    private let sleepClosure: @Sendable (Duration) async throws -> Void
    private let wallClosure: @Sendable () -> Date

    /// A clock built from closures.
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

    /// A clock built from a Swift `Clock` measured in `Duration`.
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

    /// The system's `ContinuousClock` and `Date()`.
    public static var continuous: ProcessorClock { ProcessorClock(ContinuousClock()) }

    /// Monotonic time since the clock's origin.
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
