public import Coordination
public import CoreMetrics
import Foundation
public import Hummingbird
public import Logging
public import Mio
public import MioTokens

/// The OAuth routes users connect their Mio account through, served on a listener of their own (see
/// `oauth.enabled`), apart from the operations listener:
///
/// - `GET /oauth/connect?user=U&expires=E[&replace=1]&signature=S` accepts only a link signed by the application's
///   backend (``ConnectLink``); it sets an HttpOnly, SameSite=Lax cookie holding a random browser nonce (Secure when
///   the redirect URL is https) and redirects to Mio's consent page (`{dashboard}/connect?client_id&redirect_uri&scope&state`)
///   with a signed, expiring `state` that binds the user id and the nonce's digest;
/// - `GET /oauth/callback?code=..&state=..` checks the state's signature and expiry and the browser's cookie,
///   records the state as used in the token store (once across replicas), exchanges the code, and stores the
///   tokens. When Mio's answer names the account (`id_token`'s `sub`) and the user id is connected to another
///   account, it refuses unless the link said `replace=1`; any replacement is logged and counted.
///
/// Every refusal answers a short page that reflects none of the request, and stores nothing.
public struct OAuthEndpoints: Sendable {
    /// Settings of the OAuth routes.
    public struct Configuration: Sendable {
        /// The OAuth client id.
        public var clientID: String
        /// The redirect URL registered in Mio; it must route to ``callbackPath`` of this server.
        public var redirectURL: String
        /// Mio's dashboard, where the consent page lives (`{dashboardURL}/connect`).
        public var dashboardURL: String
        /// The scope requested (default: the SDK's `openid profile email offline_access`).
        public var scope: String
        /// The path of the connect route (default `/oauth/connect`).
        public var connectPath: String
        /// The path of the callback route (default `/oauth/callback`).
        public var callbackPath: String

        /// Creates a configuration.
        public init(
            clientID: String,
            redirectURL: String,
            dashboardURL: String,
            scope: String = MioClient.Configuration.scope,
            connectPath: String = "/oauth/connect",
            callbackPath: String = "/oauth/callback"
        ) {
            self.clientID = clientID
            self.redirectURL = redirectURL
            self.dashboardURL = dashboardURL
            self.scope = scope
            self.connectPath = connectPath
            self.callbackPath = callbackPath
        }

        /// The configuration matching a Mio client's.
        public init(mio: MioClient.Configuration) {
            self.init(clientID: mio.clientID, redirectURL: mio.redirectURL, dashboardURL: mio.dashboardURL)
        }

        /// The public URL of the connect route: the redirect URL's origin with ``connectPath``.
        public var connectURL: String {
            guard var components = URLComponents(string: redirectURL) else { return connectPath }
            components.path = connectPath
            components.query = nil
            components.fragment = nil
            return components.string ?? connectPath
        }

        /// Whether the cookie is marked Secure: the flow is served over https.
        var secureCookie: Bool { redirectURL.lowercased().hasPrefix("https://") }
    }

    /// The name of the cookie holding the browser nonce.
    public static let cookieName = "mioctx_oauth_nonce"

    private let configuration: Configuration
    private let store: any TokenStore
    private let ledger: any OAuthStateLedger
    private let exchanger: any AuthorizationCodeExchanging
    private let stateSigner: OAuthStateSigner
    private let timeSource: TimeSource
    private let logger: Logger
    private let metrics: OAuthMetrics

    /// Creates the endpoints.
    /// - Parameters:
    ///   - configuration: Client id, redirect URL, dashboard URL, paths.
    ///   - store: Where the tokens are stored.
    ///   - ledger: Where used states are recorded; the token store itself (SQLite, PostgreSQL or in memory), so
    ///     that a state is accepted once whichever replica the callback reaches.
    ///   - exchanger: Mio (a `MioClient`), which exchanges the code.
    ///   - stateSigner: Checks connect links and signs and checks `state` with the state key the application's
    ///     backend and every replica share.
    ///   - timeSource: The wall clock for links, states and the tokens' expiry (default: the system's).
    ///   - metricsFactory: Receives `mioctx_oauth_refusals_total{reason}` and
    ///     `mioctx_oauth_replacements_total{account}` (default: the bootstrapped `MetricsSystem.factory`).
    ///   - logger: Never receives a code or a token.
    public init(
        configuration: Configuration,
        store: any TokenStore,
        ledger: any OAuthStateLedger,
        exchanger: any AuthorizationCodeExchanging,
        stateSigner: OAuthStateSigner,
        timeSource: TimeSource = .system,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        logger: Logger = Logger(label: "mioctx.oauth")
    ) {
        self.configuration = configuration
        self.store = store
        self.ledger = ledger
        self.exchanger = exchanger
        self.stateSigner = stateSigner
        self.timeSource = timeSource
        self.metrics = OAuthMetrics(factory: metricsFactory)
        self.logger = logger
    }

