public import Coordination
public import CoreMetrics
public import Logging
import Foundation
import Metrics
import Synchronization

/// Mio's health as every attempt of every job sees it: a circuit breaker, an adaptive concurrency limit, the pause
/// that a `Retry-After` on a 429 asks of the whole worker, and the stop of the line on an operator's mistake.
///
/// Every attempt of a ``JobHandler`` that has one passes ``admit()`` before it starts and reports its outcome with
/// ``record(_:_:)``. The feed of new jobs waits on ``waitUntilTakingJobs()``.
///
/// - **Breaker.** Attempts that fail because Mio is unavailable (5xx, timeouts, transport failures) are counted
///   across users in a sliding window. When at least ``Configuration/failureThreshold`` of them failed and they are
///   at least ``Configuration/failureRatio`` of the attempts in the window, the breaker opens: no new job is taken,
///   jobs in flight wait in ``admit()`` instead of spending their attempts, and after
///   ``Configuration/probeInterval`` one probe attempt at a time (half-open) tests Mio. An answer closes the
///   breaker and everything resumes; a failure opens it again for twice the interval, up to
///   ``Configuration/maxProbeInterval``.
/// - **Adaptive concurrency** (loss-based AIMD, per attempt): a 429 or a timeout halves the limit of attempts in
///   flight (once per round trip: only an attempt started after the last cut cuts again); every answered attempt
///   raises it by `1 / limit`, so by one per round trip, up to ``Configuration/maxConcurrency``. Until the first
///   cut the limit starts at ``Configuration/initialConcurrency`` and grows by half an attempt per answer (1.5
///   times per round trip: slow start), so that a fresh worker does not send its whole in-flight limit into a quota
///   at once. The growth per round trip is what overshoots a quota before the first 429 comes back: doubling sent
///   about half a window too many, 1.5 times a third.
/// - **Adaptive rate** (AIMD on requests per second, after a 429): a quota is a rate, which a limit of attempts in
///   flight meets only coarsely (at 20 ms a round trip, 2 attempts are 100 requests/s and 3 are 150). The first
///   429 starts pacing attempts at ``Configuration/rateDecrease`` times the answers of the last second of running
///   time (time not paused by `Retry-After`); each later cut multiplies the lower of the rate and that measure by
///   it (never below half the rate). While the pace holds attempts back, the rate grows by
///   ``Configuration/rateIncrease`` of itself per second of running time, and that growth doubles with each second
///   of growth without a 429 (10 %, 20 %, 40 % ... a second, at most ``Configuration/maxRateIncrease``; a cut
///   starts it again at ``Configuration/rateIncrease``); never while a pause runs. Requests then leave evenly just
///   under the quota, and only the few sent as the rate creeps over it are refused; a worker whose share of a quota
///   was freed (the others finished) finds the rest of it within seconds.
/// - **Retry-After.** A 429 with `Retry-After` pauses the admission of every attempt of the worker until then; after
///   the pause one attempt goes first, and the others follow once it was not refused (several workers sharing one
///   quota would otherwise all resume into a quota the others used up). Neither limit grows while a pause runs.
/// - **Stop the line.** A failure that is the deployment's fault (``JobFailure/Action/stopTheLine(reason:)``: a
///   wrong client secret, a missing or wrong encryption key) halts the worker: no new job, every attempt waits,
///   ``haltReason`` says what to fix (readiness fails with it). Every ``Configuration/haltProbeInterval`` one
///   attempt tries again, so that a fault fixed underneath (a key file or secret reloaded) resumes the worker; a
///   restart with the fix does too.
public final class MioHealth: Sendable {
    /// Settings of the breaker and the limiter; the defaults are safe for production.
    public struct Configuration: Sendable, Hashable {
        /// Length of the sliding window of attempts (default 10 s).
        public var window: Duration
        /// Failed attempts in the window that open the breaker (default 20).
        public var failureThreshold: Int
        /// Share of failed attempts in the window that opens the breaker along with the threshold (default 0.5).
        public var failureRatio: Double
        /// Wait before the first probe after the breaker opened (default 1 s); doubles after each failed probe.
        public var probeInterval: Duration
        /// Longest wait between probes (default 5 s).
        public var maxProbeInterval: Duration
        /// Wait between the attempts that test a stopped line (default 30 s).
        public var haltProbeInterval: Duration
        /// Whether 429s and timeouts adapt the limit of attempts in flight (default true).
        public var adaptiveConcurrency: Bool
        /// Highest limit of attempts in flight: the worker's in-flight limit (default 256).
        public var maxConcurrency: Int
        /// Lowest limit of attempts in flight (default 1).
        public var minConcurrency: Int
        /// The limit of attempts in flight before the first cut (slow start; default ``maxConcurrency``, which is
        /// no slow start): it grows by half an attempt per answer until the first 429 or timeout, or
        /// ``maxConcurrency``.
        public var initialConcurrency: Int
        /// Share of the rate (requests per second) that a 429 leaves (default 0.9).
        public var rateDecrease: Double
        /// Growth of the rate per second of running time while the pace holds attempts back, as a share of the
        /// rate, right after a cut (default 0.1: 10 % a second); it doubles with each second of growth without a 429,
        /// up to ``maxRateIncrease``.
        public var rateIncrease: Double
        /// Highest growth of the rate per second, as a share of the rate, that the doubling of ``rateIncrease``
        /// reaches (default 1: the rate at most doubles in a second; ``rateIncrease`` or less: no doubling).
        public var maxRateIncrease: Double

