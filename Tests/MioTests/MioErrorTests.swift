import Foundation
import Logging
@testable import Mio
import MioSimulator
import Testing

/// The rows of the SDK's error matrix (mio-api.md), and a few the SDK does not document.
enum MatrixRow: String, CaseIterable, Sendable {
    case exchangeWithWrongRedirectURL
    case exchangeWithWrongClientSecret
    case exchangeWithWrongClientID
    case exchangeWithMissingCode
    case exchangeWithUsedCode
    case exchangeWithExpiredCode
    case exchangeWithUnknownCode
    case refreshWithUnknownToken
    case refreshWithRevokedToken
    case refreshWithExpiredToken
    case contextWithExpiredAccessToken
    case contextWithMalformedAccessToken
    case summaryWithExpiredAccessToken
    case summaryWithUnknownAccessToken

    var expectedCode: MioError.Code {
        switch self {
        case .exchangeWithMissingCode: return .invalidRequest
        case .contextWithExpiredAccessToken, .contextWithMalformedAccessToken, .summaryWithExpiredAccessToken,
            .summaryWithUnknownAccessToken:
            return .unauthorized
        default: return .invalidGrant
        }
    }

    var expectedStatus: Int {
        self.expectedCode == .unauthorized ? 401 : 400
    }
}

@Suite("Mio errors")
struct MioErrorTests {
    @Test(arguments: MatrixRow.allCases)
    func errorMatrixRowKeepsStatusAndOAuthError(_ row: MatrixRow) async throws {
        let simulator = MioSimulator.Configuration(
            tokenTTL: .seconds(1),
            codeTTL: row == .exchangeWithExpiredCode ? .milliseconds(200) : .seconds(60),
            refreshTokenTTL: row == .refreshWithExpiredToken ? .milliseconds(200) : .seconds(3600)
        )
        try await withHarness(simulator: simulator) { harness in
            let client = harness.client
            let error: MioError?
            switch row {
            case .exchangeWithWrongRedirectURL, .exchangeWithWrongClientSecret, .exchangeWithWrongClientID:
                let other = harness.otherClient { configuration in
                    switch row {
                    case .exchangeWithWrongRedirectURL: configuration.redirectURL += "/other"
                    case .exchangeWithWrongClientSecret: configuration.clientSecret = "wrong-secret"
                    default: configuration.clientID = "someone-else"
                    }
                }
                let code = try await harness.control.authorize("u")
                error = await mioError { () async throws(MioError) in try await other.exchangeCodeForTokens(code: code) }
                try await other.shutdown()
            case .exchangeWithMissingCode:
                error = await mioError { () async throws(MioError) in try await client.exchangeCodeForTokens(code: "") }
            case .exchangeWithUsedCode:
                let code = try await harness.control.authorize("u")
                _ = try await client.exchangeCodeForTokens(code: code)
                error = await mioError { () async throws(MioError) in try await client.exchangeCodeForTokens(code: code) }
            case .exchangeWithExpiredCode:
                let code = try await harness.control.authorize("u")
                try await Task.sleep(for: .milliseconds(400))
                error = await mioError { () async throws(MioError) in try await client.exchangeCodeForTokens(code: code) }
            case .exchangeWithUnknownCode:
                error = await mioError { () async throws(MioError) in
                    try await client.exchangeCodeForTokens(code: "code_never_issued")
                }
            case .refreshWithUnknownToken:
                error = await mioError { () async throws(MioError) in
                    try await client.refreshTokens(refreshToken: "rtk_never_issued")
                }
            case .refreshWithRevokedToken:
                let tokens = try await harness.connect("u")
                try await harness.control.revoke("u")
                error = await mioError { () async throws(MioError) in
                    try await client.refreshTokens(refreshToken: tokens.refreshToken)
                }
            case .refreshWithExpiredToken:
                let tokens = try await harness.connect("u")
                try await Task.sleep(for: .milliseconds(400))
                error = await mioError { () async throws(MioError) in
                    try await client.refreshTokens(refreshToken: tokens.refreshToken)
                }
            case .contextWithExpiredAccessToken, .summaryWithExpiredAccessToken:
                let tokens = try await harness.connect("u")
                try await Task.sleep(for: .milliseconds(1200))
                error = await mioError { () async throws(MioError) in
                    if row == .contextWithExpiredAccessToken {
                        _ = try await client.getContext(query: "q", accessToken: tokens.accessToken)
                    } else {
                        _ = try await client.getContextSummary(accessToken: tokens.accessToken)
                    }
                }
            case .contextWithMalformedAccessToken:
                error = await mioError { () async throws(MioError) in
                    try await client.getContext(query: "q", accessToken: "not a token")
                }
            case .summaryWithUnknownAccessToken:
                error = await mioError { () async throws(MioError) in
                    try await client.getContextSummary(accessToken: "atk_unknown")
                }
            }
            let failure = try #require(error)
            #expect(failure.code == row.expectedCode)
            #expect(failure.status == row.expectedStatus)
            #expect(failure.isRetriable == false)
            if row.expectedCode == .unauthorized {
                #expect(failure.wwwAuthenticateError == "invalid_token")
                #expect(failure.oauthError == "invalid_token")
            } else {
                #expect(failure.oauthError == row.expectedCode.description)
                #expect(failure.oauthErrorDescription?.isEmpty == false)
                #expect(failure.endpoint == "POST /v1/auth/oauth2/token")
            }
        }
    }

