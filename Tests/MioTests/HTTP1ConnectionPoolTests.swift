import Coordination
import Foundation
import Logging
@testable import Mio
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import Testing

/// The connection pool that carries every Mio call, against a scripted HTTP/1.1 server over real TCP: the path of
/// each request picks how the server behaves, so that each test can make it misbehave on purpose.
@Suite("HTTP/1.1 connection pool")
struct HTTP1ConnectionPoolTests {
    @Test func sequentialRequestsReuseOneConnectionPerEventLoop() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool()
            for index in 0..<40 {
                let answer = try await pool.execute(Self.get("/ok?n=\(index)"), body: nil, timeout: .seconds(5))
                #expect(answer.status == .ok)
                #expect(String(buffer: answer.body) == "ok /ok?n=\(index)")
            }
            await pool.shutdown()
            let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator()).count
            #expect(server.stats.connections <= loops)
        }
    }

    @Test func aPostCarriesItsBodyWithContentLengthAndTheHostHeader() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool()
            var head = Self.get("/echo")
            head.method = .POST
            let answer = try await pool.execute(head, body: ByteBuffer(string: "{\"query\":\"q\"}"), timeout: .seconds(5))
            await pool.shutdown()
            #expect(String(buffer: answer.body) == "POST /echo host=127.0.0.1:\(server.port) length=13 body={\"query\":\"q\"}")
        }
    }

    @Test func anAnswerWithConnectionCloseIsNotReused() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool()
            for _ in 0..<6 {
                let answer = try await pool.execute(Self.get("/close"), body: nil, timeout: .seconds(5))
                #expect(answer.status == .ok)
            }
            await pool.shutdown()
            #expect(server.stats.connections == 6)
        }
    }

    @Test func aConnectionTheServerClosedWhileIdleIsReplaced() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool()
            for _ in 0..<6 {
                // The server answers, then closes the connection without saying so in the answer.
                let answer = try await pool.execute(Self.get("/ok-then-close"), body: nil, timeout: .seconds(5))
                #expect(answer.status == .ok)
                try await Task.sleep(for: .milliseconds(50))
            }
            await pool.shutdown()
            #expect(server.stats.connections == 6)
        }
    }

    @Test func aConnectionClosedInMidAnswerFailsTheRequestAndTheNextOneWorks() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool()
            await #expect(throws: HTTP1PoolError.connectionClosed) {
                try await pool.execute(Self.get("/abort"), body: nil, timeout: .seconds(5))
            }
            let answer = try await pool.execute(Self.get("/ok"), body: nil, timeout: .seconds(5))
            await pool.shutdown()
            #expect(answer.status == .ok)
        }
    }

    @Test func theConnectionLimitHoldsAndQueuedRequestsAllComplete() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool(maxConnections: 4)
            try await withThrowingTaskGroup { group in
                for index in 0..<60 {
                    group.addTask {
                        let answer = try await pool.execute(Self.get("/slow?n=\(index)"), body: nil, timeout: .seconds(10))
                        #expect(String(buffer: answer.body) == "ok /slow?n=\(index)")
                    }
                }
                try await group.waitForAll()
            }
            await pool.shutdown()
            let stats = server.stats
            print("connection limit: \(stats.connections) connections, peak \(stats.peakOpenConnections) open")
            #expect(stats.requests == 60)
            // Two event loops share the limit of 4: at most 2 each.
            #expect(stats.peakOpenConnections <= 4)
            #expect(stats.connections <= 4)
        }
    }

    @Test func aRequestWaitingForABusyConnectionTimesOut() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool(maxConnections: 1, loops: 1)
            let hanging = Task { try await pool.execute(Self.get("/hang"), body: nil, timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))
            let started = ContinuousClock.now
            await #expect(throws: HTTP1PoolError.deadlineExceeded) {
                try await pool.execute(Self.get("/ok"), body: nil, timeout: .milliseconds(300))
            }
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(300))
            hanging.cancel()
            await #expect(throws: HTTP1PoolError.cancelled) { try await hanging.value }
            // The cancelled request closed its connection; the pool opens another one.
            let answer = try await pool.execute(Self.get("/ok"), body: nil, timeout: .seconds(5))
            #expect(answer.status == .ok)
            await pool.shutdown()
        }
    }

    @Test func aLargeSuccessBodyFailsAndAnErrorBodyIsCut() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool(successBodyLimit: 1_000, errorBodyLimit: 100)
            await #expect(throws: HTTP1PoolError.bodyTooLarge(limit: 1_000)) {
                try await pool.execute(Self.get("/big?status=200&size=5000"), body: nil, timeout: .seconds(5))
            }
            let error = try await pool.execute(Self.get("/big?status=503&size=5000"), body: nil, timeout: .seconds(5))
            #expect(error.status == .serviceUnavailable)
            #expect(error.body.readableBytes == 100)
            // The cut answer was read to its end: its connection serves the next request.
            let next = try await pool.execute(Self.get("/ok"), body: nil, timeout: .seconds(5))
            #expect(next.status == .ok)
            await pool.shutdown()
        }
    }

    @Test func afterShutdownRequestsFailAndRunningOnesAreEnded() async throws {
        try await ScriptedServer.with { server in
            let pool = try server.pool()
            let hanging = Task { try await pool.execute(Self.get("/hang"), body: nil, timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))
            await pool.shutdown()
            await #expect(throws: HTTP1PoolError.shutDown) { try await hanging.value }
            await #expect(throws: HTTP1PoolError.shutDown) {
                try await pool.execute(Self.get("/ok"), body: nil, timeout: .seconds(5))
            }
        }
    }

    @Test func httpsWorksWithATrustedCertificateAndFailsWithAnUntrustedOne() async throws {
        try await ScriptedServer.with(tls: true) { server in
            var trusting = TLSConfiguration.makeClientConfiguration()
            trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(Fixtures.certificate))
            let pool = try server.pool(host: "localhost", tls: trusting)
            let answer = try await pool.execute(Self.get("/ok"), body: nil, timeout: .seconds(5))
            #expect(String(buffer: answer.body) == "ok /ok")
            await pool.shutdown()

            // The system's trust roots do not know the test certificate.
            let strict = try server.pool(host: "localhost", tls: nil)
            let error = await #expect(throws: (any Error).self) {
                try await strict.execute(Self.get("/ok"), body: nil, timeout: .seconds(5))
            }
            let mapped = MioClient.transportError(error!, endpoint: MioClient.contextEndpoint)
            print("untrusted certificate: \(mapped)")
            #expect(mapped.code == .transportFailure)
            #expect("\(mapped)".contains("CERTIFICATE_VERIFY_FAILED"))
            await strict.shutdown()
            #expect(server.stats.requests == 1)
        }
    }

    @Test func theMioClientSpeaksHTTPSThroughThePool() async throws {
        try await ScriptedServer.with(tls: true) { server in
            var trusting = TLSConfiguration.makeClientConfiguration()
            trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(Fixtures.certificate))
            let configuration = MioClient.Configuration(
                clientID: "id",
                clientSecret: "secret",
                redirectURL: "https://app.example/callback",
                apiURL: "https://localhost:\(server.port)/base/",
                requestTimeout: .seconds(5),
                maxConnections: 4
            )
            let client = MioClient(
                configuration: configuration, logger: .init(label: "test"), timeSource: .system, tlsConfiguration: trusting
            )
            let content = try await client.getContext(query: "q", accessToken: "at")
            try await client.shutdown()
            #expect(content == "POST /base/v1/context")
        }
    }

    @Test(arguments: [
        ("ftp://api.mio.xyz", "must start with http:// or https://"),
        ("https://", "has no host"),
        ("https://api.mio.xyz/?a=b", "must not have a query, a fragment or credentials"),
        ("https://user:pw@api.mio.xyz", "must not have a query, a fragment or credentials"),
    ])
    func anUnusableAPIURLFailsEveryRequestWithItsReason(url: String, reason: String) async throws {
        let configuration = MioClient.Configuration(
            clientID: "id",
            clientSecret: "secret",
            redirectURL: "https://app.example/callback",
            apiURL: url
        )
        let client = MioClient(configuration: configuration)
        let error = await #expect(throws: MioError.self) {
            try await client.getContext(query: "q", accessToken: "at")
        }
        try await client.shutdown()
        #expect(error?.code == .clientError)
        #expect(error.map { "\($0)" }?.contains("mio.apiURL \(reason)") == true)
        #expect(error.map { "\($0)" }?.contains("pw") == false)
    }

    @Test func apiURLsAreSplitIntoOriginAndPath() throws {
        let plain = try MioClient.parseAPIURL("http://127.0.0.1:8080").get()
        #expect(plain.origin == .init(useTLS: false, host: "127.0.0.1", port: 8080))
        #expect(plain.basePath == "")
        #expect(plain.origin.hostHeader == "127.0.0.1:8080")
        let production = try MioClient.parseAPIURL("https://api.mio.xyz/").get()
        #expect(production.origin == .init(useTLS: true, host: "api.mio.xyz", port: 443))
        #expect(production.origin.hostHeader == "api.mio.xyz")
        let prefixed = try MioClient.parseAPIURL("https://[::1]:8443/mio/api//").get()
        #expect(prefixed.origin == .init(useTLS: true, host: "::1", port: 8443))
        #expect(prefixed.origin.hostHeader == "[::1]:8443")
        #expect(prefixed.basePath == "/mio/api")
    }

    static func get(_ uri: String) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)
    }
}

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let certificate = directory.appendingPathComponent("test-server-cert.pem").path
    static let privateKey = directory.appendingPathComponent("test-server-key.pem").path
}