        /// Creates a configuration.
        /// - Parameters:
        ///   - window: Length of the sliding window of attempts.
        ///   - failureThreshold: Failed attempts in the window that open the breaker (at least 1).
        ///   - failureRatio: Share of failed attempts in the window that opens the breaker (0 to 1).
        ///   - probeInterval: Wait before the first probe.
        ///   - maxProbeInterval: Longest wait between probes.
        ///   - haltProbeInterval: Wait between the attempts that test a stopped line.
        ///   - adaptiveConcurrency: Whether 429s and timeouts adapt the limit of attempts in flight.
        ///   - maxConcurrency: Highest limit of attempts in flight.
        ///   - minConcurrency: Lowest limit of attempts in flight.
        ///   - initialConcurrency: The limit before the first cut (slow start); `nil` is `maxConcurrency`.
        ///   - rateDecrease: Share of the rate that a 429 leaves (0.5 to 1).
        ///   - rateIncrease: Growth of the rate per second of running time while it holds attempts back, right after a
        ///     cut (0 to 1).
        ///   - maxRateIncrease: Highest growth per second that the doubling of `rateIncrease` reaches (`rateIncrease`
        ///     to 1).
        public init(
            window: Duration = .seconds(10),
            failureThreshold: Int = 20,
            failureRatio: Double = 0.5,
            probeInterval: Duration = .seconds(1),
            maxProbeInterval: Duration = .seconds(5),
            haltProbeInterval: Duration = .seconds(30),
            adaptiveConcurrency: Bool = true,
            maxConcurrency: Int = 256,
            minConcurrency: Int = 1,
            initialConcurrency: Int? = nil,
            rateDecrease: Double = 0.9,
            rateIncrease: Double = 0.1,
            maxRateIncrease: Double = 1
        ) {
            self.window = window
            self.failureThreshold = max(1, failureThreshold)
            self.failureRatio = min(max(failureRatio, 0), 1)
            self.probeInterval = probeInterval
            self.maxProbeInterval = max(probeInterval, maxProbeInterval)
            self.haltProbeInterval = haltProbeInterval
            self.adaptiveConcurrency = adaptiveConcurrency
            self.maxConcurrency = max(1, maxConcurrency)
            self.minConcurrency = min(max(1, minConcurrency), self.maxConcurrency)
            self.initialConcurrency = min(max(self.minConcurrency, initialConcurrency ?? self.maxConcurrency),
                                          self.maxConcurrency)
            self.rateDecrease = min(max(rateDecrease, 0.5), 1)
            self.rateIncrease = min(max(rateIncrease, 0), 1)
            self.maxRateIncrease = min(max(maxRateIncrease, self.rateIncrease), 1)
        }
    }

