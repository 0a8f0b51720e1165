import CoreMetrics

/// The metrics a ``TokenProvider`` emits through swift-metrics (names follow Prometheus conventions).
///
/// - `mioctx_token_refreshes_total{outcome}`: refresh calls to Mio: `performed` (new tokens stored), `failed`
///   (retriable or not, the user keeps their tokens), `reauth_required` (Mio answered `invalid_grant`: the user
///   must reconnect), `reauth_required_answer_lost` (`invalid_grant` after a refresh whose answer was lost),
///   `uncertain` (sent, outcome unknown: the next attempt sends the same refresh token once more).
/// - `mioctx_token_grants_unsaved_total`: grants from Mio that the store did not take at once (kept in memory and
///   written in the background).
/// - `mioctx_token_refreshes_avoided_total`: refreshes not made because another replica (seen under the row
///   lock) or another task (seen in the cache) had already replaced the token.
/// - `mioctx_token_refreshes_joined_total`: callers that awaited a refresh already running in this process.
struct TokenMetrics: Sendable {
    enum Outcome: String {
        case performed
        case failed
        case reauthRequired = "reauth_required"
        case reauthRequiredAfterLostAnswer = "reauth_required_answer_lost"
        case uncertain
    }

    private let performed: Counter
    private let failed: Counter
    private let reauthRequired: Counter
    private let reauthRequiredAfterLostAnswer: Counter
    private let uncertain: Counter
    private let unsaved: Counter
    private let avoided: Counter
    private let joined: Counter

    init(factory: any MetricsFactory) {
        func refreshes(_ outcome: Outcome) -> Counter {
            Counter(label: "mioctx_token_refreshes_total", dimensions: [("outcome", outcome.rawValue)], factory: factory)
        }
        performed = refreshes(.performed)
        failed = refreshes(.failed)
        reauthRequired = refreshes(.reauthRequired)
        reauthRequiredAfterLostAnswer = refreshes(.reauthRequiredAfterLostAnswer)
        uncertain = refreshes(.uncertain)
        unsaved = Counter(label: "mioctx_token_grants_unsaved_total", factory: factory)
        avoided = Counter(label: "mioctx_token_refreshes_avoided_total", factory: factory)
        joined = Counter(label: "mioctx_token_refreshes_joined_total", factory: factory)
    }

    func refreshed(_ outcome: Outcome) {
        switch outcome {
        case .performed: performed.increment()
        case .failed: failed.increment()
        case .reauthRequired: reauthRequired.increment()
        case .reauthRequiredAfterLostAnswer: reauthRequiredAfterLostAnswer.increment()
        case .uncertain: uncertain.increment()
        }
    }

    func grantKeptUnsaved() {
        unsaved.increment()
    }

    func refreshAvoided() {
        avoided.increment()
    }

    func refreshJoined() {
        joined.increment()
    }
}
