import Pipeline
import PipelineMioBridge
import Foundation
import Mio
import MioSimulator
import MioTokens
import Testing

/// `JobHandler` with the production `TokenProvider` (in-memory store) and `MioClient`, against the simulator.
@Suite struct TokenProviderIntegrationTests {
    /// Connects a user at the simulator and stores the tokens, optionally with a stale access token.
    func store(_ userID: String, in store: InMemoryTokenStore, harness: SimulatorHarness, stale: Bool = false) async throws {
        let code = try await SimControl(baseURL: harness.baseURL).authorize(userID)
        let response = try await harness.client.exchangeCodeForTokens(code: code)
        var grant = TokenGrant(response: response, receivedAt: Date())
        if stale { grant.accessToken = "atk-stale-\(userID)" }
        _ = await store.upsert(userID: userID, tokens: grant)
    }

    @Test func productionTokenProviderDrivesEveryTokenOutcome() async throws {
        try await withSimulatorHarness { harness in
            let tokenStore = InMemoryTokenStore()
            try await store("fresh", in: tokenStore, harness: harness)
            try await store("stale", in: tokenStore, harness: harness, stale: true)
            try await store("revoked", in: tokenStore, harness: harness)
            try await SimControl(baseURL: harness.baseURL).revoke("revoked")
            let provider = TokenProvider(store: tokenStore, refresher: harness.client, logger: quietLogger)
            let handler = JobHandler(api: MioContextAPI(harness.client), tokens: MioTokenSource(provider), logger: quietLogger)

            let staleResults = try await withThrowingTaskGroup(of: JobResult.self) { group in
                for index in 0 ..< 6 {
                    group.addTask { try await handler.handle(Job(id: "s\(index)", userID: "stale", query: "q\(index)")) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(staleResults.allSatisfy { $0.status == .ok })
            let fresh = try await handler.handle(Job(id: "f", userID: "fresh", query: "hello"))
            #expect(fresh.payload == .context(MioSimulator.expectedContent(userID: "fresh", query: "hello")))
            let revoked = try await handler.handle(Job(id: "r", userID: "revoked", query: "hello"))
            #expect(revoked.status == .reauthRequired)
            let unknown = try await handler.handle(Job(id: "u", userID: "nobody", query: "hello"))
            #expect(unknown.status == .noTokens)

            let stats = try await harness.stats()
            #expect(stats.refreshesByUser["stale"] == 1, "one coordinated refresh for six concurrent 401s")
            #expect(stats.reuseDetections == 0)
        }
    }
}