    /// The breaker's state.
    public enum BreakerState: String, Sendable, Hashable {
        /// Mio answers: attempts go ahead.
        case closed
        /// Mio is unavailable: attempts wait until the next probe.
        case open
        /// One probe attempt tests Mio; the others wait for its outcome.
        case halfOpen = "half_open"

        /// The value of `mioctx_mio_breaker_state`: 0 closed, 1 half-open, 2 open.
        var gaugeValue: Int {
            switch self {
            case .closed: 0
            case .halfOpen: 1
            case .open: 2
            }
        }
    }

    /// What an attempt's outcome says about Mio.
    public enum Outcome: Sendable, Hashable {
        /// Mio answered (a success, or an answer about the job itself: 4xx, 401, no tokens).
        case answered
        /// Mio answered 429: slow down, and pause until `retryAfter` when given.
        case rateLimited(retryAfter: Duration?)
        /// Mio is unavailable: a 5xx or a transport failure.
        case unavailable
        /// The call timed out: Mio is unavailable or overloaded.
        case timedOut
        /// Not about Mio (the token store failed): nothing changes.
        case unrelated
        /// The deployment is wrong: stop the line with this reason.
        case operatorFault(code: String, reason: String)
    }

    /// What the handler makes of a failed attempt, as ``record(_:_:)`` decides.
    public enum Verdict: Sendable, Hashable {
        /// The attempt counts against the job's own attempts.
        case counts
        /// Mio was down for everyone (the breaker is open or the attempt was a probe), or the line stopped: the
        /// attempt does not count; the job waits in ``admit()`` again.
        case waitForMio
    }

    /// The right to make one attempt, from ``admit()``; give it back with ``record(_:_:)``.
    public struct Ticket: Sendable {
        let isProbe: Bool
        let epoch: Int
        /// The attempt took a permit of the pace.
        let paced: Bool
        /// When the attempt was admitted, on the health's clock.
        public let admittedAt: Duration
        /// How long the attempt waited to be admitted.
        public let waited: Duration
    }

    private struct Event {
        var at: Duration
        var failed: Bool
    }

    private enum Breaker {
        case closed
        case open(until: Duration, backoff: Duration)
        case halfOpen(backoff: Duration)

        var state: BreakerState {
            switch self {
            case .closed: .closed
            case .open: .open
            case .halfOpen: .halfOpen
            }
        }
    }

    private struct Halt {
        var code: String
        var reason: String
        var nextProbeAt: Duration
    }

    /// The pace of attempts after a 429: a token bucket at `rate` attempts per second, refilled up to `burst`.
    private struct Pace {
        /// Attempts per second; `nil` (no pace) until a 429 cuts it.
        var rate: Double?
        var permits = 0.0
        var permitsAt = Duration.zero
        /// A waiter sleeps until the next permit; the others wait until it took it (no herd every permit).
        var sleeper = false
        /// The pace held an attempt back since the rate last grew.
        var bound = false
        /// Running time when the rate last grew or was cut.
        var grownAt = Duration.zero
        /// Running time over which the rate grew since the last cut: each second of it doubles the growth.
        var growing = Duration.zero
        /// Running times of the answers of the last second of running time, from `head`.
        var answers: [Duration] = []
        var head = 0
        /// Time paused by `Retry-After` up to `accruedTo`: running time is the clock's time without it.
        var paused = Duration.zero
        var accruedTo = Duration.zero

        /// Permits that may be taken at once (50 ms of the rate): a late wake-up catches up, a pause does not
        /// release a burst.
        static func burst(_ rate: Double) -> Double { max(1, rate * 0.05) }

        mutating func refill(_ now: Duration) {
            guard let rate, now > permitsAt else { return }
            permits = min(Self.burst(rate), permits + (now - permitsAt).timeInterval * rate)
            permitsAt = now
        }

        /// Counts an answer at `running`.
        mutating func answered(at running: Duration) {
            answers.append(running)
            _ = answersInLastSecond(running)
        }

