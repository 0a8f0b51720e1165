import Coordination
import Foundation
import Logging
@testable import Mio
import MioSimulator
import Testing

@Suite("Mio client against the simulator over HTTP")
struct MioClientTests {
    @Test func codeExchangeReturnsTokensForTheConsentingUser() async throws {
        try await withHarness(simulator: .init(tokenTTL: .seconds(120))) { harness in
            let tokens = try await harness.connect("alice")
            #expect(tokens.accessToken.hasPrefix("atk_"))
            #expect(tokens.refreshToken.hasPrefix("rtk_"))
            #expect(tokens.idToken != nil)
            #expect(tokens.expiresIn == 120)
            #expect(tokens.tokenType == "Bearer")
            #expect(tokens.scope == MioClient.Configuration.scope)
            let content = try await harness.client.getContext(query: "q", accessToken: tokens.accessToken)
            #expect(content == MioSimulator.expectedContent(userID: "alice", query: "q"))
        }
    }

    @Test func refreshReturnsNewTokensAndANewRefreshToken() async throws {
        try await withHarness { harness in
            let first = try await harness.connect("bob")
            let second = try await harness.client.refreshTokens(refreshToken: first.refreshToken)
            #expect(second.refreshToken != first.refreshToken)
            #expect(second.accessToken != first.accessToken)
            #expect(second.idToken == nil)
            let third = try await harness.client.refreshTokens(refreshToken: second.refreshToken)
            #expect(third.refreshToken != second.refreshToken)
            let content = try await harness.client.getContext(query: "news", accessToken: third.accessToken)
            #expect(content == MioSimulator.expectedContent(userID: "bob", query: "news"))
            #expect(try await harness.control.stats().refreshesByUser == ["bob": 2])
        }
    }

    @Test func contextIsDeterministicPerUserAndQuery() async throws {
        try await withHarness { harness in
            let alice = try await harness.connect("alice")
            let bob = try await harness.connect("bob")
            let query = "what \"matters\" to me\ntoday? ünïcødé"
            let a1 = try await harness.client.getContext(query: query, accessToken: alice.accessToken)
            let a2 = try await harness.client.getContext(query: query, accessToken: alice.accessToken)
            let b = try await harness.client.getContext(query: query, accessToken: bob.accessToken)
            #expect(a1 == a2)
            #expect(a1 == MioSimulator.expectedContent(userID: "alice", query: query))
            #expect(b == MioSimulator.expectedContent(userID: "bob", query: query))
            #expect(a1 != b)
        }
    }

    @Test func summaryIsNilForNewUsersAndPresentOtherwise() async throws {
        try await withHarness { harness in
            let known = try await harness.connect("known")
            let fresh = try await harness.connect("fresh")
            try await harness.control.markNew("fresh")
            let summary = try await harness.client.getContextSummary(accessToken: known.accessToken)
            #expect(summary == MioSimulator.expectedSummary(userID: "known"))
            #expect(try await harness.client.getContextSummary(accessToken: fresh.accessToken) == nil)
        }
    }

    @Test func reusingARotatedRefreshTokenGivesInvalidGrantAndRevokesTheUser() async throws {
        try await withHarness { harness in
            let first = try await harness.connect("carol")
            let second = try await harness.client.refreshTokens(refreshToken: first.refreshToken)

            let reuse = await mioError { () async throws(MioError) in
                try await harness.client.refreshTokens(refreshToken: first.refreshToken)
            }
            #expect(reuse?.code == .invalidGrant)
            #expect(reuse?.status == 400)
            #expect(reuse?.isRetriable == false)

            // The winner's tokens are gone too: the user must reconnect.
            let afterRevoke = await mioError { () async throws(MioError) in
                try await harness.client.refreshTokens(refreshToken: second.refreshToken)
            }
            #expect(afterRevoke?.code == .invalidGrant)
            let context = await mioError { () async throws(MioError) in
                try await harness.client.getContext(query: "q", accessToken: second.accessToken)
            }
            #expect(context?.code == .unauthorized)
            #expect(context?.wwwAuthenticateError == "invalid_token")

            let stats = try await harness.control.stats()
            #expect(stats.reuseDetections == 1)
            #expect(stats.refreshesByUser["carol"] == 1)

            // Reconnecting works.
            let again = try await harness.connect("carol")
            _ = try await harness.client.getContext(query: "q", accessToken: again.accessToken)
        }
    }

    @Test func revokeEndpointInvalidatesAllTokensOfTheUser() async throws {
        try await withHarness { harness in
            let dave = try await harness.connect("dave")
            let erin = try await harness.connect("erin")
            try await harness.control.revoke("dave")
            let context = await mioError { () async throws(MioError) in
                try await harness.client.getContext(query: "q", accessToken: dave.accessToken)
            }
            #expect(context?.code == .unauthorized)
            let refresh = await mioError { () async throws(MioError) in
                try await harness.client.refreshTokens(refreshToken: dave.refreshToken)
            }
            #expect(refresh?.code == .invalidGrant)
            _ = try await harness.client.getContext(query: "q", accessToken: erin.accessToken)
        }
    }

