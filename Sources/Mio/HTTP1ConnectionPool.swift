import DequeModule
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// What came back for one request: the status, the headers and the (bounded) body.
struct HTTPAnswer: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// Why an exchange through ``HTTP1ConnectionPool`` failed, short of an HTTP answer.
///
/// None of these carries a request's headers or body, so none can hold a token.
enum HTTP1PoolError: Error, Equatable, CustomStringConvertible {
    /// No complete answer within the request's timeout (connecting and waiting for a connection included).
    case deadlineExceeded
    /// The connection closed, or could not be read, before the answer was complete.
    case connectionClosed
    /// A 2xx answer's body grew past the limit.
    case bodyTooLarge(limit: Int)
    /// The calling task was cancelled.
    case cancelled
    /// The pool was shut down.
    case shutDown

    var description: String {
        switch self {
        case .deadlineExceeded: "no complete answer within the request timeout"
        case .connectionClosed: "the connection closed before the answer was complete"
        case .bodyTooLarge(let limit): "the response body is larger than \(limit) bytes"
        case .cancelled: "the request was cancelled"
        case .shutDown: "the HTTP connection pool is shut down"
        }
    }
}

/// A keep-alive HTTP/1.1 connection pool to one origin, for the hot path of calling Mio.
///
/// AsyncHTTPClient's exchange cost more CPU per request than the whole budget of a job (docs/benchmarks.md);
/// this pool does only what a client of one JSON API needs:
/// - each event loop has its own connections, at most `maxConnections` over all loops; a request waits in its
///   loop's queue (first in, first out) when they are all busy, and a connection that falls idle serves the
///   oldest waiting request;
/// - a request's head, body and end go out in one flush (one `writev`);
/// - one timer per event loop, not per request, enforces the request deadlines (to within a tenth of the
///   timeout, at most 100 ms late) and closes connections idle for longer than `idleTimeout`;
/// - TLS (NIOSSL, the system's trust roots, SNI) for `https`;
/// - a connection is reused only after a complete answer that allows it (`HTTPResponseHead.isKeepAlive`); a
///   request that times out, is cancelled, or whose answer is too large closes its connection;
/// - redirects are not followed: the answer is returned as it is.
///
/// Parsing and encoding are NIO's (`HTTPRequestEncoder`, `HTTPResponseDecoder`).
final class HTTP1ConnectionPool: Sendable {
    /// Where the pool connects to.
    struct Origin: Sendable, Hashable {
        /// Whether to speak TLS.
        var useTLS: Bool
        /// The host name or address.
        var host: String
        /// The TCP port.
        var port: Int

        /// The `Host` header's value: the port is left out when it is the scheme's default.
        var hostHeader: String {
            let bracketed = self.host.contains(":") ? "[\(self.host)]" : self.host
            return self.port == (self.useTLS ? 443 : 80) ? bracketed : "\(bracketed):\(self.port)"
        }
    }

    /// The pool's limits and timeouts.
    struct Limits: Sendable {
        /// Connections over all event loops.
        var maxConnections: Int
        /// How long a connection attempt may take.
        var connectTimeout: TimeAmount
        /// How long a connection may stay idle before the pool closes it.
        var idleTimeout: TimeAmount
        /// How late a deadline may be noticed: the period of each loop's timer.
        var deadlineResolution: TimeAmount
        /// The largest body a 2xx answer may have.
        var successBodyLimit: Int
        /// How much of any other answer's body is kept; the rest is read and dropped.
        var errorBodyLimit: Int
    }

    let origin: Origin
    private let loops: [LoopPool]
    private let nextLoop = Atomic<Int>(0)