        /// Answers in the last second of running time up to `running`.
        mutating func answersInLastSecond(_ running: Duration) -> Int {
            let oldest = running - .seconds(1)
            while head < answers.count, answers[head] < oldest { head += 1 }
            if head > 1024, head * 2 > answers.count {
                answers.removeFirst(head)
                head = 0
            }
            return answers.count - head
        }
    }

    private struct State {
        var breaker = Breaker.closed
        var probeOutstanding = false
        var events: [Event] = []
        var head = 0
        var failures = 0
        var limit: Double
        /// No cut yet: the limit grows by ``slowStartGrowth`` per answer (slow start).
        var slowStart: Bool
        var pace = Pace()
        var inFlight = 0
        var epoch = 0
        var pausedUntil: Duration = .zero
        /// A `Retry-After` pause ended and no attempt since got an answer: one attempt at a time tests the quota
        /// before the others follow (with several workers on one quota, the others may have used it up).
        var afterPause = false
        var halt: Halt?

        var takesJobs: Bool {
            guard halt == nil, case .closed = breaker else { return false }
            return true
        }

        /// The clock's time without the time paused by `Retry-After` so far. Called before every change of
        /// `pausedUntil`, so that the pause from `pace.accruedTo` to `pausedUntil` is the one running.
        mutating func running(at now: Duration) -> Duration {
            if pace.accruedTo < now {
                let end = min(now, pausedUntil)
                if end > pace.accruedTo { pace.paused += end - pace.accruedTo }
                pace.accruedTo = now
            }
            return now - pace.paused
        }
    }

    private enum Gate: Sendable {
        case admitted(Ticket)
        case sleep(Duration)
        case retry
        case cancelled
    }

    private let configuration: Configuration
    private let clock: TimeSource
    private let logger: Logger
    private let metrics: HealthMetrics
    private let state: WaitableState<State, Gate>
    /// Whether new jobs are taken; the feed waits on it.
    private let takingJobs = WaitableState<Bool, Bool>(true)

    /// Creates the health of one worker's Mio.
    /// - Parameters:
    ///   - configuration: Breaker and limiter settings.
    ///   - clock: Time of the window, the probes and the pauses.
    ///   - logger: Logs the breaker's changes (warning), pauses (debug) and a stopped line (critical).
    ///   - metricsFactory: Receives `mioctx_mio_breaker_state`, `mioctx_mio_concurrency_limit`,
    ///     `mioctx_mio_rate_limit`, `mioctx_mio_pauses_total`, `mioctx_mio_pause_seconds_total`,
    ///     `mioctx_mio_attempt_duration_seconds` and `mioctx_halted{fault}`.
    public init(
        configuration: Configuration = Configuration(),
        clock: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.mio-health"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        self.metrics = HealthMetrics(factory: metricsFactory)
        let initial = configuration.initialConcurrency
        self.state = WaitableState(
            State(limit: Double(initial), slowStart: initial < configuration.maxConcurrency)
        )
        metrics.breaker(.closed)
        metrics.limit(initial)
        metrics.rate(nil)
    }

    /// The breaker's state.
    public var breakerState: BreakerState { state.withLock { state, _ in state.breaker.state } }

    /// The current limit of attempts in flight.
    public var concurrencyLimit: Int { state.withLock { state, _ in Int(state.limit) } }

    /// The current pace of attempts in requests per second, or `nil` while attempts are not paced (before the
    /// first 429).
    public var rateLimit: Double? { state.withLock { state, _ in state.pace.rate } }

    /// Whether new jobs are taken: the breaker is closed and the line runs.
    public var isTakingJobs: Bool { takingJobs.withLock { taking, _ in taking } }

    /// Why the line is stopped (what the operator must fix), or `nil` while it runs.
    public var haltReason: String? { state.withLock { state, _ in state.halt?.reason } }

    /// What fails readiness: `line stopped: <what to fix>` while the line is stopped, else `nil`. An open breaker
    /// does not: a paused worker must not be restarted.
    public var readinessFailure: String? { haltReason.map { "line stopped: \($0)" } }

    /// Calls admitted and not yet recorded or abandoned (for diagnostics).
    public var inFlightCount: Int { state.withLock { state, _ in state.inFlight } }