/// What a ``ScriptedServer`` saw.
struct ServerStats: Sendable {
    var connections = 0
    var openConnections = 0
    var peakOpenConnections = 0
    var requests = 0
}

/// The server's counters, shared by its connections.
final class ServerCounters: Sendable {
    private let stats = Mutex(ServerStats())

    var snapshot: ServerStats { self.stats.withLock { $0 } }

    func update(_ change: (inout ServerStats) -> Void) {
        self.stats.withLock { change(&$0) }
    }
}

/// An HTTP/1.1 server on loopback (optionally over TLS, with the fixture certificate) whose behaviour each
/// request's path picks; see ``ScriptedHandler``.
struct ScriptedServer: Sendable {
    let port: Int
    let useTLS: Bool
    let counters: ServerCounters

    var stats: ServerStats { self.counters.snapshot }

    static func with(tls: Bool = false, _ body: (ScriptedServer) async throws -> Void) async throws {
        let sslContext: NIOSSLContext? =
            tls
            ? try NIOSSLContext(
                configuration: .makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(Fixtures.certificate).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: Fixtures.privateKey, format: .pem))
                )
            ) : nil
        let counters = ServerCounters()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    counters.update {
                        $0.connections += 1
                        $0.openConnections += 1
                        $0.peakOpenConnections = max($0.peakOpenConnections, $0.openConnections)
                    }
                    channel.closeFuture.whenComplete { _ in counters.update { $0.openConnections -= 1 } }
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ScriptedHandler(counters: counters))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let server = ScriptedServer(port: channel.localAddress!.port!, useTLS: tls, counters: counters)
        do {
            try await body(server)
        } catch {
            try? await channel.close()
            throw error
        }
        try await channel.close()
    }

    /// A pool to this server; `loops: 1` puts it on a single event loop.
    func pool(
        host: String = "127.0.0.1",
        maxConnections: Int = 16,
        loops: Int? = nil,
        successBodyLimit: Int = 1 << 20,
        errorBodyLimit: Int = 1 << 16,
        tls: TLSConfiguration? = nil
    ) throws -> HTTP1ConnectionPool {
        let group: any EventLoopGroup =
            loops == 1 ? MultiThreadedEventLoopGroup.singleton.next() : MultiThreadedEventLoopGroup.singleton
        return try HTTP1ConnectionPool(
            origin: .init(useTLS: self.useTLS, host: host, port: self.port),
            limits: .init(
                maxConnections: maxConnections,
                connectTimeout: .seconds(5),
                idleTimeout: .seconds(60),
                deadlineResolution: .milliseconds(10),
                successBodyLimit: successBodyLimit,
                errorBodyLimit: errorBodyLimit
            ),
            group: group,
            tlsConfiguration: tls
        )
    }
}

