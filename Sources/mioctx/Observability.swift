import HTTPEndpoints
import Prometheus

/// Installs the process-wide observability backends once, at the start of a long-running command (before its parts
/// are built, since they capture `MetricsSystem.factory` and `InstrumentationSystem.tracer` when created):
/// swift-log in the configured format and level, and Prometheus for swift-metrics. Tracing stays a no-op unless
/// span export is configured (``TracingExport``, docs/operations.md, "Tracing").
///
/// - Parameter log: how to log.
/// - Returns: the metrics registry, for `MetricsEndpoint` (`GET /metrics`).
func bootstrapObservability(log: LogSetup) -> PrometheusCollectorRegistry {
    log.bootstrap()
    return MetricsBootstrap.bootstrap()
}
