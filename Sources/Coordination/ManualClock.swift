/// A `Clock` that moves only when told to: sleepers wake when ``advance(by:)`` passes their deadline.
///
/// For tests of anything that waits (backoff, expiry, commit intervals): they become exact and take no real
/// time. ``sleepers`` lets a test wait until the code under test is asleep before it advances the clock.
public final class ManualClock: Clock, Sendable {
    /// A point on the manual clock's time line.
    public struct Instant: InstantProtocol, Sendable {
        /// Time since the clock's origin.
        public let offset: Duration

        /// Creates an instant.
        /// - Parameter offset: Time since the clock's origin.
        public init(offset: Duration) {
            self.offset = offset
        }

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct State {
        var now = Instant(offset: .zero)
    }

    private enum Wake {
        case reached
        case recheck
        case cancelled
    }

    private let state = WaitableState<State, Wake>(State())

    /// Creates a clock at its origin.
    public init() {}

    public var now: Instant { state.withLock { state, _ in state.now } }

    public var minimumResolution: Duration { .nanoseconds(1) }

    /// The number of tasks sleeping on this clock.
    public var sleepers: Int { state.withLock { _, waiters in waiters.count } }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        while true {
            let wake = await state.wait(cancelled: .cancelled) { state in
                state.now >= deadline ? .reached : nil
            }
            switch wake {
            case .reached: return
            case .recheck: continue
            case .cancelled: throw CancellationError()
            }
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has passed.
    ///
    /// Every sleeper re-checks its own deadline and goes back to sleep if it is still ahead.
    /// - Parameter duration: How far to move; must not be negative.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a manual clock moves forward only")
        state.withLock { state, waiters in
            state.now = state.now.advanced(by: duration)
            waiters.wakeAll(with: .recheck)
        }
    }

    /// Waits (in real time, yielding) until at least `count` tasks sleep on this clock.
    /// - Parameter count: The number of sleepers to wait for.
    public func waitForSleepers(_ count: Int = 1) async {
        while sleepers < count, !Task.isCancelled {
            await Task.yield()
        }
    }
}