    @Test func clientCredentialMismatchGivesInvalidClientWhenTheServerFollowsRFC6749() async throws {
        try await withHarness(simulator: .init(clientAuthenticationFailure: .invalidClient)) { harness in
            let other = harness.otherClient { $0.clientSecret = "wrong-secret" }
            let code = try await harness.control.authorize("u")
            let error = await mioError { () async throws(MioError) in try await other.exchangeCodeForTokens(code: code) }
            try await other.shutdown()
            #expect(error?.code == .invalidClient)
            #expect(error?.status == 401)
        }
    }

    @Test(arguments: [("seconds", 429), ("http-date", 429), ("seconds", 503), ("http-date", 503)])
    func rateLimitAndUnavailableKeepRetryAfterInBothForms(format: String, status: Int) async throws {
        try await withHarness { harness in
            let tokens = try await harness.connect("u")
            let rate = status == 429 ? "rate429" : "rate503"
            try await harness.control.setFaults(
                #"{"\#(rate)": 1, "retryAfterSeconds": 7, "retryAfterFormat": "\#(format)"}"#
            )
            let error = await mioError { () async throws(MioError) in
                try await harness.client.getContext(query: "q", accessToken: tokens.accessToken)
            }
            let failure = try #require(error)
            #expect(failure.code == (status == 429 ? .rateLimited : .serverError))
            #expect(failure.status == status)
            #expect(failure.isRetriable)
            let retryAfter = try #require(failure.retryAfter)
            if format == "seconds" {
                #expect(retryAfter == .seconds(7))
            } else {
                // An HTTP-date has one-second resolution and the clocks run on: allow that much.
                #expect(retryAfter >= .seconds(5) && retryAfter <= .seconds(8), "\(retryAfter)")
            }
        }
    }

    @Test func serverErrorIsRetriableWithoutRetryAfter() async throws {
        try await withHarness(simulator: .init(faults: .init(rate500: 1, targets: [.summary]))) { harness in
            let tokens = try await harness.connect("u")
            let error = await mioError { () async throws(MioError) in
                try await harness.client.getContextSummary(accessToken: tokens.accessToken)
            }
            #expect(error?.code == .serverError)
            #expect(error?.status == 500)
            #expect(error?.retryAfter == nil)
            #expect(error?.isRetriable == true)
            #expect(error?.endpoint == "GET /v1/context/summary")
        }
    }

