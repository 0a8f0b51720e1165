public import Coordination
import Foundation
public import Hummingbird
public import Logging
public import Mio
public import MioTokens

/// The OAuth routes a worker mounts so users can connect their Mio account:
///
/// - `GET /oauth/connect?user=U` redirects to Mio's consent page (`{dashboard}/connect?client_id&redirect_uri&scope&state`)
///   with a signed, expiring, single-use `state` that binds the user id;
/// - `GET /oauth/callback?code=..&state=..` verifies the state, exchanges the code, stores the tokens and answers a
///   short HTML page; a forged, expired or replayed state, a refused consent or a failed exchange answers 400 with
///   the reason and stores nothing.
///
/// `/oauth/connect` trusts the `user` it is given: mount it behind the application's own authentication (or hand
/// users links made with ``connectURL(for:)``), or anyone could attach their Mio account to another user id.
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
    }

    private let configuration: Configuration
    private let store: any TokenStore
    private let exchanger: any AuthorizationCodeExchanging
    private let stateSigner: OAuthStateSigner
    private let timeSource: TimeSource
    private let logger: Logger

    /// Creates the endpoints.
    /// - Parameters:
    ///   - configuration: Client id, redirect URL, dashboard URL, paths.
    ///   - store: Where the tokens are stored.
    ///   - exchanger: Mio (a `MioClient`), which exchanges the code.
    ///   - stateSigner: Signs and checks `state`; replicas behind one load balancer must share its key.
    ///   - timeSource: The wall clock for the tokens' expiry (default: the system's).
    ///   - logger: Never receives a code or a token.
    public init(
        configuration: Configuration,
        store: any TokenStore,
        exchanger: any AuthorizationCodeExchanging,
        stateSigner: OAuthStateSigner,
        timeSource: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.oauth")
    ) {
        self.configuration = configuration
        self.store = store
        self.exchanger = exchanger
        self.stateSigner = stateSigner
        self.timeSource = timeSource
        self.logger = logger
    }

    /// The URL of Mio's consent page for `userID`, with a fresh signed state.
    public func connectURL(for userID: String) -> String {
        var components = URLComponents(string: configuration.dashboardURL.trimmingTrailingSlashes + "/connect")
            ?? URLComponents()
        components.queryItems = [
            URLQueryItem(name: "client_id", value: configuration.clientID),
            URLQueryItem(name: "redirect_uri", value: configuration.redirectURL),
            URLQueryItem(name: "scope", value: configuration.scope),
            URLQueryItem(name: "state", value: stateSigner.makeState(userID: userID)),
        ]
        // `+` is legal in a query but read as a space by form decoders: encode it.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        return components.string ?? ""
    }

    /// Adds `GET connectPath` and `GET callbackPath` to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get(RouterPath(configuration.connectPath)) { request, _ -> Response in
            guard let user = request.uri.queryParameters.get("user"), !user.isEmpty else {
                return Self.page(.badRequest, title: "Missing user", message: "The connect link needs ?user=USER_ID.")
            }
            return Response(status: .found, headers: [.location: connectURL(for: user)])
        }
        router.get(RouterPath(configuration.callbackPath)) { request, _ -> Response in
            await callback(query: request.uri.queryParameters)
        }
    }

    private func callback(query: Parameters) async -> Response {
        guard let state = query.get("state"), !state.isEmpty else {
            return Self.page(.badRequest, title: "Connection failed", message: "The callback has no state.")
        }
        let userID: String
        do {
            userID = try stateSigner.consume(state)
        } catch {
            logger.warning("OAuth callback refused", metadata: ["reason": "\(error)"])
            return Self.page(.badRequest, title: "Connection failed", message: "Invalid state: \(error).")
        }
        if let error = query.get("error") {
            return Self.page(
                .badRequest, title: "Connection failed", message: "Mio did not grant access: \(error)."
            )
        }
        guard let code = query.get("code"), !code.isEmpty else {
            return Self.page(.badRequest, title: "Connection failed", message: "The callback has no code.")
        }
        do {
            let response = try await exchanger.exchangeCodeForTokens(code: code)
            try await store.upsert(userID: userID, tokens: TokenGrant(response: response, receivedAt: timeSource.wallNow()))
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

    private static func page(_ status: HTTPResponse.Status, title: String, message: String) -> Response {
        let html = """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>\(title.htmlEscaped)</title></head>
            <body><h1>\(title.htmlEscaped)</h1><p>\(message.htmlEscaped)</p></body></html>

            """
        return Response(
            status: status,
            headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html))
        )
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

    fileprivate var trimmingTrailingSlashes: String {
        var text = self
        while text.hasSuffix("/") { text.removeLast() }
        return text
    }
}

/// Adds the OAuth connect and callback routes to `router` (see ``OAuthEndpoints``).
/// - Parameters:
///   - router: The worker's router.
///   - configuration: Client id, redirect URL, dashboard URL, paths.
///   - store: Where the tokens are stored.
///   - exchanger: Mio (a `MioClient`), which exchanges the code.
///   - stateSigner: Signs and checks `state`; replicas behind one load balancer must share its key.
///   - logger: Never receives a code or a token.
public func addOAuthRoutes<Context: RequestContext>(
    to router: Router<Context>,
    configuration: OAuthEndpoints.Configuration,
    store: any TokenStore,
    exchanger: any AuthorizationCodeExchanging,
    stateSigner: OAuthStateSigner,
    logger: Logger = Logger(label: "mioctx.oauth")
) {
    OAuthEndpoints(
        configuration: configuration, store: store, exchanger: exchanger, stateSigner: stateSigner, logger: logger
    ).addRoutes(to: router)
}