    /// Creates a pool; no connection is opened before the first request.
    /// - Parameters:
    ///   - origin: Where to connect.
    ///   - limits: Limits and timeouts.
    ///   - group: The event loops the connections live on.
    ///   - tlsConfiguration: The TLS configuration for an `https` origin (default: the system's trust roots).
    /// - Throws: NIOSSL's error when the TLS configuration cannot be turned into a context.
    init(
        origin: Origin,
        limits: Limits,
        group: any EventLoopGroup,
        tlsConfiguration: TLSConfiguration? = nil
    ) throws {
        self.origin = origin
        let sslContext: NIOSSLContext?
        if origin.useTLS {
            var configuration = tlsConfiguration ?? TLSConfiguration.makeClientConfiguration()
            configuration.applicationProtocols = ["http/1.1"]
            sslContext = try NIOSSLContext(configuration: configuration)
        } else {
            sslContext = nil
        }
        let loops = Array(group.makeIterator())
        let perLoop = max(1, (limits.maxConnections + loops.count - 1) / loops.count)
        self.loops = loops.map {
            LoopPool(loop: $0, origin: origin, limits: limits, maxConnections: perLoop, sslContext: sslContext)
        }
    }

    /// Sends one request and returns its answer.
    ///
    /// The request goes to the next event loop in turn. Cancelling the calling task fails the request with
    /// ``HTTP1PoolError/cancelled`` and closes its connection if it was on one.
    /// - Parameters:
    ///   - head: The request's head; the pool adds `Host` unless it is there and, with a body, `Content-Length`
    ///     (which must not be there). The pool does not validate header names and values: a value that comes
    ///     from outside (a token) must be checked with ``isValidHeaderValue(_:)`` first, so that it cannot add a
    ///     header or end the head early.
    ///   - body: The request's body, if any.
    ///   - timeout: The most the whole exchange may take, from now.
    /// - Returns: The answer, its body bounded by the limits.
    /// - Throws: ``HTTP1PoolError``, or NIO's error when connecting or TLS failed.
    func execute(_ head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount) async throws -> HTTPAnswer {
        let index = self.nextLoop.add(1, ordering: .relaxed).oldValue
        let pool = self.loops[Int(UInt(bitPattern: index) % UInt(self.loops.count))]
        var head = head
        if !head.headers.contains(name: "Host") {
            head.headers.add(name: "Host", value: self.origin.hostHeader)
        }
        if let body {
            head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        }
        let pending = PendingRequest(head: head, body: body, deadline: .now() + timeout)
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                pool.loop.execute {
                    pending.attach(continuation)
                    pool.enqueue(pending)
                }
            }
        } onCancel: {
            pool.loop.execute { pool.abandon(pending, because: .cancelled) }
        }
    }

    /// Whether `value` may be sent as a header value (RFC 9110): no control character but HTAB, so no CR, LF
    /// or NUL.
    static func isValidHeaderValue(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 == UInt8(ascii: "\t") || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// Fails every waiting and running request with ``HTTP1PoolError/shutDown``, closes every connection and
    /// waits until they are closed. Requests after this fail at once.
    func shutdown() async {
        var closed: [EventLoopFuture<Void>] = []
        for pool in self.loops {
            let future = pool.loop.flatSubmit { pool.shutdown() }
            closed.append(future)
        }
        for future in closed {
            try? await future.get()
        }
    }
}

/// One request on its way: created by the caller, then touched only on its event loop.
///
/// The caller waits on a continuation rather than an `EventLoopFuture`: a future would add a promise, a callback
/// list and a hop through `get()` to every request.
private final class PendingRequest: @unchecked Sendable {
    /// The head, until it is sent: handing it over instead of copying it lets the encoder change it in place.
    var head: HTTPRequestHead?
    let body: ByteBuffer?
    let deadline: NIODeadline
    /// The caller's continuation, attached on the loop before the request is queued.
    private var continuation: UnsafeContinuation<HTTPAnswer, any Error>?
    /// An outcome that came before the continuation (a cancellation that overtook the request).
    private var earlyFailure: (any Error)?
    /// The connection sending it or reading its answer, once it has one.
    var connection: HTTP1Connection?
    /// It has its outcome: it is no longer waited for.
    private(set) var isFinished = false