    /// One line for readiness and operators: `closed, concurrency limit 256`, `open`, ...
    public var summary: String {
        state.withLock { state, _ in
            var text = "breaker \(state.breaker.state.rawValue), concurrency limit \(Int(state.limit))"
            if let rate = state.pace.rate { text += ", rate limit \(Int(rate.rounded()))/s" }
            let now = clock.now()
            if state.pausedUntil > now {
                text += ", paused for \(state.pausedUntil - now) (Retry-After)"
            }
            if let halt = state.halt { text += ", stopped: \(halt.reason)" }
            return text
        }
    }

    /// Returns once new jobs may be taken: the breaker is closed and the line runs.
    /// - Returns: `false` when the task was cancelled.
    @discardableResult
    public func waitUntilTakingJobs() async -> Bool {
        await takingJobs.wait(cancelled: false) { taking in taking ? true : nil }
    }

    /// Waits until an attempt may start: the breaker is closed (or this is its probe), no `Retry-After` pause runs,
    /// the concurrency limit has room, and the line runs (or this is its probe).
    /// - Returns: The ticket to give back with ``record(_:_:)``.
    /// - Throws: `CancellationError` when the task is cancelled.
    public func admit() async throws -> Ticket {
        let start = clock.now()
        // This caller sleeps until the pace's next permit; the others wait until it took it.
        var pacing = false
        do {
            while true {
                try Task.checkCancellation()
                let gate = await state.wait(cancelled: .cancelled) { state in
                    if pacing {
                        pacing = false
                        state.pace.sleeper = false
                    }
                    return self.decide(&state, now: self.clock.now(), since: start, pacing: &pacing)
                }
                switch gate {
                case .admitted(let ticket):
                    if ticket.paced {
                        // The next waiter becomes the one that sleeps until the next permit.
                        state.withLock { state, waiters in
                            if !state.pace.sleeper { _ = waiters.wakeFirst(with: .retry) }
                        }
                    }
                    return ticket
                case .sleep(let duration):
                    try await clock.sleep(for: duration)
                case .retry:
                    continue
                case .cancelled:
                    throw CancellationError()
                }
            }
        } catch {
            if pacing {
                state.withLock { state, waiters in
                    state.pace.sleeper = false
                    _ = waiters.wakeFirst(with: .retry)
                }
            }
            throw error
        }
    }

    private func decide(_ state: inout State, now: Duration, since start: Duration, pacing: inout Bool) -> Gate? {
        func probe() -> Gate {
            state.probeOutstanding = true
            return .admitted(Ticket(isProbe: true, epoch: state.epoch, paced: false, admittedAt: now,
                                    waited: now - start))
        }
        if let halt = state.halt {
            if state.probeOutstanding { return nil }
            return now >= halt.nextProbeAt ? probe() : .sleep(halt.nextProbeAt - now)
        }
        switch state.breaker {
        case .open(let until, let backoff):
            guard now >= until else { return .sleep(until - now) }
            state.breaker = .halfOpen(backoff: backoff)
            metrics.breaker(.halfOpen)
            return state.probeOutstanding ? nil : probe()
        case .halfOpen:
            return state.probeOutstanding ? nil : probe()
        case .closed:
            if state.pausedUntil > now { return .sleep(state.pausedUntil - now) }
            if state.afterPause { return state.probeOutstanding ? nil : probe() }
            guard state.inFlight < Int(state.limit) else { return nil }
            var paced = false
            if let rate = state.pace.rate {
                state.pace.refill(now)
                // (A hair under a whole permit is one: the clock's durations round.)
                if state.pace.permits < 1 - 1e-9 {
                    state.pace.bound = true
                    if state.pace.sleeper { return nil }
                    state.pace.sleeper = true
                    pacing = true
                    return .sleep(.seconds((1 - state.pace.permits) / rate))
                }
                state.pace.permits -= 1
                paced = true
            }
            state.inFlight += 1
            return .admitted(Ticket(isProbe: false, epoch: state.epoch, paced: paced, admittedAt: now,
                                    waited: now - start))
        }
    }

