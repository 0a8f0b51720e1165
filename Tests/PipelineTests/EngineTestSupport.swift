import Pipeline
import Foundation
import Synchronization

/// Collects the engine's events.
final class EventLog: Sendable {
    private struct State {
        var done: [JobSource] = []
        var deliveryFailed: [JobSource] = []
        var cancelled: [JobSource] = []
        var backpressure: [ProcessingEngine.Event] = []
    }

    private let state = Mutex(State())

    func record(_ event: ProcessingEngine.Event) {
        state.withLock { state in
            switch event {
            case .done(let source): state.done.append(source)
            case .deliveryFailed(let source, _): state.deliveryFailed.append(source)
            case .cancelled(let source): state.cancelled.append(source)
            case .pauseInput, .resumeInput: state.backpressure.append(event)
            }
        }
    }

    var done: [JobSource] { state.withLock { $0.done } }
    var deliveryFailed: [JobSource] { state.withLock { $0.deliveryFailed } }
    var cancelled: [JobSource] { state.withLock { $0.cancelled } }
    /// `true` for pause, `false` for resume, in delivery order.
    var pauses: [Bool] {
        state.withLock { state in
            state.backpressure.map { if case .pauseInput = $0 { true } else { false } }
        }
    }
}

/// A sink that keeps everything in memory and can be told to fail.
final class MemorySink: ResultSink {
    private struct State {
        var results: [JobResult] = []
        var deadLetters: [(InputItem, InvalidJob)] = []
        var publishAttempts = 0
        var failuresLeft: Int
        var alwaysFailJobID: String?
    }

    struct Refused: Error {}

    private let state: Mutex<State>

    init(failFirst failures: Int = 0, alwaysFailJobID: String? = nil) {
        state = Mutex(State(failuresLeft: failures, alwaysFailJobID: alwaysFailJobID))
    }

    func publish(_ result: JobResult, for item: InputItem) async throws {
        try state.withLock { state in
            state.publishAttempts += 1
            if state.failuresLeft > 0 {
                state.failuresLeft -= 1
                throw Refused()
            }
            if result.jobID == state.alwaysFailJobID { throw Refused() }
            state.results.append(result)
        }
    }

    func deadLetter(_ item: InputItem, reason: InvalidJob) async throws {
        state.withLock { $0.deadLetters.append((item, reason)) }
    }

    var results: [JobResult] { state.withLock { $0.results } }
    var deadLetters: [(InputItem, InvalidJob)] { state.withLock { $0.deadLetters } }
    var publishAttempts: Int { state.withLock { $0.publishAttempts } }
}

/// Tokens derived from the user id, no store.
struct FixedTokens: TokenSource {
    func accessToken(for userID: String) async throws -> String { "tok-\(userID)" }
    func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String { "tok-\(userID)" }
}

/// A Mio stand-in that answers after a short random delay and measures its peak concurrency, in all and per
/// access token (that is, per user).
final class ConcurrencyMeter: ContextAPI {
    private struct State {
        var current = 0
        var peak = 0
        var currentPerToken: [String: Int] = [:]
        var peakPerToken = 0
        var calls = 0
    }

    private let state = Mutex(State())
    private let latency: ClosedRange<Int>
    private let gate: Gate?

    /// - Parameters:
    ///   - latencyMicroseconds: Range of the random answer time.
    ///   - gate: When set, every call waits for the gate to open first.
    init(latencyMicroseconds: ClosedRange<Int> = 100 ... 2000, gate: Gate? = nil) {
        self.latency = latencyMicroseconds
        self.gate = gate
    }

    var peak: Int { state.withLock { $0.peak } }
    var peakPerUser: Int { state.withLock { $0.peakPerToken } }
    var calls: Int { state.withLock { $0.calls } }
    var current: Int { state.withLock { $0.current } }

    private func measure<T>(_ token: String, _ body: () async throws -> T) async throws -> T {
        state.withLock { state in
            state.calls += 1
            state.current += 1
            state.peak = max(state.peak, state.current)
            state.currentPerToken[token, default: 0] += 1
            state.peakPerToken = max(state.peakPerToken, state.currentPerToken[token]!)
        }
        defer {
            state.withLock { state in
                state.current -= 1
                state.currentPerToken[token]! -= 1
            }
        }
        if let gate { try await gate.wait() }
        try await Task.sleep(for: .microseconds(Int.random(in: latency)))
        return try await body()
    }

    func getContext(query: String, accessToken: String) async throws -> String {
        try await measure(accessToken) { "context for \(query)" }
    }

    func getContextSummary(accessToken: String) async throws -> String? {
        try await measure(accessToken) { nil }
    }
}

/// A latch that callers wait on until it is opened.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async throws {
        await withCheckedContinuation { continuation in
            let proceed = state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
        try Task.checkCancellation()
    }
}

/// An item carrying a job.
func jobItem(
    _ index: Int,
    user: String,
    op: String = "context",
    key: String? = nil,
    partition: PartitionID = PartitionID(topic: "jobs", partition: 0)
) -> InputItem {
    let value = #"{"id":"job-\#(index)","userId":"\#(user)","query":"q\#(index)","op":"\#(op)","metadata":{"n":\#(index)}}"#
    return InputItem(
        value: Array(value.utf8),
        key: key.map { Array($0.utf8) },
        headers: [MessageHeader(name: "traceparent", value: Array("00-trace-\(index)-01".utf8))],
        source: JobSource(partition: partition, offset: Int64(index))
    )
}

/// Runs `body` with an engine whose `run()` is going, then drains it.
func withEngine<T>(
    api: any ContextAPI,
    sink: MemorySink,
    tokens: any TokenSource = FixedTokens(),
    configuration: ProcessingEngine.Configuration,
    events: EventLog,
    _ body: (ProcessingEngine) async throws -> T
) async throws -> T {
    let handler = JobHandler(api: api, tokens: tokens)
    let engine = ProcessingEngine(handler: handler, sink: sink, configuration: configuration) { events.record($0) }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await engine.run() }
        do {
            let value = try await body(engine)
            _ = await engine.drain(timeout: .seconds(60))
            try await group.waitForAll()
            return value
        } catch {
            engine.stop()
            throw error
        }
    }
}
