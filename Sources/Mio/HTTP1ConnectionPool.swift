import NIOCore
import NIOHTTP1
import NIOPosix
#if TLS
import NIOSSL
#else
/// A build without the TLS trait has no TLS configuration or context: only `http` origins.
typealias TLSConfiguration = Never
typealias NIOSSLContext = Never
#endif
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
    /// An `https` origin in a build without the TLS trait (the demo's, `make demo`).
    case noTLS

    var description: String {
        switch self {
        case .deadlineExceeded: "no complete answer within the request timeout"
        case .connectionClosed: "the connection closed before the answer was complete"
        case .bodyTooLarge(let limit): "the response body is larger than \(limit) bytes"
        case .cancelled: "the request was cancelled"
        case .shutDown: "the HTTP connection pool is shut down"
        case .noTLS: "this build of mioctx has no TLS for an https URL (`make demo` builds without it; `make build` or "
            + "`swift build` builds with it)"
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
/// Parsing and encoding are NIO's (`HTTPRequestEncoder`, `HTTPResponseDecoder`). Deadlines and idle times are
/// measured on NIO's clock (`NIODeadline`), the one its timers run on, not on an injected `TimeSource`.
///
/// Each event loop's share is a ``LoopPool`` (HTTP1LoopPool.swift); each connection's pipeline ends in an
/// ``HTTP1Connection`` (HTTP1Connection.swift).
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
            #if TLS
            var configuration = tlsConfiguration ?? TLSConfiguration.makeClientConfiguration()
            configuration.applicationProtocols = ["http/1.1"]
            sslContext = try NIOSSLContext(configuration: configuration)
            #else
            throw HTTP1PoolError.noTLS
            #endif
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

    /// Each event loop's share of the pool in a line, for the diagnostics of a stall. A loop that does not answer
    /// within `timeout` is reported as blocked: every connection and deadline on it waits with it.
    func diagnostics(timeout: Duration = .seconds(2)) async -> String {
        var lines: [String] = []
        for (index, pool) in self.loops.enumerated() {
            let summary = await Self.first(of: pool.loop.submit { pool.summary }, within: timeout)
            lines.append("loop \(index): \(summary ?? "blocked: it ran nothing within \(timeout)")")
        }
        return lines.joined(separator: "\n")
    }

    /// The value of `future`, or nil once `timeout` has passed; a future that never completes is left behind.
    private static func first(of future: EventLoopFuture<String>, within timeout: Duration) async -> String? {
        let answer = FirstAnswer()
        return await withCheckedContinuation { waiting in
            answer.continuation.withLock { $0 = waiting }
            future.whenComplete { result in answer.finish(try? result.get()) }
            Task {
                try? await Task.sleep(for: timeout)
                answer.finish(nil)
            }
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

/// The waiter of ``HTTP1ConnectionPool/diagnostics(timeout:)`` for one loop, resumed once by the loop's answer or
/// the timeout, whichever comes first.
private final class FirstAnswer: Sendable {
    let continuation = Mutex<CheckedContinuation<String?, Never>?>(nil)

    func finish(_ value: String?) {
        continuation.withLock { $0.take() }?.resume(returning: value)
    }
}

/// One request on its way: created by the caller, then touched only on its event loop.
///
/// The caller waits on a continuation rather than an `EventLoopFuture`: a future would add a promise, a callback
/// list and a hop through `get()` to every request. Nor does it use Coordination's `WaitableState`: a request has
/// exactly one waiter, resumed once from its event loop, so a lock and a waiter queue per request (this is the
/// hot path, one per Mio call) would add cost and guard nothing.
final class PendingRequest: @unchecked Sendable {
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
