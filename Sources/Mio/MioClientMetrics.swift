import CoreMetrics
import Metrics
import Synchronization

/// The metrics a `MioClient` emits through swift-metrics (names follow Prometheus conventions).
///
/// - `mioctx_mio_requests_total{endpoint, status_class}`: requests by path and outcome: `2xx`, `4xx`, `5xx`
///   (any HTTP status class), or `timeout`, `transport`, `cancelled` when no answer arrived.
/// - `mioctx_mio_request_duration_seconds{endpoint}`: time to the answer's end (a timer: a histogram in Prometheus).
struct MioClientMetrics: Sendable {
    private struct Handles {
        var counters: [String: Counter] = [:]
        var timers: [String: Timer] = [:]
    }

    private let factory: any MetricsFactory
    /// Created once per label set: making a metric asks the factory's registry (a lock and label hashing),
    /// which is too much for every request.
    private let handles = LockedHandles()

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func record(_ endpoint: Endpoint, statusClass: String, duration: Duration) {
        let (counter, timer) = handles.mutex.withLock { handles -> (Counter, Timer) in
            let counterKey = endpoint.path + " " + statusClass
            let counter = handles.counters[counterKey] ?? Counter(
                label: "mioctx_mio_requests_total",
                dimensions: [("endpoint", endpoint.path), ("status_class", statusClass)],
                factory: factory
            )
            handles.counters[counterKey] = counter
            let timer = handles.timers[endpoint.path] ?? Timer(
                label: "mioctx_mio_request_duration_seconds",
                dimensions: [("endpoint", endpoint.path)],
                factory: factory
            )
            handles.timers[endpoint.path] = timer
            return (counter, timer)
        }
        counter.increment()
        timer.record(duration: duration)
    }

    private final class LockedHandles: Sendable {
        let mutex = Mutex(Handles())
    }

    /// `2xx` .. `5xx` for an HTTP status.
    static func statusClass(_ status: Int) -> String {
        "\(status / 100)xx"
    }

    /// The outcome label of a request that got no answer.
    static func statusClass(_ error: MioError) -> String {
        switch error.code {
        case .timeout: "timeout"
        case .cancelled: "cancelled"
        default: "transport"
        }
    }
}
