import CoreMetrics
public import Hummingbird
public import Prometheus

/// `GET /metrics`: every metric of the process in the Prometheus text exposition format (version 0.0.4).
///
/// The modules emit through swift-metrics only; this endpoint and ``MetricsBootstrap`` are the only places that
/// know Prometheus.
public struct MetricsEndpoint: Sendable {
    /// The content type of the answer.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let registry: PrometheusCollectorRegistry
    private let path: String

    /// Creates the endpoint.
    ///
    /// - Parameters:
    ///   - registry: the registry the metrics factory writes to (see ``MetricsBootstrap/makeFactory(registry:)``).
    ///   - path: where to serve it, default `/metrics`.
    public init(registry: PrometheusCollectorRegistry, path: String = "/metrics") {
        self.registry = registry
        self.path = path
    }

    /// Adds `GET /metrics` to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let registry = self.registry
        router.get(RouterPath(path)) { _, _ -> Response in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16 * 1024)
            registry.emit(into: &bytes)
            return Response(
                status: .ok,
                headers: [.contentType: Self.contentType],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
            )
        }
    }
}

/// Installs Prometheus as the process's swift-metrics backend.
///
/// `MetricsSystem.bootstrap` may run once per process: the executable calls ``bootstrap()`` once at
/// start, before it builds the parts that create metrics. Tests never bootstrap: every mioctx component takes a
/// `metricsFactory:` argument (default `MetricsSystem.factory`), so a test passes its own
/// `PrometheusMetricsFactory(registry:)` from ``makeFactory(registry:)``, or a `TestMetrics` from MetricsTestKit.
public enum MetricsBootstrap {
    /// Histogram buckets of mioctx's timers, by metric name; other timers get swift-prometheus's defaults
    /// (5 ms to 10 s).
    public static let durationBuckets: [String: [Duration]] = [
        // A job may wait in the queue and retry for up to a minute (RetryPolicy.maxTimePerJob).
        "mioctx_job_duration_seconds": [
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
            .seconds(60), .seconds(120),
        ],
        "mioctx_mio_request_duration_seconds": [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30),
        ],
    ]

    /// A Prometheus-backed factory writing to `registry`, with mioctx's histogram buckets.
    ///
    /// - Parameter registry: where the metrics are kept; serve it with ``MetricsEndpoint``.
    /// - Returns: the factory; pass it as `metricsFactory:` (tests) or to ``bootstrap()``'s caller.
    public static func makeFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = durationBuckets
        return factory
    }

    /// Creates a registry and makes it the process's swift-metrics backend. Call once per process.
    ///
    /// - Returns: the registry, for ``MetricsEndpoint``.
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(makeFactory(registry: registry))
        return registry
    }
}