    @Test func hangingRequestFailsWithATimeout() async throws {
        try await withHarness { harness in
            // The code exchange runs with the harness's generous timeout: on a loaded machine a
            // 300 ms budget could expire before the simulator answers a healthy request.
            let tokens = try await harness.connect("u")
            let impatient = harness.otherClient { $0.requestTimeout = .milliseconds(300) }
            try await harness.control.setFaults(#"{"hangRate": 1}"#)
            let started = ContinuousClock.now
            let error = await mioError { () async throws(MioError) in
                try await impatient.getContext(query: "q", accessToken: tokens.accessToken)
            }
            try await impatient.shutdown()
            #expect(error?.code == .timeout)
            #expect(error?.status == nil)
            #expect(error?.isRetriable == true)
            // Not a timing assertion on speed: only that the hang (10 minutes) was not waited out.
            #expect(ContinuousClock.now - started < .seconds(120))
            try await harness.control.setFaults(#"{"hangRate": 0}"#)
        }
    }

    @Test func cancellingTheCallerCancelsAHangingRequest() async throws {
        try await withHarness { harness in
            let tokens = try await harness.connect("u")
            try await harness.control.setFaults(#"{"hangRate": 1}"#)
            // The harness's timeout is long: only cancellation can end this call early.
            let call = Task { () async -> MioError? in
                await mioError { () async throws(MioError) in
                    try await harness.client.getContext(query: "q", accessToken: tokens.accessToken)
                }
            }
            // Cancel once the simulator holds the request (and, the first time round, also before it got there).
            try await Task.sleep(for: .milliseconds(200))
            call.cancel()
            let error = await call.value
            #expect(error?.code == .cancelled, "\(String(describing: error))")
            #expect(error?.status == nil)
            try await harness.control.setFaults(#"{"hangRate": 0}"#)
            // The pool is still usable after a cancelled request.
            let content = try await harness.client.getContext(query: "again", accessToken: tokens.accessToken)
            #expect(!content.isEmpty)
        }
    }

    @Test func unreachableServerIsATransportFailure() async throws {
        // Bind nothing: a port taken and released by a simulator that has stopped.
        let url = try await MioSimulator.withRunning(.init(), logger: quietLogger) { $0 }
        let configuration = MioClient.Configuration(
            clientID: "c",
            clientSecret: "s",
            redirectURL: "r",
            apiURL: url,
            requestTimeout: .seconds(2)
        )
        let error = try await MioClient.withClient(configuration: configuration) { client in
            await mioError { () async throws(MioError) in try await client.getContextSummary(accessToken: "atk_x") }
        }
        #expect(error?.code == .transportFailure, "\(String(describing: error))")
        #expect(error?.isRetriable == true)
        #expect(error?.status == nil)
    }

    @Test func requestsBeyondTheRateLimitGet429() async throws {
        try await withHarness { harness in
            let tokens = try await harness.connect("u")
            try await harness.control.setFaults(#"{"requestsPerSecondPerClient": 1}"#)
            let codes = await tenConcurrentCalls(harness.client, accessToken: tokens.accessToken)
            #expect(codes.contains(.rateLimited))
            #expect(codes.allSatisfy { $0 == nil || $0 == .rateLimited })
            #expect(try await harness.control.stats().faultsInjected["rps_limit", default: 0] >= 1)
        }
    }

    @Test func requestsBeyondTheConcurrencyLimitGet429() async throws {
        let faults = MioSimulator.Faults(latencyMs: 500, maxConcurrentRequests: 2)
        try await withHarness(simulator: .init(faults: faults)) { harness in
            let tokens = try await harness.connect("u")
            let codes = await tenConcurrentCalls(harness.client, accessToken: tokens.accessToken)
            #expect(codes.contains(.rateLimited))
            #expect(codes.contains(nil))
        }
    }

    @Test func seededFaultsRepeatRunAfterRun() async throws {
        func run() async throws -> [String] {
            let simulator = MioSimulator.Configuration(faults: .init(rate500: 0.3, rate503: 0.3), seed: 42)
            return try await withHarness(simulator: simulator) { harness in
                var outcomes: [String] = []
                for _ in 0..<30 {
                    let error = await mioError { () async throws(MioError) in
                        try await harness.client.getContextSummary(accessToken: "atk_none")
                    }
                    outcomes.append(error.map { "\($0.status ?? 0)" } ?? "ok")
                }
                return outcomes
            }
        }
        let first = try await run()
        let second = try await run()
        #expect(first == second)
        #expect(Set(first).count > 1)
    }

    @Test func faultsEndpointRejectsUnknownSettingsAndBadRanges() async throws {
        try await withHarness { harness in
            let unknown = try await harness.control.post("/sim/faults", #"{"rate42": 1}"#)
            #expect(unknown.status == 400)
            let range = try await harness.control.post("/sim/faults", #"{"rate500": 2}"#)
            #expect(range.status == 400)
            let ok = try await harness.control.post("/sim/faults", #"{"latencyMs": 5, "maxConcurrentRequests": 3}"#)
            #expect(ok.status == 200)
            #expect(harness.simulator.faults().latencyMs == 5)
            #expect(harness.simulator.faults().maxConcurrentRequests == 3)
            _ = try await harness.control.post("/sim/faults", #"{"maxConcurrentRequests": null}"#)
            #expect(harness.simulator.faults().maxConcurrentRequests == nil)
            #expect(harness.simulator.faults().latencyMs == 5)
        }
    }
}

/// Ten `getContext` calls at once; the error code of each (`nil` for a success).
private func tenConcurrentCalls(_ client: MioClient, accessToken: String) async -> [MioError.Code?] {
    await withTaskGroup(of: MioError.Code?.self) { group in
        for _ in 0..<10 {
            group.addTask {
                await mioError { () async throws(MioError) in
                    try await client.getContext(query: "q", accessToken: accessToken)
                }?.code
            }
        }
        return await group.reduce(into: [MioError.Code?]()) { $0.append($1) }
    }
}
