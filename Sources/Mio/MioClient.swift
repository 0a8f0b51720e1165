public import CoreMetrics
public import Foundation
public import Logging
import JSON
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL
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
public final class MioClient: Sendable {
    /// The configuration this client was created with.
    public let configuration: Configuration

    /// The connection pool to Mio, or why none could be made (an invalid `apiURL` or TLS configuration): then
    /// every request fails with that reason.
    private let pool: HTTP1ConnectionPool?
    private let poolError: MioError?
    private let logger: Logger
    private let baseURL: String
    private let timeout: TimeAmount
    private let now: @Sendable () -> Date
    private let metrics: MioClientMetrics
    /// Records a client span per request and injects its context into the headers; nil when nothing records.
    private let tracer: (any Tracer)?
    /// Each endpoint's request head, prepared once: a call copies it and adds its token.
    private let templates: [String: HTTPRequestHead]

    static let tokenEndpoint = Endpoint(method: .POST, path: "/v1/auth/oauth2/token")
    static let contextEndpoint = Endpoint(method: .POST, path: "/v1/context")
    static let summaryEndpoint = Endpoint(method: .GET, path: "/v1/context/summary")

    /// The largest response body the client reads; Mio's answers are far smaller.
    private static let maxBodyBytes = 8 * 1024 * 1024

