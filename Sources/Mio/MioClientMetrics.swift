import CoreMetrics
import Metrics
import Synchronization

/// The metrics a `MioClient` emits through swift-metrics (names follow Prometheus conventions).
///
/// - `mioctx_mio_requests_total{endpoint, status_class}`: requests by path and outcome: `2xx`, `4xx`, `5xx`
///   (any HTTP status class), or `timeout`, `transport`, `cancelled` when no answer arrived.
/// - `mioctx_mio_request_duration_seconds{endpoint}`: time to the answer's end (a timer: a histogram in Prometheus).
struct MioClientMetrics: Sendable {
    /// What a request ended with: its status class, or why no answer came.
    enum Outcome: Int, CaseIterable {
        case informational, success, redirection, clientError, serverError, timeout, cancelled, transport

        /// The outcome of an answer with this HTTP status.
        init(status: Int) {
            switch status {
            case ..<200: self = .informational
            case 200..<300: self = .success
            case 300..<400: self = .redirection
            case 400..<500: self = .clientError
            default: self = .serverError
            }
        }

        /// The outcome of a request that got no answer.
        init(_ error: MioError) {
            switch error.code {
            case .timeout: self = .timeout
            case .cancelled: self = .cancelled
            default: self = .transport
            }
        }

        /// The `status_class` label.
        var label: String {
            switch self {
            case .informational: "1xx"
            case .success: "2xx"
            case .redirection: "3xx"
            case .clientError: "4xx"
            case .serverError: "5xx"
            case .timeout: "timeout"
            case .cancelled: "cancelled"
            case .transport: "transport"
            }
        }
    }

    /// One endpoint's metrics, each counter made on its first use.
    private struct EndpointHandles {
        var timer: Timer
        var counters: [Counter?] = Array(repeating: nil, count: Outcome.allCases.count)
    }

    private let factory: any MetricsFactory
    /// Created once per label set: making a metric asks the factory's registry (a lock and label hashing),
    /// which is too much for every request.
    private let handles = LockedHandles()

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func record(_ endpoint: Endpoint, outcome: Outcome, duration: Duration) {
        let (counter, timer) = handles.mutex.withLock { handles -> (Counter, Timer) in
            if let known = handles[endpoint.path], let counter = known.counters[outcome.rawValue] {
                return (counter, known.timer)
            }
            var entry = handles[endpoint.path] ?? EndpointHandles(
                timer: Timer(
                    label: "mioctx_mio_request_duration_seconds",
                    dimensions: [("endpoint", endpoint.path)],
                    factory: factory
                )
            )
            let counter = Counter(
                label: "mioctx_mio_requests_total",
                dimensions: [("endpoint", endpoint.path), ("status_class", outcome.label)],
                factory: factory
            )
            entry.counters[outcome.rawValue] = counter
            handles[endpoint.path] = entry
            return (counter, entry.timer)
        }
        counter.increment()
        timer.record(duration: duration)
    }

    private final class LockedHandles: Sendable {
        let mutex = Mutex([String: EndpointHandles]())
    }
}