    /// Growth of the limit per answered attempt during slow start: 1.5 times per round trip.
    static let slowStartGrowth = 0.5

    /// Gives back an attempt's ticket with what its outcome says about Mio.
    /// - Parameters:
    ///   - ticket: The ticket of ``admit()``.
    ///   - outcome: What the attempt showed.
    /// - Returns: Whether a failed attempt counts against the job's own attempts.
    @discardableResult
    public func record(_ ticket: Ticket, _ outcome: Outcome) -> Verdict {
        let now = clock.now()
        metrics.attempt(took: now - ticket.admittedAt)
        var log: (() -> Void)?
        let (verdict, takes) = state.withLock { state, waiters -> (Verdict, Bool?) in
            let tookJobs = state.takesJobs
            if ticket.isProbe {
                state.probeOutstanding = false
            } else {
                state.inFlight -= 1
            }
            var verdict = Verdict.counts
            var changed = ticket.isProbe
            switch outcome {
            case .operatorFault(let code, let reason):
                if state.halt == nil {
                    log = { [logger] in
                        logger.critical(
                            "stopping the line: the deployment must be fixed; no job is taken or failed until then",
                            metadata: ["fault": "\(code)", "reason": "\(reason)"]
                        )
                    }
                    metrics.halted(code, true)
                }
                state.halt = Halt(code: code, reason: reason, nextProbeAt: now + configuration.haltProbeInterval)
                changed = true
                verdict = .waitForMio
            case .unrelated:
                verdict = .counts
            case .answered, .rateLimited, .unavailable, .timedOut:
                if let halt = state.halt {
                    state.halt = nil
                    changed = true
                    metrics.halted(halt.code, false)
                    log = { [logger] in logger.notice("the line runs again", metadata: ["fault": "\(halt.code)"]) }
                }
                let failed = outcome == .unavailable || outcome == .timedOut
                verdict = failed ? breakerFailure(&state, ticket: ticket, now: now, log: &log, changed: &changed)
                    : breakerAnswer(&state, ticket: ticket, now: now, log: &log, changed: &changed)
                adapt(&state, ticket: ticket, outcome: outcome, now: now, waiters: &waiters)
            }
            if changed {
                _ = waiters.wakeAll(with: .retry)
            } else if !ticket.isProbe {
                _ = waiters.wakeFirst(with: .retry)
            }
            let takes = state.takesJobs
            return (verdict, takes == tookJobs ? nil : takes)
        }
        log?()
        if let takes {
            takingJobs.withLock { taking, waiters in
                taking = takes
                if takes { _ = waiters.wakeAll(with: true) }
            }
        }
        return verdict
    }

    /// Gives back a ticket whose attempt was cancelled: its outcome says nothing.
    /// - Parameter ticket: The ticket of ``admit()``.
    public func abandon(_ ticket: Ticket) {
        state.withLock { state, waiters in
            if ticket.isProbe {
                state.probeOutstanding = false
                _ = waiters.wakeAll(with: .retry)
            } else {
                state.inFlight -= 1
                _ = waiters.wakeFirst(with: .retry)
            }
        }
    }

    private func breakerFailure(
        _ state: inout State,
        ticket: Ticket,
        now: Duration,
        log: inout (() -> Void)?,
        changed: inout Bool
    ) -> Verdict {
        append(&state, Event(at: now, failed: true), now: now)
        switch state.breaker {
        case .closed:
            let total = state.events.count - state.head
            guard state.failures >= configuration.failureThreshold,
                Double(state.failures) >= configuration.failureRatio * Double(total)
            else { return .counts }
            state.breaker = .open(until: now + configuration.probeInterval, backoff: configuration.probeInterval)
            metrics.breaker(.open)
            changed = true
            let failures = state.failures
            log = { [logger, configuration] in
                logger.warning(
                    "Mio is unavailable: the breaker opened; jobs wait, none is taken until a probe succeeds",
                    metadata: ["failures": "\(failures)", "attempts": "\(total)", "window": "\(configuration.window)"]
                )
            }
            return .waitForMio
        case .open, .halfOpen:
            guard ticket.isProbe, case .halfOpen(let backoff) = state.breaker else { return .waitForMio }
            let next = min(backoff * 2, configuration.maxProbeInterval)
            state.breaker = .open(until: now + backoff, backoff: next)
            metrics.breaker(.open)
            changed = true
            return .waitForMio
        }
    }

