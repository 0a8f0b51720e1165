import AsyncHTTPClient
import Coordination
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
import Prometheus
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
    func getPage(_ url: String, cookie: String? = nil) async throws
        -> (status: Int, location: String?, body: String, setCookie: String?)
    {
        var request = HTTPClientRequest(url: url)
        if let cookie { request.headers.add(name: "Cookie", value: cookie) }
        let response = try await execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (
            Int(response.status.code), response.headers.first(name: "location"), String(buffer: body),
            response.headers.first(name: "set-cookie")
        )
    }
}

@Suite struct OAuthEndpointsTests {
    static let key = Data((0..<32).map { UInt8(truncatingIfNeeded: $0 * 31 + 5) })

    static func endpoints(
        simulator: MioSimulator, mio: MioClient, store: InMemoryTokenStore, signer: OAuthStateSigner,
        time: TimeSource = .system, metrics: PrometheusMetricsFactory? = nil
    ) -> OAuthEndpoints {
        OAuthEndpoints(
            configuration: .init(mio: Sim.mioConfiguration(baseURL: simulator.baseURL!)),
            store: store, ledger: store, exchanger: mio, stateSigner: signer, timeSource: time,
            metricsFactory: metrics ?? PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()),
            logger: Sim.quietLogger
        )
    }

    static func state(fromConsentURL location: String) throws -> String {
        let components = try #require(URLComponents(string: location))
        return try #require(components.queryItems?.first { $0.name == "state" }?.value)
    }

    /// The `name=value` part of a Set-Cookie header.
    static func cookiePair(_ setCookie: String?) throws -> String {
        try #require(setCookie?.split(separator: ";").first.map(String.init))
    }

    /// Follows a signed link for `user` through `/oauth/connect`: the consent URL's state and the browser cookie.
    static func start(
        _ http: HTTPClient, base: String, user: String, replace: Bool = false, key: Data = key
    ) async throws -> (state: String, cookie: String) {
        let link = makeConnectLink(connectURL: "\(base)/oauth/connect", userID: user, stateKey: key, replace: replace)
        let connect = try await http.getPage(link)
        #expect(connect.status == 302, "\(connect.body)")
        return (try state(fromConsentURL: try #require(connect.location)), try cookiePair(connect.setCookie))
    }

    @Test func signedLinkRedirectsToConsentWithABrowserCookieAndCallbackStoresTokensOnce() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let signer = OAuthStateSigner(key: Self.key)
                let endpoints = Self.endpoints(simulator: simulator, mio: mio, store: store, signer: signer)
                try await withOAuthServer(endpoints) { base, http in
                    let link = makeConnectLink(
                        connectURL: "\(base)/oauth/connect", userID: "alice@example.com", stateKey: Self.key
                    )
                    let connect = try await http.getPage(link)
                    #expect(connect.status == 302)
                    let setCookie = try #require(connect.setCookie)
                    #expect(setCookie.hasPrefix(OAuthEndpoints.cookieName + "="))
                    #expect(setCookie.contains("HttpOnly"))
                    #expect(setCookie.contains("SameSite=Lax"))
                    #expect(!setCookie.contains("Secure"), "the test's redirect URL is http")
                    let location = try #require(connect.location)
                    let consent = try #require(URLComponents(string: location))
                    #expect(location.hasPrefix(simulator.baseURL! + "/connect?"))
                    let items = Dictionary(uniqueKeysWithValues: (consent.queryItems ?? []).map { ($0.name, $0.value ?? "") })
                    #expect(items["client_id"] == Sim.clientID)
                    #expect(items["redirect_uri"] == Sim.redirectURL)
                    #expect(items["scope"] == "openid profile email offline_access")
                    let state = try Self.state(fromConsentURL: location)
                    let cookie = try Self.cookiePair(setCookie)

                    let code = simulator.authorize(userID: "mio-alice")
                    let callbackURL = "\(base)/oauth/callback?code=\(code)&state=\(state)"
                    let callback = try await http.getPage(callbackURL, cookie: cookie)
                    #expect(callback.status == 200)
                    #expect(callback.body.contains("connected"))
                    #expect(!callback.body.contains(code))
                    let record = try #require(await store.get(userID: "alice@example.com"))
                    #expect(record.status == .active)
                    _ = try await mio.getContext(query: "hello", accessToken: record.accessToken)

                    // The same state again, from the same browser, is refused, and nothing changes.
                    let replay = try await http.getPage(callbackURL, cookie: cookie)
                    #expect(replay.status == 400)
                    #expect(replay.body.contains("already used"))
                    #expect(await store.get(userID: "alice@example.com")?.version == 1)
                }
            }
        }
    }

    @Test func unsignedAlteredOrExpiredLinksAreRefusedWithoutACookie() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let time = ManualTime(start: Date())
                let signer = OAuthStateSigner(key: Self.key, timeSource: time.source)
                let endpoints = Self.endpoints(simulator: simulator, mio: mio, store: store, signer: signer, time: time.source)
                try await withOAuthServer(endpoints) { base, http in
                    let connect = "\(base)/oauth/connect"
                    let genuine = makeConnectLink(connectURL: connect, userID: "bob", stateKey: Self.key, now: time.now)
                    let altered = genuine.replacingOccurrences(of: "user=bob", with: "user=mallory")
                    let otherKey = makeConnectLink(
                        connectURL: connect, userID: "bob", stateKey: Data(repeating: 8, count: 32), now: time.now
                    )
                    let cases: [(String, String)] = [
                        ("\(connect)?user=bob", "not signed"),
                        (altered, "altered"),
                        (otherKey, "altered"),
                        (genuine.replacingOccurrences(of: "expires=", with: "expires=9"), "altered"),
                        ("\(connect)?user=bob&expires=x&signature=abc", "malformed"),
                    ]
                    for (url, reason) in cases {
                        let page = try await http.getPage(url)
                        #expect(page.status == 400, "\(url)")
                        #expect(page.body.contains(reason), "\(page.body)")
                        #expect(page.setCookie == nil)
                        #expect(page.location == nil)
                    }
                    time.advance(by: .seconds(901))
                    let late = try await http.getPage(genuine)
                    #expect(late.status == 400)
                    #expect(late.body.contains("expired"))
                    #expect(late.location == nil)
                    #expect(try await store.all().isEmpty)
                }
            }
        }
    }

    @Test func callbackWithoutTheBrowserCookieOrWithAnotherIsRefused() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let endpoints = Self.endpoints(
                    simulator: simulator, mio: mio, store: store, signer: OAuthStateSigner(key: Self.key)
                )
                try await withOAuthServer(endpoints) { base, http in
                    let victim = try await Self.start(http, base: base, user: "victim")
                    let attacker = try await Self.start(http, base: base, user: "attacker")
                    let code = simulator.authorize(userID: "mio-victim")
                    let url = "\(base)/oauth/callback?code=\(code)&state=\(attacker.state)"
                    // The attacker's callback URL opened in the victim's browser: no cookie, or the victim's own.
                    for cookie in [nil, victim.cookie, "\(OAuthEndpoints.cookieName)=forged"] {
                        let page = try await http.getPage(url, cookie: cookie)
                        #expect(page.status == 400)
                        #expect(page.body.contains("another browser"), "\(page.body)")
                    }
                    #expect(try await store.all().isEmpty)
                    #expect(simulator.stats().tokensIssued == 0)
                }
            }
        }
    }

    @Test func aDifferentMioAccountIsRefusedUnlessTheLinkAllowsReplacingAndReplacementsAreCounted() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let registry = PrometheusCollectorRegistry()
                let endpoints = Self.endpoints(
                    simulator: simulator, mio: mio, store: store, signer: OAuthStateSigner(key: Self.key),
                    metrics: PrometheusMetricsFactory(registry: registry)
                )
                try await withOAuthServer(endpoints) { base, http in
                    func connect(account: String, replace: Bool) async throws -> Int {
                        let flow = try await Self.start(http, base: base, user: "u1", replace: replace)
                        let code = simulator.authorize(userID: account)
                        let url = "\(base)/oauth/callback?code=\(code)&state=\(flow.state)"
                        return try await http.getPage(url, cookie: flow.cookie).status
                    }
                    #expect(try await connect(account: "mio-a", replace: false) == 200)
                    let first = try #require(await store.get(userID: "u1"))
                    // The same account again: an ordinary reconnection.
                    #expect(try await connect(account: "mio-a", replace: false) == 200)
                    // Another account, without replace: refused, the tokens stay those of mio-a.
                    #expect(try await connect(account: "mio-b", replace: false) == 409)
                    let kept = try #require(await store.get(userID: "u1"))
                    #expect(kept.version == first.version + 1)
                    _ = try await mio.getContext(query: "q", accessToken: kept.accessToken)
                    // With replace: stored, and counted.
                    #expect(try await connect(account: "mio-b", replace: true) == 200)
                    #expect(try #require(await store.get(userID: "u1")).version == kept.version + 1)
                    var buffer: [UInt8] = []
                    registry.emit(into: &buffer)
                    let text = String(decoding: buffer, as: UTF8.self)
                    #expect(text.contains(#"mioctx_oauth_replacements_total{account="different"} 1"#), "\(text)")
                    #expect(text.contains(#"mioctx_oauth_refusals_total{reason="other_account"} 1"#), "\(text)")
                }
            }
        }
    }

    @Test func pagesReflectNoInput() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await MioClient.withClient(configuration: Sim.mioConfiguration(baseURL: simulator.baseURL!)) { mio in
                let store = InMemoryTokenStore()
                let endpoints = Self.endpoints(
                    simulator: simulator, mio: mio, store: store, signer: OAuthStateSigner(key: Self.key)
                )
                try await withOAuthServer(endpoints) { base, http in
                    let probe = "%3Cscript%3Ealert(1)%3C%2Fscript%3E"
                    let flow = try await Self.start(http, base: base, user: "<script>alert(1)</script>")
                    let pages = [
                        try await http.getPage("\(base)/oauth/connect?user=\(probe)&expires=1&signature=\(probe)"),
                        try await http.getPage("\(base)/oauth/callback?state=\(probe)&code=\(probe)"),
                        try await http.getPage(
                            "\(base)/oauth/callback?state=\(flow.state)&error=\(probe)", cookie: flow.cookie
                        ),
                    ]
                    for page in pages {
                        #expect(page.status == 400)
                        #expect(!page.body.contains("<script"), "\(page.body)")
                        #expect(!page.body.contains("alert"), "\(page.body)")
                    }
                }
            }
        }
    }

    @Test func replicasSharingTheStateKeyAcceptEachOthersStatesAndTheLedgerOnce() async throws {
        // What `MIOCTX_OAUTH_STATE_KEY` gives replicas: the callback may reach another replica than the link.
        let issuing = OAuthStateSigner(key: Self.key)
        let answering = OAuthStateSigner(key: Self.key)
        let nonce = OAuthStateSigner.makeBrowserNonce()
        let state = issuing.makeState(userID: "u-7", browserNonce: nonce)
        let verified = try answering.verify(state, browserNonce: nonce)
        #expect(verified.userID == "u-7")
        #expect(throws: OAuthStateSigner.Rejection.otherBrowser) {
            try answering.verify(state, browserNonce: OAuthStateSigner.makeBrowserNonce())
        }
        // A replica with a key of its own refuses it.
        #expect(throws: OAuthStateSigner.Rejection.forged) {
            try OAuthStateSigner.ephemeral().verify(state, browserNonce: nonce)
        }
        // Two replicas on one SQLite file: the state is accepted once.
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("t.sqlite").path
            let keyring = try TokenKeyring(parsing: TokenKeyring.generateEntry())
            let first = try SQLiteTokenStore(path: path, keyring: keyring)
            let second = try SQLiteTokenStore(path: path, keyring: keyring)
            let now = Date()
            #expect(try await first.claimOAuthState(id: verified.id, expiresAt: verified.expiresAt, now: now) == .first)
            #expect(try await second.claimOAuthState(id: verified.id, expiresAt: verified.expiresAt, now: now) == .replayed)
            // Once expired, the row is deleted (the state itself is refused as expired by then).
            let later = verified.expiresAt.addingTimeInterval(1)
            #expect(try await second.claimOAuthState(id: "other", expiresAt: later.addingTimeInterval(60), now: later) == .first)
            #expect(try await first.claimOAuthState(id: verified.id, expiresAt: later.addingTimeInterval(60), now: later) == .first)
            try await first.close()
            try await second.close()
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresLedgerAcceptsAStateOnceAcrossReplicasWithinItsBound() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        let keyring = try TokenKeyring(parsing: TokenKeyring.generateEntry())
        let claims = try await PostgresTokenStore.withStore(url: url, keyring: keyring) { first in
            try await PostgresTokenStore.withStore(url: url, keyring: keyring) { second in
                let now = Date()
                let expiry = now.addingTimeInterval(600)
                let later = expiry.addingTimeInterval(1)
                return [
                    try await first.claimOAuthState(id: "s1", expiresAt: expiry, now: now),
                    try await second.claimOAuthState(id: "s1", expiresAt: expiry, now: now),
                    try await second.claimOAuthState(id: "s2", expiresAt: expiry, now: now),
                    // Once expired, the row is deleted (the state itself is refused as expired by then).
                    try await first.claimOAuthState(id: "s1", expiresAt: later.addingTimeInterval(600), now: later),
                ]
            }
        }
        #expect(claims == [.first, .replayed, .first, .first])
    }

    @Test func theInMemoryLedgerIsBounded() async throws {
        let store = InMemoryTokenStore()
        let now = Date()
        for index in 0..<OAuthStateLedgerLimits.maximumStates {
            #expect(await store.claimOAuthState(id: "s\(index)", expiresAt: now.addingTimeInterval(600), now: now) == .first)
        }
        #expect(await store.claimOAuthState(id: "one-more", expiresAt: now.addingTimeInterval(600), now: now) == .full)
        #expect(await store.claimOAuthState(id: "s0", expiresAt: now.addingTimeInterval(600), now: now) == .replayed)
        let later = now.addingTimeInterval(601)
        #expect(await store.claimOAuthState(id: "one-more", expiresAt: later.addingTimeInterval(600), now: later) == .first)
    }
}