    init(head: HTTPRequestHead, body: ByteBuffer?, deadline: NIODeadline) {
        self.head = head
        self.body = body
        self.deadline = deadline
    }

    /// Takes the caller's continuation; resumes it at once if the request already failed.
    func attach(_ continuation: UnsafeContinuation<HTTPAnswer, any Error>) {
        if let earlyFailure {
            self.earlyFailure = nil
            continuation.resume(throwing: earlyFailure)
        } else {
            self.continuation = continuation
        }
    }

    func succeed(_ answer: HTTPAnswer) {
        guard !self.isFinished else { return }
        self.isFinished = true
        self.connection = nil
        let continuation = self.continuation
        self.continuation = nil
        continuation?.resume(returning: answer)
    }

    func fail(_ error: any Error) {
        guard !self.isFinished else { return }
        self.isFinished = true
        self.connection = nil
        if let continuation = self.continuation {
            self.continuation = nil
            continuation.resume(throwing: error)
        } else {
            self.earlyFailure = error
        }
    }
}

/// One event loop's share of the pool. Every property and method is used on `loop` only.
private final class LoopPool: @unchecked Sendable {
    let loop: any EventLoop
    private let origin: Origin
    private let limits: HTTP1ConnectionPool.Limits
    private let maxConnections: Int
    private let sslContext: NIOSSLContext?

    typealias Origin = HTTP1ConnectionPool.Origin

    /// Open connections, idle or busy.
    private var connections: [ObjectIdentifier: HTTP1Connection] = [:]
    /// Idle connections, the most recently used last (it is used first, so that the others can time out).
    private var idle: [HTTP1Connection] = []
    /// Connection attempts under way.
    private var connecting = 0
    /// Requests waiting for a connection, oldest first.
    private var waiting = Deque<PendingRequest>()
    /// The timer that enforces deadlines and idle timeouts, while the pool has anything to watch.
    private var sweeper: RepeatedTask?
    private var isShutDown = false

    init(
        loop: any EventLoop,
        origin: Origin,
        limits: HTTP1ConnectionPool.Limits,
        maxConnections: Int,
        sslContext: NIOSSLContext?
    ) {
        self.loop = loop
        self.origin = origin
        self.limits = limits
        self.maxConnections = maxConnections
        self.sslContext = sslContext
    }

    /// Sends the request on an idle connection, or queues it and opens a connection if the limit allows.
    func enqueue(_ request: PendingRequest) {
        guard !request.isFinished else { return }  // cancelled before it got here
        guard !self.isShutDown else {
            request.fail(HTTP1PoolError.shutDown)
            return
        }
        if let connection = self.idle.popLast() {
            connection.send(request)
        } else {
            self.waiting.append(request)
            self.openConnectionsForWaitingRequests()
        }
        self.startSweeper()
    }

    /// Gives up on a request (cancelled, or past its deadline): a request on a connection closes it, because
    /// its answer may still come.
    func abandon(_ request: PendingRequest, because error: HTTP1PoolError) {
        guard !request.isFinished else { return }
        let connection = request.connection
        request.fail(error)
        connection?.abandonRequest()
    }

    /// A connection is ready for a request: the oldest waiting request gets it, or it becomes idle.
    func connectionIsIdle(_ connection: HTTP1Connection) {
        if self.isShutDown {
            connection.close()
            return
        }
        while let request = self.waiting.popFirst() {
            if !request.isFinished {
                connection.send(request)
                return
            }
        }
        connection.idleSince = .now()
        self.idle.append(connection)
    }

    /// A connection closed: forget it, and replace it if requests are waiting.
    func connectionClosed(_ connection: HTTP1Connection) {
        self.connections[ObjectIdentifier(connection)] = nil
        if let index = self.idle.firstIndex(where: { $0 === connection }) {
            self.idle.remove(at: index)
        }
        self.openConnectionsForWaitingRequests()
    }