    private func breakerAnswer(
        _ state: inout State,
        ticket: Ticket,
        now: Duration,
        log: inout (() -> Void)?,
        changed: inout Bool
    ) -> Verdict {
        append(&state, Event(at: now, failed: false), now: now)
        if ticket.isProbe, case .halfOpen = state.breaker {
            state.breaker = .closed
            state.events.removeAll(keepingCapacity: true)
            state.head = 0
            state.failures = 0
            metrics.breaker(.closed)
            changed = true
            log = { [logger] in logger.warning("Mio answers again: the breaker closed; jobs resume") }
        }
        return .counts
    }

    private func append(_ state: inout State, _ event: Event, now: Duration) {
        state.events.append(event)
        if event.failed { state.failures += 1 }
        let oldest = now - configuration.window
        while state.head < state.events.count, state.events[state.head].at < oldest {
            if state.events[state.head].failed { state.failures -= 1 }
            state.head += 1
        }
        if state.head > 1024, state.head * 2 > state.events.count {
            state.events.removeFirst(state.head)
            state.head = 0
        }
    }

    /// Loss-based AIMD over the limit of attempts in flight, and the pause that `Retry-After` asks for.
    private func adapt(
        _ state: inout State,
        ticket: Ticket,
        outcome: Outcome,
        now: Duration,
        waiters: inout Waiters<Gate>
    ) {
        if case .rateLimited(let retryAfter?) = outcome, retryAfter > .zero, now + retryAfter > state.pausedUntil {
            _ = state.running(at: now)
            let until = now + retryAfter
            let added = until - max(state.pausedUntil, now)
            if state.pausedUntil <= now { metrics.paused() }
            metrics.pausedFor(added)
            state.pausedUntil = until
            state.afterPause = true
        } else if ticket.isProbe, state.afterPause {
            // The quota answered again: every attempt may go.
            state.afterPause = false
        }
        guard configuration.adaptiveConcurrency else { return }
        let old = Int(state.limit)
        switch outcome {
        case .rateLimited, .timedOut:
            // One cut per round trip: attempts that started before the last cut saw the old limit.
            guard ticket.epoch == state.epoch else { return }
            state.epoch += 1
            state.slowStart = false
            state.limit = max(Double(configuration.minConcurrency), state.limit / 2)
            if case .rateLimited = outcome { cutRate(&state, now: now) }
        case .answered:
            let running = state.running(at: now)
            state.pace.answered(at: running)
            // Nothing grows while a pause runs or its first attempt is out: the quota has not answered yet.
            guard state.pausedUntil <= now, !state.afterPause else { return }
            growRate(&state, running: running)
            // Only a limit in use grows; otherwise an idle worker would raise it without bound of evidence.
            guard Double(state.inFlight + 1) * 2 >= state.limit else { return }
            let step = state.slowStart ? Self.slowStartGrowth : 1 / state.limit
            state.limit = min(Double(configuration.maxConcurrency), state.limit + step)
            if Int(state.limit) > old { _ = waiters.wakeFirst(with: .retry) }
        default:
            return
        }
        if Int(state.limit) != old { metrics.limit(Int(state.limit)) }
    }

    /// A 429 cuts the pace: from the answers of the last second of running time on the first, then the lower of
    /// the rate and those answers, times ``Configuration/rateDecrease``, and never below half the rate.
    private func cutRate(_ state: inout State, now: Duration) {
        let running = state.running(at: now)
        let measured = Double(state.pace.answersInLastSecond(running))
        let rate: Double
        if let current = state.pace.rate {
            rate = max(current / 2, min(current, measured) * configuration.rateDecrease)
        } else {
            // Nothing answered yet to measure by: the concurrency limit and the pause act alone until then.
            guard measured >= 1 else { return }
            rate = measured * configuration.rateDecrease
            state.pace.permits = 0
            state.pace.permitsAt = now
        }
        state.pace.rate = max(1, rate)
        state.pace.grownAt = running
        state.pace.growing = .zero
        state.pace.bound = false
        metrics.rate(state.pace.rate)
    }

