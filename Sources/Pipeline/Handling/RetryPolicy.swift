/// When to retry a job after a retriable failure (429, 5xx, timeout, transport, retriable token error).
///
/// Exponential backoff with full jitter: before attempt `n + 1` the handler waits a uniformly random time in
/// `[0, min(maxBackoff, initialBackoff * multiplier^(n-1)))`, but never less than the server's `Retry-After`.
/// It gives up after ``maxAttempts`` attempts, or when the next wait would end after ``maxTimePerJob``.
public struct RetryPolicy: Sendable, Hashable {
    /// Most attempts per job, the first included (default 5). The single retry after a 401 and a token refresh
    /// is not limited by it.
    public var maxAttempts: Int
    /// Most time a job may spend, waits included (default 60 s). No retry starts after it.
    public var maxTimePerJob: Duration
    /// Backoff cap before the first retry (default 200 ms).
    public var initialBackoff: Duration
    /// Largest backoff cap (default 10 s). A larger `Retry-After` is still honoured.
    public var maxBackoff: Duration
    /// Growth of the backoff cap per attempt (default 2).
    public var multiplier: Double
    /// When set, 429s do not count against ``maxAttempts`` or ``maxTimePerJob``: a job that keeps getting them
    /// ends `rate_limited` only once it has run this long (default `nil`: a 429 is an attempt like any other).
    /// `mioctx run` sets it (`processing.retry.maxTimeRateLimited`), since its adaptive limit slows down on 429s.
    public var maxTimeRateLimited: Duration?

    /// Creates a policy; the defaults are safe for production.
    /// - Parameters:
    ///   - maxAttempts: Most attempts per job (at least 1).
    ///   - maxTimePerJob: Most time per job.
    ///   - initialBackoff: Backoff cap before the first retry.
    ///   - maxBackoff: Largest backoff cap.
    ///   - multiplier: Growth of the cap per attempt.
    ///   - maxTimeRateLimited: When set, how long a job may keep getting 429s before it ends `rate_limited`.
    public init(
        maxAttempts: Int = 5,
        maxTimePerJob: Duration = .seconds(60),
        initialBackoff: Duration = .milliseconds(200),
        maxBackoff: Duration = .seconds(10),
        multiplier: Double = 2,
        maxTimeRateLimited: Duration? = nil
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.maxTimePerJob = maxTimePerJob
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.multiplier = multiplier
        self.maxTimeRateLimited = maxTimeRateLimited
    }

    /// The cap of the random backoff after `attempt` failed attempts.
    /// - Parameter attempt: Attempts made so far (1 after the first failure).
    /// - Returns: `min(maxBackoff, initialBackoff * multiplier^(attempt-1))`.
    public func backoffCap(afterAttempt attempt: Int) -> Duration {
        // Integer steps keep the usual caps exact (200 ms, 400 ms, ...); a fractional multiplier rounds.
        let integralMultiplier = multiplier.rounded() == multiplier && multiplier >= 1 && multiplier < 1024
        var cap = initialBackoff
        var step = 1
        while step < attempt && cap < maxBackoff {
            cap = integralMultiplier ? cap * Int(multiplier) : cap * multiplier
            step += 1
        }
        return min(cap, maxBackoff)
    }

    /// The wait before the next attempt.
    /// - Parameters:
    ///   - attempt: Attempts made so far (1 after the first failure).
    ///   - retryAfter: The server's `Retry-After`, if any: the wait is never shorter.
    ///   - random: A uniform random number in `[0, 1)` (injected for tests).
    /// - Returns: `max(retryAfter, random * backoffCap(afterAttempt: attempt))`.
    public func delay(afterAttempt attempt: Int, retryAfter: Duration?, random: Double) -> Duration {
        let jittered = backoffCap(afterAttempt: attempt) * min(max(random, 0), 1)
        guard let retryAfter, retryAfter > jittered else { return jittered }
        return retryAfter
    }
}
