public import Coordination
import Synchronization

/// A token bucket that caps the rate of Mio requests across all jobs of the process.
///
/// Each call to ``acquire()`` reserves the next free permit and sleeps (on the injected clock) until it is due,
/// so waiting callers are served in order and at most `burst + permitsPerSecond × t` permits are granted in any
/// interval of length `t`.
public final class RateLimiter: Sendable {
    private struct State {
        var tokens: Double
        var updatedAt: Duration
    }

    /// Permits granted per second.
    public let permitsPerSecond: Double
    /// Permits that can be taken at once after an idle period.
    public let burst: Int
    private let clock: TimeSource
    private let state: Mutex<State>

    /// Creates a limiter, full.
    /// - Parameters:
    ///   - permitsPerSecond: The rate (greater than 0).
    ///   - burst: The bucket size (default 1: requests are spread evenly).
    ///   - clock: The time source.
    public init(permitsPerSecond: Double, burst: Int = 1, clock: TimeSource = .system) {
        precondition(permitsPerSecond > 0, "permitsPerSecond must be positive")
        self.permitsPerSecond = permitsPerSecond
        self.burst = max(1, burst)
        self.clock = clock
        self.state = Mutex(State(tokens: Double(max(1, burst)), updatedAt: clock.now()))
    }

    /// Takes one permit, waiting until it is due.
    /// - Throws: `CancellationError` if the task is cancelled while waiting (the permit is then lost).
    public func acquire() async throws {
        let now = clock.now()
        let wait = state.withLock { state -> Duration in
            let elapsed = now - state.updatedAt
            if elapsed > .zero {
                state.tokens = min(Double(burst), state.tokens + elapsed.timeInterval * permitsPerSecond)
                state.updatedAt = now
            }
            state.tokens -= 1
            return state.tokens >= 0 ? .zero : .seconds(-state.tokens / permitsPerSecond)
        }
        try await clock.sleep(for: wait)
    }
}