    /// Adds `GET connectPath` and `GET callbackPath` to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get(RouterPath(configuration.connectPath)) { request, _ -> Response in
            connect(query: request.uri.queryParameters)
        }
        router.get(RouterPath(configuration.callbackPath)) { request, _ -> Response in
            await callback(query: request.uri.queryParameters, cookieNonce: Self.cookie(Self.cookieName, in: request))
        }
    }

    private func connect(query: Parameters) -> Response {
        let link: ConnectLink
        do {
            link = try ConnectLink.verify(
                parameter: { query.get($0) }, key: stateSigner.key, now: timeSource.wallNow()
            )
        } catch {
            metrics.refused(error.reason)
            logger.notice("OAuth connect link refused", metadata: ["reason": "\(error.reason)"])
            return Self.page(.badRequest, title: "Link refused", message: error.rawValue)
        }
        let nonce = OAuthStateSigner.makeBrowserNonce()
        let state = stateSigner.makeState(userID: link.userID, browserNonce: nonce, replace: link.replace)
        var cookie = "\(Self.cookieName)=\(nonce); Path=/; Max-Age=\(stateSigner.stateLifetime.components.seconds); "
            + "HttpOnly; SameSite=Lax"
        if configuration.secureCookie { cookie += "; Secure" }
        return Response(
            status: .found,
            headers: [.location: consentURL(state: state), .setCookie: cookie, .cacheControl: "no-store"]
        )
    }

    /// The URL of Mio's consent page with `state`.
    private func consentURL(state: String) -> String {
        var dashboard = configuration.dashboardURL
        while dashboard.hasSuffix("/") { dashboard.removeLast() }
        var components = URLComponents(string: dashboard + "/connect") ?? URLComponents()
        components.queryItems = [
            URLQueryItem(name: "client_id", value: configuration.clientID),
            URLQueryItem(name: "redirect_uri", value: configuration.redirectURL),
            URLQueryItem(name: "scope", value: configuration.scope),
            URLQueryItem(name: "state", value: state),
        ]
        // `+` is legal in a query but read as a space by form decoders: encode it.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        return components.string ?? ""
    }

    private func callback(query: Parameters, cookieNonce: String?) async -> Response {
        guard let stateText = query.get("state"), !stateText.isEmpty else {
            metrics.refused("missing_state")
            return Self.page(.badRequest, title: "Connection failed", message: "The callback has no state.")
        }
        let state: OAuthStateSigner.VerifiedState
        do {
            state = try stateSigner.verify(stateText, browserNonce: cookieNonce)
            switch try await ledger.claimOAuthState(id: state.id, expiresAt: state.expiresAt, now: timeSource.wallNow()) {
            case .first: break
            case .replayed: throw OAuthStateSigner.Rejection.replayed
            case .full: throw OAuthStateSigner.Rejection.ledgerFull
            }
        } catch let rejection as OAuthStateSigner.Rejection {
            metrics.refused(rejection.reason)
            logger.notice("OAuth callback refused", metadata: ["reason": "\(rejection.reason)"])
            let status: HTTPResponse.Status = rejection == .ledgerFull ? .serviceUnavailable : .badRequest
            return Self.page(status, title: "Connection failed", message: "Refused: \(rejection).")
        } catch {
            logger.error("OAuth state ledger unavailable", metadata: ["error": "\(error)"])
            return Self.page(.serviceUnavailable, title: "Connection failed", message: "Please try again later.")
        }
        let userID = state.userID
        if let error = query.get("error") {
            metrics.refused("consent_denied")
            // Only an OAuth error code's characters are shown; anything else is not repeated.
            let shown = error.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "_") }) ? " (\(error))" : ""
            return Self.page(.badRequest, title: "Connection failed", message: "Mio did not grant access\(shown).")
        }
        guard let code = query.get("code"), !code.isEmpty else {
            metrics.refused("missing_code")
            return Self.page(.badRequest, title: "Connection failed", message: "The callback has no code.")
        }
        do {
            let response = try await exchanger.exchangeCodeForTokens(code: code)
            let existing = try await store.get(userID: userID)
            if let refusal = replacementRefusal(existing: existing, newIDToken: response.idToken, state: state) {
                return refusal
            }
            let grant = try TokenGrant(codeExchange: response, userID: userID, receivedAt: timeSource.wallNow())
            try await store.upsert(userID: userID, tokens: grant)
        } catch let error as TokenError where error.code == .invalidInput {
            metrics.refused("no_refresh_token")
            logger.error("OAuth code exchange answered without a refresh token", metadata: ["user": "\(userID)"])
            return Self.page(
                .badGateway, title: "Connection failed",
                message: "Mio granted no refresh token, so the connection could not last; nothing was stored."
            )
        } catch let error as MioError {
            logger.warning("OAuth code exchange failed", metadata: ["user": "\(userID)", "error": "\(error.code)"])
            return Self.page(
                .badRequest, title: "Connection failed", message: "Mio refused the authorization code (\(error.code))."
            )
        } catch {
            logger.error("storing tokens after OAuth failed", metadata: ["user": "\(userID)", "error": "\(error)"])
            return Self.page(
                .internalServerError, title: "Connection failed", message: "The tokens could not be stored; try again."
            )
        }
        logger.info("user connected their Mio account", metadata: ["user": "\(userID)"])
        return Self.page(
            .ok, title: "Connected", message: "Your Mio account is connected. You can close this window."
        )
    }

    /// Nil when the new tokens may be stored (logging and counting a replacement), else the refusal page.
    private func replacementRefusal(
        existing: TokenRecord?, newIDToken: String?, state: OAuthStateSigner.VerifiedState
    ) -> Response? {
        guard let existing, existing.status != .revoked else { return nil }
        let oldSubject = existing.idToken.flatMap(Self.subject(ofIDToken:))
        let newSubject = newIDToken.flatMap(Self.subject(ofIDToken:))
        let account: String
        if let oldSubject, let newSubject {
            if oldSubject == newSubject { return nil }
            guard state.replace else {
                metrics.refused("other_account")
                logger.warning(
                    "OAuth callback refused: the user id is connected to another Mio account and the link does not allow replacing it",
                    metadata: ["user": "\(state.userID)"]
                )
                return Self.page(
                    .conflict, title: "Connection refused",
                    message: "This user is already connected to a different Mio account. Ask your application for a "
                        + "link that allows replacing it."
                )
            }
            account = "different"
        } else {
            account = "unknown"
        }
        metrics.replaced(account: account)
        logger.notice(
            "OAuth callback replaces the user's Mio connection",
            metadata: ["user": "\(state.userID)", "account": "\(account)", "replaceAllowed": "\(state.replace)"]
        )
        return nil
    }

    /// The `sub` claim of an id token (a JWT). Its signature is not checked: the token comes straight from Mio's
    /// token endpoint over the connection the client authenticated (OpenID Connect Core 3.1.3.7).
    static func subject(ofIDToken token: String) -> String? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, let data = Data(base64URLEncoded: String(parts[1])),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let subject = object["sub"] as? String, !subject.isEmpty
        else { return nil }
        return subject
    }

    /// The value of cookie `name` in the request's `Cookie` headers.
    static func cookie(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name {
                    return parts[1].trimmingCharacters(in: .whitespaces)
                }
            }
        }
        return nil
    }

    private static func page(_ status: HTTPResponse.Status, title: String, message: String) -> Response {
        let html = """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>\(title.htmlEscaped)</title></head>
            <body><h1>\(title.htmlEscaped)</h1><p>\(message.htmlEscaped)</p></body></html>

            """
        return Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .init("Content-Security-Policy")!: "default-src 'none'", .init("X-Content-Type-Options")!: "nosniff",
                .init("Referrer-Policy")!: "no-referrer",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html))
        )
    }
}

/// `mioctx_oauth_refusals_total{reason}` and `mioctx_oauth_replacements_total{account}`.
struct OAuthMetrics: Sendable {
    private let factory: any MetricsFactory

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func refused(_ reason: String) {
        Counter(label: "mioctx_oauth_refusals_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    func replaced(account: String) {
        Counter(label: "mioctx_oauth_replacements_total", dimensions: [("account", account)], factory: factory)
            .increment()
    }
}

extension String {
    fileprivate var htmlEscaped: String {
        var result = ""
        for character in self {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }
}