    private func openConnectionsForWaitingRequests() {
        guard !self.isShutDown else { return }
        while self.connecting < self.waiting.count,
            self.connections.count + self.connecting < self.maxConnections
        {
            self.connect()
        }
    }

    private func connect() {
        self.connecting += 1
        let sslContext = self.sslContext
        let origin = self.origin
        let limits = self.limits
        let bootstrap = ClientBootstrap(group: self.loop)
            .connectTimeout(limits.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let sslContext {
                        let hostname = origin.host.isIPAddress ? nil : origin.host
                        try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: hostname))
                    }
                    // Header values are checked by the caller where they come from outside (see `execute`); NIO's
                    // validator would check every header of every request again.
                    try pipeline.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try pipeline.addHandler(HTTP1Connection(pool: self, limits: limits))
                }
            }
        bootstrap.connect(host: origin.host, port: origin.port).hop(to: self.loop).whenComplete { result in
            self.connecting -= 1
            switch result {
            case .success(let channel):
                self.connected(channel)
            case .failure(let error):
                self.connectFailed(error)
            }
        }
    }

    private func connected(_ channel: any Channel) {
        guard let connection = try? channel.pipeline.syncOperations.handler(type: HTTP1Connection.self) else {
            channel.close(promise: nil)
            return
        }
        guard !self.isShutDown else {
            channel.close(promise: nil)
            return
        }
        guard channel.isActive else {
            // Closed already: the waiting requests need another connection.
            self.openConnectionsForWaitingRequests()
            return
        }
        self.connections[ObjectIdentifier(connection)] = connection
        self.connectionIsIdle(connection)
    }

    /// A connection attempt failed: the oldest waiting request fails with the reason, so that an unreachable
    /// Mio shows at once instead of at each request's deadline; the others get new attempts.
    private func connectFailed(_ error: any Error) {
        while let request = self.waiting.popFirst() {
            if !request.isFinished {
                request.fail(error)
                break
            }
        }
        self.openConnectionsForWaitingRequests()
    }

    private func startSweeper() {
        guard self.sweeper == nil else { return }
        let period = self.limits.deadlineResolution
        self.sweeper = self.loop.scheduleRepeatedTask(initialDelay: period, delay: period) { [self] task in
            self.sweep(task)
        }
    }

    /// Fails requests past their deadline, closes connections idle for too long, and stops the timer when there
    /// is nothing left to watch.
    private func sweep(_ task: RepeatedTask) {
        let now = NIODeadline.now()
        for connection in self.connections.values {
            if let request = connection.request, request.deadline <= now {
                self.abandon(request, because: .deadlineExceeded)
            }
        }
        // Waiting requests past their deadline fail; cancelled ones (already failed) are dropped.
        if self.waiting.contains(where: { $0.isFinished || $0.deadline <= now }) {
            self.waiting.removeAll { request in
                guard request.isFinished || request.deadline <= now else { return false }
                request.fail(HTTP1PoolError.deadlineExceeded)
                return true
            }
        }
        let idleLimit = now - self.limits.idleTimeout
        for connection in self.idle where connection.idleSince <= idleLimit {
            connection.close()
        }
        if self.connections.isEmpty && self.connecting == 0 && self.waiting.isEmpty {
            task.cancel()
            self.sweeper = nil
        }
    }

    func shutdown() -> EventLoopFuture<Void> {
        self.isShutDown = true
        self.sweeper?.cancel()
        self.sweeper = nil
        while let request = self.waiting.popFirst() {
            request.fail(HTTP1PoolError.shutDown)
        }
        var closed: [EventLoopFuture<Void>] = []
        for connection in self.connections.values {
            if let request = connection.request {
                request.fail(HTTP1PoolError.shutDown)
            }
            if let closeFuture = connection.closeFuture {
                closed.append(closeFuture)
            }
            connection.close()
        }
        return EventLoopFuture.andAllComplete(closed, on: self.loop)
    }
}

