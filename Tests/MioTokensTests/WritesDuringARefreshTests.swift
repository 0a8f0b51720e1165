import Foundation
import HTTPEndpoints
import Mio
import MioSimulator
import MioTokens
import Prometheus
import Testing

/// Issue 16: a reconnection, a revocation or a deletion made (by another process) while a refresh of the same user
/// is at Mio is applied after that refresh's result, not overwritten by it; and a code exchange that brings no
/// refresh token is refused instead of storing an empty one.
enum WritesDuringARefreshScenarios {
    enum Write: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case reconnect, revoke, delete
        var testDescription: String { rawValue }
    }

    /// Process A refreshes the user; the simulator holds the refresh (its clock is moved by hand) while process B,
    /// on its own store over the same database, makes `write`. Then Mio answers.
    static func aWriteMadeDuringARefreshIsNotOverwrittenByIt(_ kind: StoreKind, _ write: Write) async throws {
        let time = ManualTime(start: Date())
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger, timeSource: time.source) {
            simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                try await RefreshStormScenarios.withTwoStores(kind) { one, two in
                    let first = try await Sim.connect("u", simulator: simulator, mio: mio, store: one).accessToken
                    var faults = simulator.faults()
                    faults.latencyMs = 20_000
                    faults.targets = [.token]
                    try simulator.setFaults(faults)

                    let a = TokenProvider(store: one, refresher: mio, logger: Sim.quietLogger)
                    let refresh = Task { try await a.refreshAfterUnauthorized(userID: "u", rejected: first) }
                    // The refresh is at Mio: A holds the user's lock (SQLite lease, PostgreSQL row lock).
                    while simulator.stats().concurrency.current == 0 { try await Task.sleep(for: .milliseconds(5)) }
                    let b = Task {
                        switch write {
                        case .reconnect: _ = try await two.upsert(userID: "u", tokens: grant("reconnected"))
                        case .revoke: _ = try await two.setStatus(.revoked, userID: "u")
                        case .delete: _ = try await two.delete(userID: "u")
                        }
                    }
                    // Without ordering, B's write lands now and the refresh's result overwrites it below.
                    try await Task.sleep(for: .milliseconds(300))
                    time.advance(by: .milliseconds(20_000))
                    let refreshed = try await refresh.value
                    #expect(refreshed != first)
                    try await b.value

                    let record = try await one.get(userID: "u")
                    switch write {
                    case .reconnect:
                        #expect(record?.accessToken == "atk_plain_reconnected", "the refresh overwrote the reconnection")
                        #expect(record?.status == .active)
                    case .revoke:
                        #expect(record?.status == .revoked, "the refresh overwrote the revocation")
                        #expect(record?.refreshToken == "")
                    case .delete:
                        #expect(record == nil, "the refresh brought a deleted user back")
                    }
                    #expect(simulator.stats().refreshesByUser["u"] == 1)
                }
            }
        }
    }
}

@Suite struct WritesDuringARefreshTests {
    @Test(arguments: WritesDuringARefreshScenarios.Write.allCases)
    func aWriteMadeDuringARefreshIsNotOverwrittenByItInSQLite(write: WritesDuringARefreshScenarios.Write) async throws {
        try await WritesDuringARefreshScenarios.aWriteMadeDuringARefreshIsNotOverwrittenByIt(.sqlite, write)
    }

    @Test(
        .enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage),
        arguments: WritesDuringARefreshScenarios.Write.allCases
    )
    func aWriteMadeDuringARefreshIsNotOverwrittenByItInPostgres(write: WritesDuringARefreshScenarios.Write) async throws {
        try await WritesDuringARefreshScenarios.aWriteMadeDuringARefreshIsNotOverwrittenByIt(.postgres, write)
    }

    /// A code exchange answered without a refresh token is refused at the OAuth callback: an error page, a counted
    /// refusal, nothing stored (an empty refresh token would make the user's first expiry a reauth_required).
    @Test func aCodeExchangeWithoutARefreshTokenIsRefusedAndNothingIsStored() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                var faults = simulator.faults()
                faults.exchangeWithoutRefreshToken = true
                try simulator.setFaults(faults)
                let store = InMemoryTokenStore()
                let registry = PrometheusCollectorRegistry()
                let endpoints = OAuthEndpointsTests.endpoints(
                    simulator: simulator, mio: mio, store: store, signer: OAuthStateSigner(key: OAuthEndpointsTests.key),
                    metrics: PrometheusMetricsFactory(registry: registry)
                )
                try await withOAuthServer(endpoints) { base, http in
                    let (state, cookie) = try await OAuthEndpointsTests.start(http, base: base, user: "bob")
                    let code = simulator.authorize(userID: "mio-bob")
                    let callback = try await http.getPage("\(base)/oauth/callback?code=\(code)&state=\(state)", cookie: cookie)
                    #expect(callback.status == 502)
                    #expect(callback.body.contains("no refresh token"))
                    #expect(await store.get(userID: "bob") == nil)
                    var exposition: [UInt8] = []
                    registry.emit(into: &exposition)
                    #expect(String(decoding: exposition, as: UTF8.self).contains(#"reason="no_refresh_token""#))
                }
                // The same answer through `TokenGrant(codeExchange:)` (what `tokens connect` stores) is refused too.
                let answer = try await mio.exchangeCodeForTokens(code: simulator.authorize(userID: "mio-carol"))
                #expect(answer.refreshToken.isEmpty)
                let error = #expect(throws: TokenError.self) {
                    try TokenGrant(codeExchange: answer, userID: "carol", receivedAt: Date())
                }
                #expect(error?.code == .invalidInput)
                #expect(error?.isRetriable == false)
                #expect(!"\(error.map { "\($0)" } ?? "")".contains(answer.accessToken))
            }
        }
    }
}
