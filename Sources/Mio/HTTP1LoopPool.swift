import DequeModule
import NIOCore
import NIOHTTP1
import NIOPosix
#if TLS
import NIOSSL
#endif

/// One event loop's share of the pool. Every property and method is used on `loop` only.
final class LoopPool: @unchecked Sendable {
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
        #if TLS
        let sslContext = self.sslContext
        #endif
        let origin = self.origin
        let limits = self.limits
        let bootstrap = ClientBootstrap(group: self.loop)
            .connectTimeout(limits.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    #if TLS
                    if let sslContext {
                        let hostname = origin.host.isIPAddress ? nil : origin.host
                        try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: hostname))
                    }
                    #endif
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

    /// This loop's share in a line, for the diagnostics of a stall: connections busy and idle, attempts under
    /// way, requests waiting, whether the timer runs, and requests past their deadline (which the timer fails
    /// within a tenth of the timeout: any here means the timer is not running).
    var summary: String {
        let now = NIODeadline.now()
        let busy = self.connections.values.compactMap(\.request)
        let overdue = busy.filter { $0.deadline <= now }.count
            + self.waiting.filter { !$0.isFinished && $0.deadline <= now }.count
        return "connections \(self.connections.count) (busy \(busy.count), idle \(self.idle.count)), "
            + "connecting \(self.connecting), waiting \(self.waiting.count), "
            + "timer \(self.sweeper == nil ? "off" : "on"), past their deadline \(overdue)"
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

extension String {
    /// Whether this is an IPv4 or IPv6 address, which TLS's server name indication must not carry.
    fileprivate var isIPAddress: Bool {
        (try? SocketAddress(ipAddress: self, port: 0)) != nil
    }
}
