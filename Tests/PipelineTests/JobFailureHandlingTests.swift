import Coordination
import Foundation
import Pipeline
import Synchronization
import Testing

/// The handler acts on the pipeline's own classification of failures, with no Mio or token store involved.
@Suite struct JobFailureHandlingTests {
    /// Answers from a script of outcomes: a content or an error to throw.
    final class Script: ContextAPI {
        private let outcomes: Mutex<[Result<String, any Error>]>

        init(_ outcomes: [Result<String, any Error>]) {
            self.outcomes = Mutex(outcomes)
        }

        func getContext(query: String, accessToken: String) async throws -> String {
            try outcomes.withLock { $0.count > 1 ? $0.removeFirst() : $0[0] }.get()
        }

        func getContextSummary(accessToken: String) async throws -> String? { nil }
    }

    /// Tokens that count refreshes and may throw a failure for the lookup.
    final class Tokens: TokenSource {
        let lookupFailure: JobFailure?
        let refreshes = Mutex(0)

        init(lookupFailure: JobFailure? = nil) {
            self.lookupFailure = lookupFailure
        }

        func accessToken(for userID: String) async throws -> String {
            if let lookupFailure { throw lookupFailure }
            return "token"
        }

        func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String {
            refreshes.withLock { $0 += 1 }
            return "refreshed"
        }
    }

    struct Unknown: Error {}

    let job = Job(id: "j", userID: "u", query: "q")

    func handler(_ api: Script, tokens: Tokens = Tokens(), clock: VirtualClock) -> JobHandler {
        JobHandler(api: api, tokens: tokens, clock: clock.timeSource, random: { 0.5 })
    }

    @Test func aRetriedFailureWaitsItsDelayThenSucceeds() async throws {
        let clock = VirtualClock()
        let failure = JobFailure(
            .retry(after: .seconds(2), cause: .serverError),
            status: .upstreamUnavailable,
            code: "server_error",
            message: "Mio answered 503"
        )
        let result = try await handler(Script([.failure(failure), .success("ctx")]), clock: clock).handle(job)
        #expect(result.status == .ok)
        #expect(result.payload == .context("ctx"))
        #expect(result.attempts == 2)
        #expect(clock.sleeps == [.seconds(2)])
    }

    @Test func aRetriedFailureEndsWithItsStatusWhenTheAttemptsRunOut() async throws {
        let clock = VirtualClock()
        let failure = JobFailure(.retry(after: nil, cause: .rateLimited), status: .rateLimited, code: "rate_limited", message: "m")
        let result = try await handler(Script([.failure(failure)]), clock: clock).handle(job)
        #expect(result.status == .rateLimited)
        #expect(result.failure == JobResult.Failure(code: "rate_limited", message: "m; gave up after 5 attempts"))
    }

    @Test func aRefusedTokenIsRefreshedOnceAndARefusalAfterThatEndsTheJob() async throws {
        let clock = VirtualClock()
        let tokens = Tokens()
        let refused = JobFailure(.refreshAndRetryOnce, status: .reauthRequired, code: "unauthorized", message: "401")
        let result = try await handler(Script([.failure(refused)]), tokens: tokens, clock: clock).handle(job)
        #expect(result.status == .reauthRequired)
        #expect(
            result.failure
                == JobResult.Failure(
                    code: "unauthorized",
                    message: "401 again after the token was refreshed: the user must reconnect"
                )
        )
        #expect(tokens.refreshes.withLock { $0 } == 1)
        #expect(clock.sleeps.isEmpty)
    }

    @Test func aRefusalRaisedWhileGettingTheTokenEndsTheJobWithoutARefresh() async throws {
        let clock = VirtualClock()
        let refused = JobFailure(.refreshAndRetryOnce, status: .reauthRequired, code: "unauthorized", message: "401")
        let tokens = Tokens(lookupFailure: refused)
        let result = try await handler(Script([.success("ctx")]), tokens: tokens, clock: clock).handle(job)
        #expect(result.status == .reauthRequired)
        #expect(result.failure == JobResult.Failure(code: "unauthorized", message: "401"))
        #expect(tokens.refreshes.withLock { $0 } == 0)
    }

    @Test func aFinishingFailureEndsTheJobAtOnce() async throws {
        let clock = VirtualClock()
        let failure = JobFailure(.finish, status: .noTokens, code: "no_tokens", message: "connect the user first")
        let result = try await handler(Script([.success("ctx")]), tokens: Tokens(lookupFailure: failure), clock: clock)
            .handle(job)
        #expect(result.status == .noTokens)
        #expect(result.attempts == 1)
        #expect(result.failure == JobResult.Failure(code: "no_tokens", message: "connect the user first"))
    }

    @Test func anyOtherErrorIsARetriedTransportFailure() async throws {
        let clock = VirtualClock()
        let result = try await handler(Script([.failure(Unknown())]), clock: clock).handle(job)
        #expect(result.status == .upstreamUnavailable)
        #expect(
            result.failure
                == JobResult.Failure(
                    code: "transport_failure",
                    message: "the call to Mio failed (Unknown); gave up after 5 attempts"
                )
        )
        #expect(clock.sleeps.count == 4)
    }

    @Test func aDrainPastItsDeadlineOnTheManualClockCancelsJobsInFlight() async throws {
        let manual = ManualClock()
        let api = ConcurrencyMeter(latencyMicroseconds: 3_600_000_000 ... 3_600_000_000)
        let events = EventLog()
        let handler = JobHandler(
            api: api,
            tokens: FixedTokens(),
            clock: TimeSource(manual, start: Date(timeIntervalSince1970: 1_800_000_000))
        )
        let engine = ProcessingEngine(handler: handler, sink: MemorySink()) { events.record($0) }
        async let running: Void = engine.run()
        for index in 0 ..< 3 { engine.submit(jobItem(index, user: "u\(index)")) }
        while api.current < 3 { await Task.yield() }
        async let drained = engine.drain(timeout: .seconds(30))
        await manual.waitForSleepers(1)
        #expect(engine.pendingCount == 3, "the drain waits on the manual clock, not on real time")
        manual.advance(by: .seconds(30))
        #expect(await drained == false)
        await running
        #expect(Set(events.cancelled.map(\.offset)) == [0, 1, 2])
        #expect(events.done.isEmpty)
    }
}
