import CoreMetrics
import Metrics

/// Metrics of the ``ProcessingEngine`` (Kafka and files alike), emitted through swift-metrics.
///
/// - `mioctx_jobs_received_total`: items submitted, valid jobs and invalid input alike.
/// - `mioctx_jobs_completed_total{status}`: results accepted by the sink, by ``JobResult/Status``.
/// - `mioctx_dead_letters_total{reason}`: invalid items accepted by the dead-letter sink, by ``InvalidJob/Code``.
/// - `mioctx_job_duration_seconds`: from submission (for Kafka: consumed) to the acknowledged result.
/// - `mioctx_jobs_in_flight`: items submitted and not finished (queued, running or being delivered).
struct EngineMetrics: Sendable {
    private let factory: any MetricsFactory
    private let received: Counter
    private let completed: [JobResult.Status: Counter]
    private let duration: Timer
    private let inFlight: Meter

    init(factory: any MetricsFactory) {
        self.factory = factory
        received = Counter(label: "mioctx_jobs_received_total", factory: factory)
        completed = Dictionary(
            uniqueKeysWithValues: JobResult.Status.allCases.map { status in
                (status, Counter(label: "mioctx_jobs_completed_total", dimensions: [("status", status.rawValue)], factory: factory))
            }
        )
        duration = Timer(label: "mioctx_job_duration_seconds", factory: factory)
        inFlight = Meter(label: "mioctx_jobs_in_flight", factory: factory)
    }

    func submitted() {
        received.increment()
        inFlight.increment()
    }

    func finished(count: Int = 1) {
        inFlight.decrement(by: Double(count))
    }

    func completed(_ status: JobResult.Status, after elapsed: Duration) {
        completed[status]?.increment()
        duration.record(duration: elapsed)
    }

    func deadLettered(_ reason: InvalidJob.Code) {
        Counter(label: "mioctx_dead_letters_total", dimensions: [("reason", reason.description)], factory: factory).increment()
    }
}

/// Metrics of the ``JobHandler``.
///
/// - `mioctx_retries_total{cause}`: attempts repeated, by cause: `rate_limited` (429), `server_error` (5xx),
///   `timeout`, `transport` (connection failures, other errors), `unauthorized` (a 401 answered by one refresh and
///   one retry), `token_store` (a retriable token store or lock failure).
struct HandlerMetrics: Sendable {
    private let retries: [RetryCause: Counter]

    init(factory: any MetricsFactory) {
        retries = Dictionary(
            uniqueKeysWithValues: RetryCause.allCases.map { cause in
                (cause, Counter(label: "mioctx_retries_total", dimensions: [("cause", cause.rawValue)], factory: factory))
            }
        )
    }

    func retried(_ cause: RetryCause) {
        retries[cause]?.increment()
    }
}
