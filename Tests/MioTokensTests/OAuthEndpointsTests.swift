import AsyncHTTPClient
import Foundation
import HTTPEndpoints
import Hummingbird
import Logging
import Mio
import MioSimulator
import MioTokens
import MioctxTestSupport
import NIOCore
import NIOHTTP1
import Testing

/// Runs the OAuth routes on 127.0.0.1 (ephemeral port) for the duration of `body`.
func withOAuthServer<T: Sendable>(
    _ endpoints: OAuthEndpoints, _ body: @Sendable (_ baseURL: String, _ http: HTTPClient) async throws -> T
) async throws -> T {
    let router = Router()
    endpoints.addRoutes(to: router)
    var httpConfiguration = HTTPClient.Configuration()
    httpConfiguration.redirectConfiguration = .disallow
    let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
    let result: Result<T, any Error>
    do {
        result = .success(try await withRouterServer(router, logger: Sim.quietLogger) { try await body($0, http) })
    } catch {
        result = .failure(error)
    }
    try? await http.shutdown()
    return try result.get()
}

extension HTTPClient {
    func getPage(_ url: String) async throws -> (status: Int, location: String?, body: String) {
        let response = try await execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), response.headers.first(name: "location"), String(buffer: body))
    }
}

@Suite struct OAuthEndpointsTests {
    static func endpoints(
        simulator: MioSimulator, mio: MioClient, store: any TokenStore, signer: OAuthStateSigner
    ) -> OAuthEndpoints {
        OAuthEndpoints(
            configuration: .init(mio: Sim.mioConfiguration(baseURL: simulator.baseURL!)),
            store: store, exchanger: mio, stateSigner: signer, logger: Sim.quietLogger
        )
    }

    static func state(fromConsentURL location: String) throws -> String {
        let components = try #require(URLComponents(string: location))
        return try #require(components.queryItems?.first { $0.name == "state" }?.value)
    }

    @Test func connectRedirectsToConsentAndCallbackStoresTokensOnce() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let endpoints = Self.endpoints(simulator: simulator, mio: mio, store: store, signer: .ephemeral())
                try await withOAuthServer(endpoints) { base, http in
                    let connect = try await http.getPage("\(base)/oauth/connect?user=alice%40example.com")
                    #expect(connect.status == 302)
                    let location = try #require(connect.location)
                    let consent = try #require(URLComponents(string: location))
                    #expect(location.hasPrefix(simulator.baseURL! + "/connect?"))
                    let items = Dictionary(uniqueKeysWithValues: (consent.queryItems ?? []).map { ($0.name, $0.value ?? "") })
                    #expect(items["client_id"] == Sim.clientID)
                    #expect(items["redirect_uri"] == Sim.redirectURL)
                    #expect(items["scope"] == "openid profile email offline_access")
                    let state = try Self.state(fromConsentURL: location)

                    let code = simulator.authorize(userID: "mio-alice")
                    let callbackURL = "\(base)/oauth/callback?code=\(code)&state=\(state)"
                    let callback = try await http.getPage(callbackURL)
                    #expect(callback.status == 200)
                    #expect(callback.body.contains("connected"))
                    #expect(!callback.body.contains(code))
                    let record = try #require(await store.get(userID: "alice@example.com"))
                    #expect(record.status == .active)
                    _ = try await mio.getContext(query: "hello", accessToken: record.accessToken)

                    // The same state again is refused, and nothing changes.
                    let replay = try await http.getPage(callbackURL)
                    #expect(replay.status == 400)
                    #expect(replay.body.contains("already used"))
                    #expect(await store.get(userID: "alice@example.com")?.version == 1)
                }
            }
        }
    }

    @Test func replicasSharingTheStateKeyAcceptEachOthersStatesOnce() throws {
        // What `MIOCTX_OAUTH_STATE_KEY` gives replicas: the callback may reach another replica than the link.
        let key = Data((0..<32).map { UInt8(truncatingIfNeeded: $0 * 31 + 5) })
        let issuing = OAuthStateSigner(key: key)
        let answering = OAuthStateSigner(key: key)
        let state = issuing.makeState(userID: "u-7")
        #expect(try answering.consume(state) == "u-7")
        #expect(throws: OAuthStateSigner.Rejection.replayed) { try answering.consume(state) }
        // A replica with a key of its own (no shared key set) refuses it.
        #expect(throws: OAuthStateSigner.Rejection.forged) {
            try OAuthStateSigner.ephemeral().consume(issuing.makeState(userID: "u-7"))
        }
    }

    @Test func forgedExpiredOrMissingStateAndFailedExchangeAreRefusedAndStoreNothing() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let time = ManualTime(start: Date())
                let key = Data(repeating: 7, count: 32)
                let signer = OAuthStateSigner(key: key, lifetime: .seconds(600), timeSource: time.source)
                let endpoints = Self.endpoints(simulator: simulator, mio: mio, store: store, signer: signer)
                try await withOAuthServer(endpoints) { base, http in
                    // Forged: a state for "mallory" signed with another key.
                    let forged = OAuthStateSigner(key: Data(repeating: 8, count: 32)).makeState(userID: "mallory")
                    // Tampered: a genuine state whose payload is swapped for another user's.
                    let genuine = signer.makeState(userID: "bob")
                    let other = OAuthStateSigner(key: Data(repeating: 9, count: 32)).makeState(userID: "mallory")
                    let tampered = other.split(separator: ".")[0] + "." + genuine.split(separator: ".")[1]
                    // Expired: made, then the clock moves past its lifetime.
                    let expired = signer.makeState(userID: "carol")
                    for (state, reason) in [(forged, "signature"), (String(tampered), "signature"), ("garbage", "malformed")] {
                        let code = simulator.authorize(userID: "x")
                        let page = try await http.getPage("\(base)/oauth/callback?code=\(code)&state=\(state)")
                        #expect(page.status == 400)
                        #expect(page.body.contains(reason), "\(page.body)")
                    }
                    time.advance(by: .seconds(601))
                    let code = simulator.authorize(userID: "x")
                    let late = try await http.getPage("\(base)/oauth/callback?code=\(code)&state=\(expired)")
                    #expect(late.status == 400)
                    #expect(late.body.contains("expired"))
                    let missing = try await http.getPage("\(base)/oauth/callback?code=\(code)")
                    #expect(missing.status == 400)

                    // A valid state with a code Mio refuses.
                    let valid = signer.makeState(userID: "dave")
                    let refused = try await http.getPage("\(base)/oauth/callback?code=not-a-code&state=\(valid)")
                    #expect(refused.status == 400)
                    #expect(refused.body.contains("invalid_grant"))
                    #expect(try await store.all().isEmpty)
                    #expect(simulator.stats().tokensIssued == 0)
                }
            }
        }
    }
}
