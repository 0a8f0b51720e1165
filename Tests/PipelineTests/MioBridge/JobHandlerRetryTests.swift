import Pipeline
import PipelineMioBridge
import Foundation
import Mio
import MioTokens
import Testing

/// The retry rules of `JobHandler`, timed on a virtual clock (no real sleeps) with a scripted Mio.
@Suite struct JobHandlerRetryTests {
    let job = Job(id: "job-1", userID: "u1", query: "what is new?", metadata: RawJSON(Array(#"{"k":1}"#.utf8)))
    let policy = RetryPolicy(maxAttempts: 5, maxTimePerJob: .seconds(60), initialBackoff: .milliseconds(200), maxBackoff: .seconds(10))

    func handler(_ api: ScriptedAPI, _ tokens: ScriptedTokens = ScriptedTokens(), clock: VirtualClock, random: Double = 0.5, policy: RetryPolicy? = nil) -> JobHandler {
        JobHandler(
            api: api,
            tokens: tokens,
            configuration: .init(retry: policy ?? self.policy),
            clock: clock.timeSource,
            random: { random }
        )
    }

    @Test func retryAfterIsAFloorEvenWhenJitterIsZero() async throws {
        let clock = VirtualClock()
        let api = ScriptedAPI([.failure(.http(429, retryAfter: .seconds(3))), .content("ctx")])
        let result = try await handler(api, clock: clock, random: 0).handle(job)
        #expect(result.status == .ok)
        #expect(result.payload == .context("ctx"))
        #expect(result.attempts == 2)
        #expect(clock.sleeps == [.seconds(3)])
        #expect(result.duration == .seconds(3))
        #expect(result.metadata == job.metadata)
    }

    @Test func backoffWaitsStayWithinTheExponentialCaps() async throws {
        let clock = VirtualClock()
        let api = ScriptedAPI([.failure(.http(503)), .failure(.http(502)), .failure(.http(500)), .failure(.http(503)), .content("ctx")])
        let result = try await handler(api, clock: clock, random: 0.999).handle(job)
        #expect(result.status == .ok)
        #expect(result.attempts == 5)
        let caps: [Duration] = [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600)]
        #expect(clock.sleeps.count == 4)
        for (sleep, cap) in zip(clock.sleeps, caps) {
            #expect(sleep < cap)
            #expect(sleep > cap * 0.99)
        }
    }

    @Test func retriableFailuresStopAtMaxAttempts() async throws {
        let clock = VirtualClock()
        let api = ScriptedAPI([.failure(.http(503))])
        let result = try await handler(api, clock: clock).handle(job)
        #expect(result.status == .upstreamUnavailable)
        #expect(result.failure?.code == "server_error")
        #expect(result.failure?.message.contains("gave up after 5 attempts") == true)
        #expect(result.attempts == 5)
        #expect(api.calls == 5)
        #expect(clock.sleeps.count == 4)
        #expect(result.payload == nil)
    }

    @Test func lastFailureA429EndsAsRateLimited() async throws {
        let clock = VirtualClock()
        let api = ScriptedAPI([.failure(.http(503)), .failure(.http(429))])
        let result = try await handler(api, clock: clock).handle(job)
        #expect(result.status == .rateLimited)
        #expect(result.failure?.code == "rate_limited")
    }

    @Test func noRetryStartsPastTheTimePerJob() async throws {
        let clock = VirtualClock()
        let api = ScriptedAPI([.failure(.http(429, retryAfter: .seconds(90)))])
        let result = try await handler(api, clock: clock).handle(job)
        #expect(result.status == .rateLimited)
        #expect(result.attempts == 1)
        #expect(clock.sleeps.isEmpty)
        #expect(result.failure?.message.contains("time per job") == true)
    }

    @Test func unauthorizedRefreshesOnceAndRetriesWithTheNewToken() async throws {
        let clock = VirtualClock()
        let tokens = ScriptedTokens()
        let api = ScriptedAPI([.failure(.http(401)), .content("ctx")])
        let result = try await handler(api, tokens, clock: clock).handle(job)
        #expect(result.status == .ok)
        #expect(result.attempts == 2)
        #expect(tokens.refreshes == ["atk-initial-secret"])
        #expect(api.tokensUsed == ["atk-initial-secret", "atk-refreshed-secret-1"])
        #expect(clock.sleeps.isEmpty)
    }

    @Test func secondUnauthorizedEndsAsReauthRequired() async throws {
        let clock = VirtualClock()
        let tokens = ScriptedTokens()
        let api = ScriptedAPI([.failure(.http(401))])
        let result = try await handler(api, tokens, clock: clock).handle(job)
        #expect(result.status == .reauthRequired)
        #expect(result.failure?.code == "unauthorized")
        #expect(result.attempts == 2)
        #expect(tokens.refreshes.count == 1)
    }

    @Test func otherClientErrorsAreRejectedWithoutRetry() async throws {
        for status in [400, 403, 404, 422] {
            let clock = VirtualClock()
            let api = ScriptedAPI([.failure(.http(status))])
            let result = try await handler(api, clock: clock).handle(job)
            #expect(result.status == .rejected)
            #expect(result.attempts == 1)
            #expect(api.calls == 1)
            #expect(result.failure?.message.contains("\(status)") == true)
        }
    }

    @Test func tokenErrorsAreClassified() async throws {
        let cases: [(TokenError, JobResult.Status, String)] = [
            (TokenError(.noTokens, userID: "u1"), .noTokens, "no_tokens"),
            (TokenError(.reauthRequired, userID: "u1"), .reauthRequired, "reauth_required"),
            (TokenError(.keyConfiguration, userID: "u1", isRetriable: false), .upstreamUnavailable, "key_configuration"),
        ]
        for (error, status, code) in cases {
            let clock = VirtualClock()
            let api = ScriptedAPI([.content("ctx")])
            let result = try await handler(api, ScriptedTokens(accessErrors: [error]), clock: clock).handle(job)
            #expect(result.status == status)
            #expect(result.failure?.code == code)
            #expect(result.attempts == 1)
            #expect(api.calls == 0)
        }
    }

    @Test func retriableTokenErrorsAreRetriedLikeServerErrors() async throws {
        let clock = VirtualClock()
        let refreshFailure = TokenError(
            .refreshFailed,
            userID: "u1",
            underlying: MioError(code: .serverError, endpoint: "POST /v1/auth/oauth2/token", status: 503, retryAfter: .seconds(2)),
            isRetriable: true
        )
        let tokens = ScriptedTokens(accessErrors: [TokenError(.lockTimeout, userID: "u1"), refreshFailure])
        let api = ScriptedAPI([.content("ctx")])
        let result = try await handler(api, tokens, clock: clock, random: 0).handle(job)
        #expect(result.status == .ok)
        #expect(result.attempts == 3)
        #expect(clock.sleeps == [.seconds(2)], "a zero wait does not sleep")
    }

    @Test func failedRefreshAfterUnauthorizedIsRetriedNotReauth() async throws {
        let clock = VirtualClock()
        let tokens = ScriptedTokens(refreshError: TokenError(.lockTimeout, userID: "u1"))
        let api = ScriptedAPI([.failure(.http(401))])
        let result = try await handler(api, tokens, clock: clock).handle(job)
        #expect(result.status == .upstreamUnavailable)
        #expect(result.failure?.code == "lock_timeout")
        #expect(tokens.refreshes.count == 5)
    }

    @Test func summaryJobReturnsNullSummary() async throws {
        let clock = VirtualClock()
        let summaryJob = Job(id: "s", userID: "u1", operation: .summary, query: nil)
        final class NoSummary: ContextAPI {
            func getContext(query: String, accessToken: String) async throws -> String { "" }
            func getContextSummary(accessToken: String) async throws -> String? { nil }
        }
        let result = try await JobHandler(api: NoSummary(), tokens: ScriptedTokens(), clock: clock.timeSource).handle(summaryJob)
        #expect(result.status == .ok)
        #expect(result.payload == .summary(nil))
        #expect(String(decoding: result.encoded(), as: UTF8.self).contains(#""summary":null"#))
    }

    @Test func resultsNeverContainTokens() async throws {
        let scripts: [[ScriptedAPI.Answer]] = [
            [.failure(.http(401))], [.failure(.http(429))], [.failure(.http(503))], [.failure(.http(400))],
            [.failure(MioError(code: .transportFailure, endpoint: "POST /v1/context"))],
        ]
        for script in scripts {
            let clock = VirtualClock()
            let result = try await handler(ScriptedAPI(script), clock: clock).handle(job)
            let text = String(decoding: result.encoded(), as: UTF8.self)
            #expect(!text.contains("secret"))
            #expect(!text.contains("atk-"))
        }
    }

    @Test func cancellationThrowsInsteadOfProducingAResult() async throws {
        let clock = VirtualClock()
        let handler = handler(ScriptedAPI([.failure(.http(503))]), clock: clock)
        let job = self.job
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await handler.handle(job)
        }
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test func rateLimiterSpacesPermitsEvenly() async throws {
        let clock = VirtualClock()
        let limiter = RateLimiter(permitsPerSecond: 5, clock: clock.timeSource)
        for _ in 0 ..< 11 { try await limiter.acquire() }
        #expect(gap(clock.now, .seconds(2)) < .milliseconds(1))
        #expect(clock.sleeps.count == 10)
    }

    @Test func rateLimiterAllowsABurstAfterIdling() async throws {
        let clock = VirtualClock()
        let limiter = RateLimiter(permitsPerSecond: 10, burst: 3, clock: clock.timeSource)
        for _ in 0 ..< 3 { try await limiter.acquire() }
        #expect(clock.now == .zero)
        try await limiter.acquire()
        #expect(gap(clock.now, .milliseconds(100)) < .microseconds(10))
    }
}
