import Coordination
import Foundation
import JSON
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Tracing

extension MioClient {
    func requestTokens(_ request: TokenRequest, secrets: RequestSecrets) async throws(MioError) -> MioTokenResponse {
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

    func encode(_ value: some Encodable, endpoint: Endpoint) throws(MioError) -> ByteBuffer {
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
    func perform(
        _ endpoint: Endpoint,
        body: ByteBuffer?,
        accessToken: String?,
        secrets: RequestSecrets
    ) async throws(MioError) -> ByteBuffer {
        let started = self.timeSource.now()
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
    func exchange(_ request: HTTPRequestHead, body: ByteBuffer?) async -> Result<HTTPAnswer, any Error> {
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
    func makeRequest(
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
    func startSpan(_ endpoint: Endpoint) -> (any Span)? {
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
    func judge(
        _ exchange: Result<HTTPAnswer, any Error>,
        endpoint: Endpoint,
        started: Duration,
        secrets: RequestSecrets,
        span: (any Span)?
    ) throws(MioError) -> ByteBuffer {
        let elapsed = self.timeSource.now() - started
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
                    "mio.duration_ms": "\(elapsed.wholeMilliseconds)",
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
                "mio.duration_ms": "\(elapsed.wholeMilliseconds)",
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

}

/// Writes a tracer's context (e.g. W3C `traceparent`) into a request's headers.
private struct HeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout HTTPHeaders) {
        guard HTTP1ConnectionPool.isValidHeaderValue(value) else { return }
        headers.replaceOrAdd(name: key, value: value)
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