    @Test func fiveHundredConcurrentContextCallsAllSucceedInParallel() async throws {
        let simulator = MioSimulator.Configuration(faults: .init(latencyMs: 200))
        try await withHarness(simulator: simulator, maxConnections: 500) { harness in
            let tokens = try await harness.connect("parallel")
            try await harness.control.resetStats()
            let client = harness.client
            let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<500 {
                    group.addTask {
                        (index, try await client.getContext(query: "job-\(index)", accessToken: tokens.accessToken))
                    }
                }
                var results: [Int: String] = [:]
                for try await (index, content) in group {
                    results[index] = content
                }
                return results
            }
            #expect(results.count == 500)
            for (index, content) in results {
                #expect(content == MioSimulator.expectedContent(userID: "parallel", query: "job-\(index)"))
            }
            let stats = try await harness.control.stats()
            #expect(stats.count("POST /v1/context", status: 200) == 500)
            #expect(stats.concurrency.peak > 1, "peak concurrency \(stats.concurrency.peak)")
            print("fiveHundredConcurrentContextCalls: peak concurrency \(stats.concurrency.peak)")
            #expect(stats.concurrency.current == 0)
        }
    }

    @Test func statsCountWhatTheClientDid() async throws {
        try await withHarness { harness in
            let tokens = try await harness.connect("frank")
            _ = try await harness.client.refreshTokens(refreshToken: tokens.refreshToken)
            try await harness.control.resetStats()
            let fresh = try await harness.connect("frank")
            for query in ["a", "b", "c"] {
                _ = try await harness.client.getContext(query: query, accessToken: fresh.accessToken)
            }
            _ = try await harness.client.getContextSummary(accessToken: fresh.accessToken)
            _ = await mioError { () async throws(MioError) in
                try await harness.client.getContext(query: "x", accessToken: "atk_bogus")
            }
            _ = try await harness.client.refreshTokens(refreshToken: fresh.refreshToken)

            let stats = try await harness.control.stats()
            #expect(stats.requests["POST /v1/context"] == ["200": 3, "401": 1])
            #expect(stats.requests["GET /v1/context/summary"] == ["200": 1])
            #expect(stats.requests["POST /v1/auth/oauth2/token"] == ["200": 2])
            #expect(stats.refreshesByUser == ["frank": 1])
            #expect(stats.codesIssued == 1)
            #expect(stats.tokensIssued == 2)
            #expect(stats.reuseDetections == 0)
            #expect(stats.concurrency.peak >= 1)
            #expect(stats.contextRequestsPerSecondPeak >= 1)
            #expect(stats.contextRequestsPerSecondPeak <= 4)
            #expect(harness.simulator.stats() == stats)
        }
    }

    @Test func shutdownIsAwaitedIdempotentAndFailsLaterRequests() async throws {
        try await withHarness { harness in
            let tokens = try await harness.connect("grace")
            _ = try await harness.client.getContext(query: "before", accessToken: tokens.accessToken)
            async let first: Void = harness.client.shutdown()
            async let second: Void = harness.client.shutdown()
            _ = try await (first, second)
            try await harness.client.shutdown()
            let error = await mioError { () async throws(MioError) in
                try await harness.client.getContext(query: "after", accessToken: tokens.accessToken)
            }
            #expect(error?.code == .transportFailure)
            #expect(error.map { "\($0)" }?.contains("shut down") == true)
        }
    }

    /// The simulator's token lifetimes run on its injected clock: an access token expires exactly at its TTL.
    @Test func accessTokensExpireExactlyAtTheirLifetimeOnTheSimulatorsClock() async throws {
        let clock = ManualClock()
        let time = TimeSource(clock, start: Date())
        var configuration = MioSimulator.Configuration(tokenTTL: .seconds(120))
        configuration.clientID = simulatorClientID
        configuration.clientSecret = simulatorSecret
        configuration.redirectURL = simulatorRedirect
        try await MioSimulator.withSimulator(configuration, logger: quietLogger, timeSource: time) { simulator in
            let mioConfiguration = MioClient.Configuration(
                clientID: simulatorClientID, clientSecret: simulatorSecret, redirectURL: simulatorRedirect,
                apiURL: simulator.baseURL!
            )
            try await MioClient.withClient(configuration: mioConfiguration, logger: quietLogger) { client in
                let tokens = try await client.exchangeCodeForTokens(code: simulator.authorize(userID: "heidi"))
                clock.advance(by: .seconds(119))
                _ = try await client.getContext(query: "still valid", accessToken: tokens.accessToken)
                clock.advance(by: .seconds(1))
                let error = await mioError { () async throws(MioError) in
                    try await client.getContext(query: "expired", accessToken: tokens.accessToken)
                }
                #expect(error?.code == .unauthorized)
                #expect(error?.oauthErrorDescription == "access token expired")
            }
        }
    }
}
