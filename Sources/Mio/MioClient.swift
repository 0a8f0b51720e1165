public import Coordination
public import CoreMetrics
public import Foundation
public import Logging
import JSON
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
#if TLS
import NIOSSL
#endif
public import Tracing

/// A client for the Mio API that speaks exactly the wire protocol of the official server SDK
/// (`@mio-xyz/sdk/server`): the same paths, JSON field names, grant types and `k: 3`.
///
/// Where the SDK throws a bare "Token exchange failed", this client throws a ``MioError`` that keeps the
/// server's status, OAuth error, `WWW-Authenticate` error and `Retry-After`. It never logs or reports an
/// access token, refresh token, authorization code or the client secret.
///
/// The client owns an HTTP connection pool: call ``shutdown()`` when done, or use
/// ``withClient(configuration:logger:_:)``.
///
/// The transport (one request through the pool, its span, metrics and log line) is in `MioClient+Transport.swift`;
/// turning answers and failures into ``MioError``s is in `MioClient+Errors.swift`.
public final class MioClient: Sendable {
    /// The configuration this client was created with.
    public let configuration: Configuration

    /// The connection pool to Mio, or why none could be made (an invalid `apiURL` or TLS configuration): then
    /// every request fails with that reason.
    let pool: HTTP1ConnectionPool?
    let poolError: MioError?
    let logger: Logger
    let baseURL: String
    let timeout: TimeAmount
    /// Measures request durations (monotonic) and turns a `Retry-After` HTTP-date into a delay (wall clock).
    let timeSource: TimeSource
    let metrics: MioClientMetrics
    /// Records a client span per request and injects its context into the headers; nil when nothing records.
    let tracer: (any Tracer)?
    /// Each endpoint's request head, prepared once: a call copies it and adds its token.
    let templates: [String: HTTPRequestHead]

    static let tokenEndpoint = Endpoint(method: .POST, path: "/v1/auth/oauth2/token")
    static let contextEndpoint = Endpoint(method: .POST, path: "/v1/context")
    static let summaryEndpoint = Endpoint(method: .GET, path: "/v1/context/summary")

    /// The largest response body the client reads; Mio's answers are far smaller.
    static let maxBodyBytes = 8 * 1024 * 1024

