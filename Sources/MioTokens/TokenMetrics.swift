import CoreMetrics

/// The metrics a ``TokenProvider`` emits through swift-metrics (names follow Prometheus conventions).
///
/// - `mioctx_token_refreshes_total{outcome}`: refresh calls to Mio: `performed` (new tokens stored), `failed`
///   (retriable or not, the user keeps their tokens), `reauth_required` (Mio answered `invalid_grant`: the user
///   must reconnect).
/// - `mioctx_token_refreshes_avoided_total`: refreshes not made because another replica (seen under the row
///   lock) or another task (seen in the cache) had already replaced the token.
/// - `mioctx_token_refreshes_joined_total`: callers that awaited a refresh already running in this process.
struct TokenMetrics: Sendable {
    enum Outcome: String {
        case performed
        case failed
        case reauthRequired = "reauth_required"
    }

    private let performed: Counter
    private let failed: Counter
    private let reauthRequired: Counter
    private let avoided: Counter
    private let joined: Counter

    init(factory: any MetricsFactory) {
        func refreshes(_ outcome: Outcome) -> Counter {
            Counter(label: "mioctx_token_refreshes_total", dimensions: [("outcome", outcome.rawValue)], factory: factory)
        }
        performed = refreshes(.performed)
        failed = refreshes(.failed)
        reauthRequired = refreshes(.reauthRequired)
        avoided = Counter(label: "mioctx_token_refreshes_avoided_total", factory: factory)
        joined = Counter(label: "mioctx_token_refreshes_joined_total", factory: factory)
    }

    func refreshed(_ outcome: Outcome) {
        switch outcome {
        case .performed: performed.increment()
        case .failed: failed.increment()
        case .reauthRequired: reauthRequired.increment()
        }
    }

    func refreshAvoided() {
        avoided.increment()
    }

    func refreshJoined() {
        joined.increment()
    }
}