/// The last handler of a connection's pipeline: sends one request at a time and collects its answer.
private final class HTTP1Connection: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let pool: LoopPool
    private let limits: HTTP1ConnectionPool.Limits
    private var context: ChannelHandlerContext?
    /// The request in flight, if any.
    private(set) var request: PendingRequest?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    /// Whether the request in flight allows the connection to be kept.
    private var requestIsKeepAlive = true
    /// An informational (1xx) answer is being skipped.
    private var skippingInformational = false
    /// Set when the connection became idle.
    var idleSince = NIODeadline.now()
    /// Completed when the channel is closed.
    private(set) var closeFuture: EventLoopFuture<Void>?

    init(pool: LoopPool, limits: HTTP1ConnectionPool.Limits) {
        self.pool = pool
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.closeFuture = context.channel.closeFuture
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func send(_ request: PendingRequest) {
        guard let context = self.context, context.channel.isActive else {
            // Closed meanwhile: the pool finds the request another connection.
            self.pool.enqueue(request)
            return
        }
        guard let head = request.head else {
            // Never sent twice; should it happen, the caller gets an error rather than a wait without end.
            request.fail(HTTP1PoolError.connectionClosed)
            return
        }
        request.head = nil
        self.request = request
        self.requestIsKeepAlive = head.isKeepAlive
        request.connection = self
        self.head = nil
        self.body.clear()
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if let body = request.body {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    func close() {
        self.context?.close(promise: nil)
    }

    /// The request in flight was given up on: its answer may still come, so the connection cannot be reused.
    func abandonRequest() {
        self.request = nil
        self.head = nil
        self.close()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            guard self.request != nil else {
                context.close(promise: nil)
                return
            }
            if head.status.code < 200 && head.status != .switchingProtocols {
                self.skippingInformational = true
                return
            }
            self.head = head
        case .body(var part):
            guard let head = self.head, let request = self.request else { return }
            let isSuccess = (200..<300).contains(head.status.code)
            let limit = isSuccess ? self.limits.successBodyLimit : self.limits.errorBodyLimit
            let room = limit - self.body.readableBytes
            if part.readableBytes <= room {
                self.body.writeBuffer(&part)
            } else if isSuccess {
                request.fail(HTTP1PoolError.bodyTooLarge(limit: limit))
                self.request = nil
                context.close(promise: nil)
            } else if room > 0, var slice = part.readSlice(length: room) {
                self.body.writeBuffer(&slice)
            }
        case .end:
            if self.skippingInformational {
                self.skippingInformational = false
                return
            }
            guard let head = self.head, let request = self.request else {
                // The answer of a request given up on (its connection is closing), or an unsolicited one.
                context.close(promise: nil)
                return
            }
            self.request = nil
            self.head = nil
            let answer = HTTPAnswer(status: head.status, headers: head.headers, body: self.body)
            self.body = ByteBuffer()
            request.succeed(answer)
            if head.isKeepAlive && self.requestIsKeepAlive {
                self.pool.connectionIsIdle(self)
            } else {
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let request = self.request {
            self.request = nil
            // The decoder's "stream ended at an unexpected time" is a connection closed in mid-answer.
            let closed = (error as? HTTPParserError) == .invalidEOFState
            request.fail(closed ? HTTP1PoolError.connectionClosed : error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let request = self.request {
            self.request = nil
            request.fail(HTTP1PoolError.connectionClosed)
        }
        self.pool.connectionClosed(self)
        context.fireChannelInactive()
    }
}

extension String {
    /// Whether this is an IPv4 or IPv6 address, which TLS's server name indication must not carry.
    fileprivate var isIPAddress: Bool {
        (try? SocketAddress(ipAddress: self, port: 0)) != nil
    }
}
