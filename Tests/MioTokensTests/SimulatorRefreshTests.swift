import Foundation
import Mio
import MioSimulator
import MioTokens
import Testing

/// The provider against the simulator over HTTP, with real stores.
enum SimulatorRefreshScenarios {
    /// Mio revokes the user; the next refresh gets invalid_grant and leaves the user reauth_required in the store.
    static func invalidGrantLeavesUserReauthRequiredInTheStore(_ kind: StoreKind) async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                try await kind.withFreshStore { store in
                    let record = try await Sim.connect("u1", simulator: simulator, mio: mio, store: store)
                    simulator.revoke(userID: "u1")
                    let provider = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
                    let error = await #expect(throws: TokenError.self) {
                        try await provider.refreshAfterUnauthorized(userID: "u1", rejected: record.accessToken)
                    }
                    #expect(error?.code == .reauthRequired)
                    #expect((error?.underlying as? MioError)?.code == .invalidGrant)
                    #expect(try await store.get(userID: "u1")?.status == .reauthRequired)
                    // A new provider (another replica) fails fast from the stored status, without calling Mio.
                    let refreshes = simulator.stats().requests["POST /v1/auth/oauth2/token"]?.values.reduce(0, +)
                    let other = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
                    await #expect(throws: TokenError.self) { try await other.accessToken(for: "u1") }
                    #expect(simulator.stats().requests["POST /v1/auth/oauth2/token"]?.values.reduce(0, +) == refreshes)
                }
            }
        }
    }

    /// A refresh after 401 rotates the pair at the simulator and the new refresh token replaces the old one.
    static func refreshAfterUnauthorizedStoresTheRotatedPair(_ kind: StoreKind) async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                try await kind.withFreshStore { store in
                    let first = try await Sim.connect("u1", simulator: simulator, mio: mio, store: store)
                    let provider = TokenProvider(store: store, refresher: mio, logger: Sim.quietLogger)
                    let token = try await provider.refreshAfterUnauthorized(userID: "u1", rejected: first.accessToken)
                    #expect(token != first.accessToken)
                    let stored = try #require(try await store.get(userID: "u1"))
                    #expect(stored.accessToken == token)
                    #expect(stored.refreshToken != first.refreshToken)
                    #expect(stored.version == first.version + 1)
                    _ = try await mio.getContext(query: "coffee", accessToken: token)
                    let second = try await provider.refreshAfterUnauthorized(userID: "u1", rejected: token)
                    #expect(second != token)
                    #expect(simulator.stats().refreshesByUser["u1"] == 2)
                    #expect(simulator.stats().reuseDetections == 0)
                }
            }
        }
    }
}

@Suite struct SimulatorRefreshTests {
    @Test(arguments: [StoreKind.memory, .sqlite])
    func invalidGrantLeavesUserReauthRequiredInTheStore(kind: StoreKind) async throws {
        try await SimulatorRefreshScenarios.invalidGrantLeavesUserReauthRequiredInTheStore(kind)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func invalidGrantLeavesUserReauthRequiredInPostgres() async throws {
        try await SimulatorRefreshScenarios.invalidGrantLeavesUserReauthRequiredInTheStore(.postgres)
    }

    @Test(arguments: [StoreKind.memory, .sqlite])
    func refreshAfterUnauthorizedStoresTheRotatedPair(kind: StoreKind) async throws {
        try await SimulatorRefreshScenarios.refreshAfterUnauthorizedStoresTheRotatedPair(kind)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func refreshAfterUnauthorizedStoresTheRotatedPairInPostgres() async throws {
        try await SimulatorRefreshScenarios.refreshAfterUnauthorizedStoresTheRotatedPair(.postgres)
    }
}