/// Answers by path:
/// - `/ok`: 200 `ok <uri>`; `/echo`: the method, `Host`, `Content-Length` and body;
/// - `/close`: 200 with `Connection: close`, then closes; `/ok-then-close`: 200, then closes without saying so;
/// - `/slow`: 200 after 20 ms; `/hang`: never answers; `/abort`: a head promising 100 bytes, then closes;
/// - `/big?status=S&size=N`: status S with N bytes of body, in 1,000-byte parts;
/// - `/v1/context` under any prefix: `{"content": "<method> <path>"}`.
final class ScriptedHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let counters: ServerCounters
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(counters: ServerCounters) {
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body.clear()
        case .body(var part):
            self.body.writeBuffer(&part)
        case .end:
            guard let head = self.head else { return }
            self.counters.update { $0.requests += 1 }
            self.answer(head, context: context)
        }
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        let parameters = Dictionary(
            query.split(separator: "&").map { pair -> (String, String) in
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                return (parts[0], parts.count > 1 ? parts[1] : "")
            },
            uniquingKeysWith: { $1 }
        )
        switch path {
        case "/echo":
            let host = head.headers.first(name: "Host") ?? "-"
            let length = head.headers.first(name: "Content-Length") ?? "-"
            self.respond(
                "\(head.method) \(head.uri) host=\(host) length=\(length) body=\(String(buffer: self.body))",
                context: context
            )
        case "/close":
            self.respond("closing", headers: ["Connection": "close"], context: context, thenClose: true)
        case "/ok-then-close":
            self.respond("ok", context: context, thenClose: true)
        case "/slow":
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(20)) {
                let (handler, context) = loopBound.value
                handler.respond("ok \(head.uri)", context: context)
            }
        case "/hang":
            break
        case "/abort":
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "100")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "partial")))), promise: nil)
            context.close(promise: nil)
        case "/big":
            let status = HTTPResponseStatus(statusCode: Int(parameters["status"] ?? "") ?? 200)
            let size = Int(parameters["size"] ?? "") ?? 0
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: String(size))
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            var remaining = size
            while remaining > 0 {
                let part = min(remaining, 1_000)
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(repeating: UInt8(ascii: "x"), count: part)))), promise: nil)
                remaining -= part
            }
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        default:
            if path.hasSuffix("/v1/context") {
                self.respond("{\"content\": \"\(head.method) \(path)\"}", context: context)
            } else {
                self.respond("ok \(head.uri)", context: context)
            }
        }
    }

    private func respond(_ text: String, headers: HTTPHeaders = [:], context: ChannelHandlerContext, thenClose: Bool = false) {
        var headers = headers
        headers.add(name: "Content-Length", value: String(text.utf8.count))
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
        let written = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if thenClose {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