    /// An answer raises the pace per second of running time since the last change, if the pace held an attempt back
    /// meanwhile (an unused rate does not grow): by ``Configuration/rateIncrease`` of itself right after a cut,
    /// doubled for each second that the rate grew since (at most ``Configuration/maxRateIncrease``). The longer no
    /// 429 comes, the faster the probe: quota freed by other workers is found in seconds, not tens of seconds, while
    /// the growth near the point of the last 429 stays slow.
    private func growRate(_ state: inout State, running: Duration) {
        guard let rate = state.pace.rate else { return }
        let elapsed = min((running - state.pace.grownAt).timeInterval, 1)
        state.pace.grownAt = running
        guard state.pace.bound, elapsed > 0 else { return }
        state.pace.bound = false
        let increase = min(configuration.maxRateIncrease,
                           configuration.rateIncrease * pow(2, state.pace.growing.timeInterval))
        state.pace.growing += .timeInterval(elapsed)
        let grown = rate * (1 + increase * elapsed)
        state.pace.rate = grown
        if Int(grown) != Int(rate) { metrics.rate(grown) }
    }
}

/// Metrics of ``MioHealth``.
///
/// - `mioctx_mio_breaker_state`: 0 closed, 1 half-open, 2 open.
/// - `mioctx_mio_concurrency_limit`: the adaptive limit of attempts in flight.
/// - `mioctx_mio_rate_limit`: the adaptive pace of attempts in requests per second after a 429 (0: not paced).
/// - `mioctx_mio_pauses_total`, `mioctx_mio_pause_seconds_total`: pauses of the whole worker on a 429's
///   `Retry-After`, and their length.
/// - `mioctx_mio_attempt_duration_seconds`: each attempt's time from admission to outcome (never across retries).
/// - `mioctx_halted{fault}`: 1 while the line is stopped by that operator fault (`invalid_client`,
///   `key_configuration`, `decryption_failed`).
struct HealthMetrics: Sendable {
    private let factory: any MetricsFactory
    private let breakerGauge: Gauge
    private let limitGauge: Gauge
    private let rateGauge: Gauge
    private let pauses: Counter
    private let pauseSeconds: FloatingPointCounter
    private let attempts: Timer

    init(factory: any MetricsFactory) {
        self.factory = factory
        breakerGauge = Gauge(label: "mioctx_mio_breaker_state", factory: factory)
        limitGauge = Gauge(label: "mioctx_mio_concurrency_limit", factory: factory)
        rateGauge = Gauge(label: "mioctx_mio_rate_limit", factory: factory)
        pauses = Counter(label: "mioctx_mio_pauses_total", factory: factory)
        pauseSeconds = FloatingPointCounter(label: "mioctx_mio_pause_seconds_total", factory: factory)
        attempts = Timer(label: "mioctx_mio_attempt_duration_seconds", factory: factory)
        // Exported at 0 from the start, so that dashboards and alerts see the series before any halt.
        for fault in Self.operatorFaults {
            halted(fault, false)
        }
    }

    /// The `fault` label values of `mioctx_halted`.
    static let operatorFaults = ["invalid_client", "key_configuration", "decryption_failed"]

    func breaker(_ state: MioHealth.BreakerState) { breakerGauge.record(state.gaugeValue) }
    func limit(_ limit: Int) { limitGauge.record(limit) }
    func rate(_ rate: Double?) { rateGauge.record(rate ?? 0) }
    func paused() { pauses.increment() }
    func pausedFor(_ duration: Duration) { pauseSeconds.increment(by: duration.timeInterval) }
    func attempt(took duration: Duration) { attempts.record(duration: duration) }
    func halted(_ fault: String, _ on: Bool) {
        Gauge(label: "mioctx_halted", dimensions: [("fault", fault)], factory: factory).record(on ? 1 : 0)
    }
}