    /// Creates a client and its connection pool.
    /// - Parameters:
    ///   - configuration: Where Mio is and which application this is.
    ///   - logger: Where request outcomes go (at debug level; never with a secret).
    ///   - metricsFactory: Receives `mioctx_mio_requests_total` and `mioctx_mio_request_duration_seconds`
    ///     (default: the bootstrapped `MetricsSystem.factory`).
    ///   - tracer: Makes a client span per request and injects its context (W3C `traceparent` with an OpenTelemetry
    ///     tracer) into the request headers (default: the bootstrapped `InstrumentationSystem.tracer`).
    ///   - timeSource: Measures request durations and turns a `Retry-After` HTTP-date into a delay (default: the
    ///     system's clocks).
    public convenience init(
        configuration: Configuration,
        logger: Logger = Logger(label: "mio"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer,
        timeSource: TimeSource = .system
    ) {
        self.init(
            configuration: configuration, logger: logger, timeSource: timeSource, metricsFactory: metricsFactory,
            tracer: tracer
        )
    }

    /// Creates a client configured from the SDK's environment variables (`MIO_CLIENT_ID`, `MIO_CLIENT_SECRET`,
    /// `MIO_REDIRECT_URL`, and optionally `MIO_API_URL`, `MIO_DASHBOARD_URL`).
    /// - Parameters:
    ///   - environment: The environment to read, by default the process's.
    ///   - logger: Where request outcomes go.
    /// - Throws: `MioConfigurationError` naming every required variable that is missing.
    public convenience init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "mio")
    ) throws {
        self.init(configuration: try Configuration.fromEnvironment(environment), logger: logger)
    }

    /// Creates a client with an injected time source and, for tests, a TLS configuration.
    init(
        configuration: Configuration,
        logger: Logger,
        timeSource: TimeSource,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer,
        tlsConfiguration: TLSConfiguration? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.timeSource = timeSource
        self.metrics = MioClientMetrics(factory: metricsFactory)
        var base = configuration.apiURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.timeout = TimeAmount(configuration.requestTimeout)

        // The client opens a span per request, a child of the calling task's span (the job's Mio call), and
        // injects its context into the headers: that is how a job's trace reaches Mio. A tracer that records
        // nothing (the default) would still cost a span's attributes per request, so it is left out.
        self.tracer = tracer is NoOpTracer ? nil : tracer
        let target = Self.parseAPIURL(base)
        let pool: Result<HTTP1ConnectionPool, MioError> = target.flatMap { target in
            // The request's deadline (`requestTimeout`) bounds the whole exchange: waiting for a connection,
            // connecting, sending and reading.
            let timeout = TimeAmount(configuration.requestTimeout)
            let limits = HTTP1ConnectionPool.Limits(
                maxConnections: max(1, configuration.maxConnections),
                connectTimeout: min(timeout, .seconds(10)),
                idleTimeout: .seconds(60),
                deadlineResolution: max(.milliseconds(5), min(.milliseconds(100), .nanoseconds(timeout.nanoseconds / 10))),
                successBodyLimit: Self.maxBodyBytes,
                errorBodyLimit: 64 * 1024
            )
            do {
                return .success(
                    try HTTP1ConnectionPool(
                        origin: target.origin,
                        limits: limits,
                        group: MultiThreadedEventLoopGroup.singleton,
                        tlsConfiguration: tlsConfiguration
                    )
                )
            } catch {
                return .failure(
                    MioError(code: .clientError, endpoint: "client", detail: "TLS could not be set up: \(error)")
                )
            }
        }
        self.pool = try? pool.get()
        if case .failure(let error) = pool { self.poolError = error } else { self.poolError = nil }
        var templates: [String: HTTPRequestHead] = [:]
        let basePath = (try? target.get().basePath) ?? ""
        let host = (try? target.get().origin.hostHeader) ?? ""
        for endpoint in [Self.tokenEndpoint, Self.contextEndpoint, Self.summaryEndpoint] {
            let headers: HTTPHeaders = [
                "Host": host, "Content-Type": "application/json", "Accept": "application/json", "User-Agent": "mioctx",
            ]
            templates[endpoint.path] = HTTPRequestHead(
                version: .http1_1,
                method: endpoint.method,
                uri: basePath + endpoint.path,
                headers: headers
            )
        }
        self.templates = templates
    }

    /// Splits `apiURL` into the pool's origin and the path prefix of every endpoint.
    static func parseAPIURL(_ url: String) -> Result<(origin: HTTP1ConnectionPool.Origin, basePath: String), MioError> {
        let invalid = { (reason: String) in
            Result<(origin: HTTP1ConnectionPool.Origin, basePath: String), MioError>.failure(
                MioError(code: .clientError, endpoint: "client", detail: "mio.apiURL \(reason)")
            )
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            return invalid("is not a URL")
        }
        guard scheme == "http" || scheme == "https" else { return invalid("must start with http:// or https://") }
        guard let host = components.host, !host.isEmpty else { return invalid("has no host") }
        guard components.query == nil, components.fragment == nil, components.user == nil else {
            return invalid("must not have a query, a fragment or credentials")
        }
        let useTLS = scheme == "https"
        let port = components.port ?? (useTLS ? 443 : 80)
        var basePath = components.percentEncodedPath
        while basePath.hasSuffix("/") { basePath.removeLast() }
        let unbracketed = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return .success((HTTP1ConnectionPool.Origin(useTLS: useTLS, host: unbracketed, port: port), basePath))
    }

    /// Runs `body` with a new client and shuts the client down afterwards, whether `body` throws or not.
    /// - Parameters:
    ///   - configuration: The client configuration.
    ///   - logger: The client's logger.
    ///   - body: The work to do with the client.
    /// - Returns: What `body` returns.
    public static func withClient<T: Sendable>(
        configuration: Configuration,
        logger: Logger = Logger(label: "mio"),
        _ body: (MioClient) async throws -> T
    ) async throws -> T {
        let client = MioClient(configuration: configuration, logger: logger)
        let result: T
        do {
            result = try await body(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        return result
    }

    /// Why the client can make no request at all (an `apiURL` it cannot use, an https one in a build without the
    /// TLS trait, a TLS setup that failed), or nil: check it at start-up rather than meet it at every request.
    public var configurationError: MioError? { poolError }

    /// The connection pool's state on each event loop, for the diagnostics of a stall (a test that waits in vain).
    package func poolDiagnostics() async -> String {
        guard let pool else { return "no pool: \(poolError.map { "\($0)" } ?? "-")" }
        return await pool.diagnostics()
    }

    /// Closes the connection pool and waits until its connections are closed; a request still running fails with
    /// ``MioError/Code/transportFailure``, and so does every later one. Calling it again (or from several tasks)
    /// waits the same way and does nothing more.
    /// - Throws: Nothing today; `throws` is kept for source compatibility.
    public func shutdown() async throws {
        await self.pool?.shutdown()
    }

    // MARK: - API

    /// Swaps an authorization code for tokens (grant `authorization_code`, with the redirect URL and the
    /// client credentials).
    /// - Parameter code: The authorization code from Mio's consent flow.
    /// - Returns: The user's tokens.
    /// - Throws: ``MioError``; `invalidGrant` when the code, redirect URL or credentials do not match,
    ///   `invalidRequest` when the code is missing.
    public func exchangeCodeForTokens(code: String) async throws(MioError) -> MioTokenResponse {
        let body = TokenRequest(
            grantType: "authorization_code",
            code: code,
            refreshToken: nil,
            redirectURI: self.configuration.redirectURL,
            clientID: self.configuration.clientID,
            clientSecret: self.configuration.clientSecret
        )
        return try await self.requestTokens(body, secrets: RequestSecrets(code, self.configuration.clientSecret))
    }

    /// Mints new tokens from a refresh token (grant `refresh_token`). Mio rotates refresh tokens: store the
    /// returned one; presenting the old one again fails with `invalid_grant` and may revoke the user.
    /// - Parameter refreshToken: The refresh token stored from the previous exchange or refresh.
    /// - Returns: The new tokens.
    /// - Throws: ``MioError``; `invalidGrant` when the refresh token is expired, revoked or already used.
    public func refreshTokens(refreshToken: String) async throws(MioError) -> MioTokenResponse {
        let body = TokenRequest(
            grantType: "refresh_token",
            code: nil,
            refreshToken: refreshToken,
            redirectURI: nil,
            clientID: self.configuration.clientID,
            clientSecret: self.configuration.clientSecret
        )
        return try await self.requestTokens(body, secrets: RequestSecrets(refreshToken, self.configuration.clientSecret))
    }

    /// Asks Mio for the user's context relevant to a query (`POST /v1/context` with `{"query":..,"k":3}`).
    /// - Parameters:
    ///   - query: What the context is for.
    ///   - accessToken: The user's access token.
    /// - Returns: The `content` string: the refined, personalized user summary for that query.
    /// - Throws: ``MioError``; `unauthorized` (with `wwwAuthenticateError`) when the token is expired or bad.
    public func getContext(query: String, accessToken: String) async throws(MioError) -> String {
        let endpoint = Self.contextEndpoint
        let body = Self.contextRequestBody(query: query)
        let response = try await self.perform(
            endpoint,
            body: body,
            accessToken: accessToken,
            secrets: RequestSecrets(accessToken, self.configuration.clientSecret)
        )
        if let content = ContextAnswerReader.content(of: response) {
            return content
        }
        guard let decoded = try? JSONDecoder().decode(ContextResponse.self, from: response) else {
            throw MioError(
                code: .malformedResponse,
                endpoint: endpoint.label,
                status: 200,
                detail: "body is not {\"content\": string}"
            )
        }
        return decoded.content
    }

    /// Fetches the user's latest context summary (`GET /v1/context/summary`).
    /// - Parameter accessToken: The user's access token.
    /// - Returns: The summary, or nil when Mio has none for this user yet.
    /// - Throws: ``MioError``; `unauthorized` when the token is expired or bad.
    public func getContextSummary(accessToken: String) async throws(MioError) -> String? {
        let endpoint = Self.summaryEndpoint
        let response = try await self.perform(
            endpoint,
            body: nil,
            accessToken: accessToken,
            secrets: RequestSecrets(accessToken, self.configuration.clientSecret)
        )
        guard let decoded = try? JSONDecoder().decode(SummaryResponse.self, from: response) else {
            throw MioError(
                code: .malformedResponse,
                endpoint: endpoint.label,
                status: 200,
                detail: "body is not {\"summary\": string or null}"
            )
        }
        return decoded.summary
    }
}
