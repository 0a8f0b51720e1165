import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Synchronization

/// What came back for one request: the status, the headers and the (bounded) body.
struct HTTPAnswer: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// Collects one response on the connection's event loop, and holds the request's task so that the calling Swift
/// task can cancel it.
///
/// A 2xx body larger than `successLimit` fails the request (Mio's answers are far smaller); any other status keeps
/// at most `errorLimit` bytes of its body and ignores the rest, because the status is what matters.
final class ResponseCollector: HTTPClientResponseDelegate {
    typealias Response = HTTPAnswer

    /// The answer's body grew past what a 2xx answer may hold.
    struct BodyTooLarge: Error, CustomStringConvertible {
        var limit: Int
        var description: String { "the response body is larger than \(self.limit) bytes" }
    }

    private struct State {
        var head: HTTPResponseHead?
        var body = ByteBuffer()
        /// The request's task, once AsyncHTTPClient created it.
        var task: HTTPClient.Task<HTTPAnswer>?
        /// The calling task was cancelled (possibly before the request's task existed).
        var cancelled = false
    }

    private let successLimit: Int
    private let errorLimit: Int
    private let state = Mutex(State())

    init(successLimit: Int, errorLimit: Int) {
        self.successLimit = successLimit
        self.errorLimit = errorLimit
    }

    /// Keeps the request's task; cancels it at once when the caller was cancelled first.
    func attach(_ task: HTTPClient.Task<HTTPAnswer>) {
        let cancelled = self.state.withLock { state in
            state.task = task
            return state.cancelled
        }
        if cancelled { task.cancel() }
    }

    /// Cancels the request, now or as soon as its task is attached.
    func cancel() {
        let task = self.state.withLock { state in
            state.cancelled = true
            return state.task
        }
        task?.cancel()
    }

    func didReceiveHead(task: HTTPClient.Task<HTTPAnswer>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        self.state.withLock { $0.head = head }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<HTTPAnswer>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        let tooLarge = self.state.withLock { state -> Bool in
            let success = state.head.map { (200..<300).contains($0.status.code) } ?? true
            let limit = success ? self.successLimit : self.errorLimit
            let room = limit - state.body.readableBytes
            if buffer.readableBytes <= room {
                var buffer = buffer
                state.body.writeBuffer(&buffer)
                return false
            }
            if success { return true }
            // An error answer: keep what fits, drop the rest.
            if room > 0, let slice = buffer.getSlice(at: buffer.readerIndex, length: room) {
                var slice = slice
                state.body.writeBuffer(&slice)
            }
            return false
        }
        if tooLarge {
            return task.eventLoop.makeFailedFuture(BodyTooLarge(limit: self.successLimit))
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<HTTPAnswer>) throws -> HTTPAnswer {
        try self.state.withLock { state in
            guard let head = state.head else { throw HTTPClientError.remoteConnectionClosed }
            return HTTPAnswer(status: head.status, headers: head.headers, body: state.body)
        }
    }
}
