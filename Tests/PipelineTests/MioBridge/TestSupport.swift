import Coordination
import Pipeline
import PipelineMioBridge
import Foundation
import Mio
import MioTokens
import Synchronization

/// A clock whose sleeps return at once and move virtual time forward, recording each wait.
final class VirtualClock: Sendable {
    private struct State {
        var now: Duration = .zero
        var sleeps: [Duration] = []
    }

    private let state = Mutex(State())
    private let onSleep: @Sendable (_ count: Int) -> Void

    /// - Parameter onSleep: Called after each sleep with the number of sleeps so far (to change the world
    ///   between attempts).
    init(onSleep: @escaping @Sendable (_ count: Int) -> Void = { _ in }) {
        self.onSleep = onSleep
    }

    var timeSource: TimeSource {
        TimeSource(
            now: { self.now },
            sleep: { duration in
                try Task.checkCancellation()
                let count = self.state.withLock {
                    $0.now += duration
                    $0.sleeps.append(duration)
                    return $0.sleeps.count
                }
                self.onSleep(count)
            },
            wallClock: {
                let components = self.now.components
                return Date(timeIntervalSince1970: 1_800_000_000 + Double(components.seconds))
            }
        )
    }

    var now: Duration { state.withLock { $0.now } }
    var sleeps: [Duration] { state.withLock { $0.sleeps } }
}

/// A Mio stand-in that answers from a script, for the retry rules that the simulator cannot time exactly. Its
/// `MioError`s reach the handler classified, as the bridge's `MioContextAPI` classifies the `MioClient`'s.
final class ScriptedAPI: ContextAPI {
    enum Answer: Sendable {
        case content(String)
        case failure(MioError)
    }

    private struct State {
        var script: [Answer]
        var tokensUsed: [String] = []
    }

    private let state: Mutex<State>
    private let repeatLast: Bool

    init(_ script: [Answer], repeatLast: Bool = true) {
        state = Mutex(State(script: script))
        self.repeatLast = repeatLast
    }

    var tokensUsed: [String] { state.withLock { $0.tokensUsed } }
    var calls: Int { tokensUsed.count }

    private func next(_ token: String) -> Answer {
        state.withLock { state in
            state.tokensUsed.append(token)
            if state.script.count > 1 || !repeatLast { return state.script.removeFirst() }
            return state.script[0]
        }
    }

    func getContext(query: String, accessToken: String) async throws -> String {
        switch next(accessToken) {
        case .content(let content): return content
        case .failure(let error): throw JobFailure(error)
        }
    }

    func getContextSummary(accessToken: String) async throws -> String? {
        switch next(accessToken) {
        case .content(let content): return content
        case .failure(let error): throw JobFailure(error)
        }
    }
}

/// Tokens from a script: `accessToken` answers the first entry (or throws it, classified), refreshes hand out new
/// tokens.
final class ScriptedTokens: TokenSource {
    private struct State {
        var accessErrors: [TokenError]
        var current = "atk-initial-secret"
        var refreshes: [String] = []
        var refreshError: TokenError?
    }

    private let state: Mutex<State>

    init(accessErrors: [TokenError] = [], refreshError: TokenError? = nil) {
        state = Mutex(State(accessErrors: accessErrors, refreshError: refreshError))
    }

    /// The tokens that were reported rejected, in order.
    var refreshes: [String] { state.withLock { $0.refreshes } }

    func accessToken(for userID: String) async throws -> String {
        try state.withLock { state in
            if !state.accessErrors.isEmpty { throw JobFailure(state.accessErrors.removeFirst()) }
            return state.current
        }
    }

    func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String {
        try state.withLock { state in
            state.refreshes.append(rejected)
            if let error = state.refreshError { throw JobFailure(error) }
            state.current = "atk-refreshed-secret-\(state.refreshes.count)"
            return state.current
        }
    }
}

extension MioError {
    static func http(_ status: Int, retryAfter: Duration? = nil) -> MioError {
        let code: MioError.Code =
            switch status {
            case 401: .unauthorized
            case 403: .forbidden
            case 429: .rateLimited
            case 500 ..< 600: .serverError
            default: .clientError
            }
        return MioError(code: code, endpoint: "POST /v1/context", status: status, retryAfter: retryAfter)
    }
}

/// The absolute difference of two durations.
func gap(_ a: Duration, _ b: Duration) -> Duration {
    a > b ? a - b : b - a
}