    /// Creates a client and its connection pool.
    /// - Parameters:
    ///   - configuration: Where Mio is and which application this is.
    ///   - logger: Where request outcomes go (at debug level; never with a secret).
    ///   - metricsFactory: Receives `mioctx_mio_requests_total` and `mioctx_mio_request_duration_seconds`
    ///     (default: the bootstrapped `MetricsSystem.factory`).
    ///   - tracer: Makes a client span per request and injects its context (W3C `traceparent` with an OpenTelemetry
    ///     tracer) into the request headers (default: the bootstrapped `InstrumentationSystem.tracer`).
    public convenience init(
        configuration: Configuration,
        logger: Logger = Logger(label: "mio"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer
    ) {
        self.init(configuration: configuration, logger: logger, now: { Date() }, metricsFactory: metricsFactory, tracer: tracer)
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

    /// Creates a client with an injected wall clock, used to turn a `Retry-After` HTTP-date into a delay.
    init(
        configuration: Configuration,
        logger: Logger,
        now: @escaping @Sendable () -> Date,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        tracer: any Tracer = InstrumentationSystem.tracer,
        tlsConfiguration: TLSConfiguration? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.now = now
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

    /// Closes the connection pool; a request still running fails. Call once, after the last request.
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

    // MARK: - Transport

    private func requestTokens(_ request: TokenRequest, secrets: RequestSecrets) async throws(MioError) -> MioTokenResponse {
        let endpoint = Self.tokenEndpoint
        let body = try self.encode(request, endpoint: endpoint)
        let response = try await self.perform(endpoint, body: body, accessToken: nil, secrets: secrets)
        do {
            return try JSONDecoder().decode(MioTokenResponse.self, from: response)
        } catch {
            // The body holds tokens: report only which field was wrong, never the body or the decoder's text.
            throw MioError(
                code: .malformedResponse,
                endpoint: endpoint.label,
                status: 200,
                detail: "token response rejected: \(Self.describeDecodingFailure(error))"
            )
        }
    }

    /// `{"query":"...","k":3}`, byte for byte what the SDK sends (keys in this order, slashes not escaped).
    static func contextRequestBody(query: String) -> ByteBuffer {
        var writer = JSONWriter(capacity: query.utf8.count + 24)
        writer.beginObject()
        writer.key("query")
        writer.string(query)
        writer.key("k")
        writer.integer(3)
        writer.endObject()
        return ByteBuffer(bytes: writer.bytes)
    }

    private func encode(_ value: some Encodable, endpoint: Endpoint) throws(MioError) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        do {
            return try encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator())
        } catch {
            throw MioError(code: .clientError, endpoint: endpoint.label, detail: "request body could not be encoded")
        }
    }

    /// Sends one request and returns the body of a 2xx answer; maps everything else to a `MioError`.
    ///
    /// Only the exchange itself is async; building the request and judging the answer are synchronous helpers
    /// that are never inlined. A task keeps the memory of its deepest stack of async frames until it ends, and
    /// with a thousand jobs in flight every byte of this frame counts a thousand times.
    private func perform(
        _ endpoint: Endpoint,
        body: ByteBuffer?,
        accessToken: String?,
        secrets: RequestSecrets
    ) async throws(MioError) -> ByteBuffer {
        let started = ContinuousClock.now
        let span = self.startSpan(endpoint)
        let exchange: Result<HTTPAnswer, any Error>
        switch self.makeRequest(endpoint, accessToken: accessToken, span: span) {
        case .success(let request):
            exchange = await self.exchange(request, body: body)
        case .failure(let error):
            exchange = .failure(error)
        }
        return try self.judge(exchange, endpoint: endpoint, started: started, secrets: secrets, span: span)
    }

    /// Runs one request through the connection pool and waits for its answer; cancelling the calling task
    /// cancels the request.
    private func exchange(_ request: HTTPRequestHead, body: ByteBuffer?) async -> Result<HTTPAnswer, any Error> {
        guard let pool = self.pool else {
            return .failure(self.poolError ?? MioError(code: .clientError, endpoint: "client", detail: "no connection pool"))
        }
        do {
            return .success(try await pool.execute(request, body: body, timeout: self.timeout))
        } catch {
            return .failure(error)
        }
    }

    /// A copy of the endpoint's prepared request head with this call's token.
    @inline(never)
    private func makeRequest(
        _ endpoint: Endpoint,
        accessToken: String?,
        span: (any Span)?
    ) -> Result<HTTPRequestHead, any Error> {
        guard var request = self.templates[endpoint.path] else {
            return .failure(MioError(code: .clientError, endpoint: endpoint.label, detail: "unknown endpoint"))
        }
        // One copy of the template's headers, with room for the token, `Content-Length` and a trace context.
        request.headers.reserveCapacity(request.headers.count + 4)
        if let accessToken {
            guard HTTP1ConnectionPool.isValidHeaderValue(accessToken) else {
                return .failure(
                    MioError(
                        code: .clientError,
                        endpoint: endpoint.label,
                        detail: "the access token holds a control character and cannot be sent"
                    )
                )
            }
            request.headers.add(name: "Authorization", value: "Bearer \(accessToken)")
        }
        if let span, let tracer = self.tracer {
            tracer.inject(span.context, into: &request.headers, using: HeadersInjector())
        }
        return .success(request)
    }

    /// A client span for one request, a child of the calling task's span, when a tracer records spans.
    @inline(never)
    private func startSpan(_ endpoint: Endpoint) -> (any Span)? {
        guard let tracer = self.tracer else { return nil }
        let span = tracer.startSpan(
            endpoint.method.rawValue,
            context: ServiceContext.current ?? .topLevel,
            ofKind: .client
        )
        span.attributes["http.request.method"] = endpoint.method.rawValue
        span.attributes["url.full"] = self.baseURL + endpoint.path
        return span
    }

    /// Records and logs the exchange; returns a 2xx answer's body or throws the classified error.
    @inline(never)
    private func judge(
        _ exchange: Result<HTTPAnswer, any Error>,
        endpoint: Endpoint,
        started: ContinuousClock.Instant,
        secrets: RequestSecrets,
        span: (any Span)?
    ) throws(MioError) -> ByteBuffer {
        let elapsed = ContinuousClock.now - started
        let answer: HTTPAnswer
        switch exchange {
        case .failure(let error):
            let failure = Self.transportError(error, endpoint: endpoint)
            if let span {
                span.recordError(failure)
                span.end()
            }
            self.metrics.record(endpoint, outcome: MioClientMetrics.Outcome(failure), duration: elapsed)
            self.logger.debug(
                "mio request failed",
                metadata: [
                    "mio.endpoint": "\(endpoint.label)",
                    "mio.error": "\(failure.code)",
                    "mio.duration_ms": "\(Self.milliseconds(elapsed))",
                ]
            )
            throw failure
        case .success(let received):
            answer = received
        }
        let status = Int(answer.status.code)
        if let span {
            span.attributes["http.response.status_code"] = status
            if status >= 400 { span.setStatus(SpanStatus(code: .error)) }
            span.end()
        }
        self.metrics.record(endpoint, outcome: MioClientMetrics.Outcome(status: status), duration: elapsed)
        self.logger.debug(
            "mio request finished",
            metadata: [
                "mio.endpoint": "\(endpoint.label)",
                "mio.status": "\(status)",
                "mio.duration_ms": "\(Self.milliseconds(elapsed))",
            ]
        )
        guard (200..<300).contains(status) else {
            throw self.httpError(
                status: status,
                headers: answer.headers,
                body: answer.body,
                endpoint: endpoint,
                secrets: secrets.all
            )
        }
        return answer.body
    }

    private static func milliseconds(_ elapsed: Duration) -> Int64 {
        elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: - Error mapping

    func httpError(
        status: Int,
        headers: HTTPHeaders,
        body: ByteBuffer,
        endpoint: Endpoint,
        secrets: [String]
    ) -> MioError {
        let oauth = try? JSONDecoder().decode(OAuthErrorBody.self, from: body)
        let oauthError = oauth?.error.map { Self.scrub($0, secrets: secrets) }
        let oauthDescription = oauth?.errorDescription.map { Self.scrub($0, secrets: secrets) }
        let wwwAuthenticate = headers.first(name: "WWW-Authenticate").flatMap {
            Self.authenticateParameter("error", in: $0)
        }.map { Self.scrub($0, secrets: secrets) }
        let retryAfter = headers.first(name: "Retry-After").flatMap {
            Self.parseRetryAfter($0, now: self.now())
        }

        let code: MioError.Code
        switch (status, oauthError) {
        case (_, "invalid_grant"?): code = .invalidGrant
        case (_, "invalid_request"?): code = .invalidRequest
        case (_, "invalid_client"?): code = .invalidClient
        case (401, _): code = .unauthorized
        case (403, _): code = .forbidden
        case (429, _): code = .rateLimited
        case (500..<600, _): code = .serverError
        case (400..<500, _): code = .clientError
        default: code = .malformedResponse
        }
        return MioError(
            code: code,
            endpoint: endpoint.label,
            status: status,
            oauthError: oauthError,
            oauthErrorDescription: oauthDescription,
            wwwAuthenticateError: wwwAuthenticate,
            retryAfter: retryAfter,
            detail: code == .malformedResponse ? "unexpected HTTP status \(status)" : nil
        )
    }

    static func transportError(_ error: any Error, endpoint: Endpoint) -> MioError {
        if let error = error as? MioError { return error }
        if error is CancellationError {
            return MioError(code: .cancelled, endpoint: endpoint.label, detail: "task cancelled")
        }
        if let error = error as? HTTP1PoolError {
            switch error {
            case .deadlineExceeded:
                return MioError(code: .timeout, endpoint: endpoint.label, detail: "\(error)")
            case .cancelled:
                return MioError(code: .cancelled, endpoint: endpoint.label, detail: "request cancelled")
            case .bodyTooLarge:
                return MioError(code: .malformedResponse, endpoint: endpoint.label, detail: "\(error)")
            case .connectionClosed, .shutDown:
                return MioError(code: .transportFailure, endpoint: endpoint.label, detail: "\(error)")
            }
        }
        if case ChannelError.connectTimeout = error {
            return MioError(code: .timeout, endpoint: endpoint.label, detail: "\(error)")
        }
        return MioError(code: .transportFailure, endpoint: endpoint.label, detail: String("\(error)".prefix(300)))
    }

    /// Replaces every secret the client sent in this request by `<redacted>`, so a server that echoes one back
    /// cannot make it appear in an error.
    static func scrub(_ text: String, secrets: [String]) -> String {
        var result = String(text.prefix(500))
        for secret in secrets where !secret.isEmpty {
            result = result.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return result
    }

    static func describeDecodingFailure(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "body is not JSON" }
        switch error {
        case .keyNotFound(let key, _):
            return "missing field \(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type for field \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "body is not JSON" : "invalid value for field \(path)"
        @unknown default:
            return "body rejected"
        }
    }

    /// Returns a parameter of a `WWW-Authenticate` challenge, e.g. `error` of `Bearer error="invalid_token"`.
    static func authenticateParameter(_ name: String, in header: String) -> String? {
        guard let space = header.firstIndex(of: " ") else { return nil }
        var rest = header[header.index(after: space)...]
        while true {
            rest = rest.drop(while: { $0 == " " || $0 == "," || $0 == "\t" })
            guard let equals = rest.firstIndex(of: "=") else { return nil }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces)
            rest = rest[rest.index(after: equals)...].drop(while: { $0 == " " })
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if escaped {
                        value.append(character)
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "\"" {
                        break
                    } else {
                        value.append(character)
                    }
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            if key.lowercased() == name.lowercased() { return value }
        }
    }

    /// Parses `Retry-After`: a number of seconds, or an HTTP-date (IMF-fixdate, RFC 850 or asctime form),
    /// turned into a delay from `now` (zero if the date has passed).
    static func parseRetryAfter(_ value: String, now: Date) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(trimmed) {
            return seconds >= 0 ? .seconds(seconds) : nil
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: trimmed.split(separator: " ").joined(separator: " ")) {
                let milliseconds = max(0, Int((date.timeIntervalSince(now) * 1000).rounded()))
                return .milliseconds(milliseconds)
            }
        }
        return nil
    }
}

/// Writes a tracer's context (e.g. W3C `traceparent`) into a request's headers.
private struct HeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout HTTPHeaders) {
        guard HTTP1ConnectionPool.isValidHeaderValue(value) else { return }
        headers.replaceOrAdd(name: key, value: value)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// The secrets one request carries (a token or code, and the client secret), kept without an array until an
/// error needs them scrubbed from the server's text.
struct RequestSecrets {
    var credential: String
    var clientSecret: String

    init(_ credential: String, _ clientSecret: String) {
        self.credential = credential
        self.clientSecret = clientSecret
    }

    var all: [String] { [self.credential, self.clientSecret] }
}
