import NIOCore
import NIOHTTP1

/// The last handler of a connection's pipeline: sends one request at a time and collects its answer.
final class HTTP1Connection: ChannelInboundHandler {
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
