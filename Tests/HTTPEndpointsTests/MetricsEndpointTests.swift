import HTTPEndpoints
import Hummingbird
import HummingbirdTesting
import Metrics
import Prometheus
import Testing

@Suite("GET /metrics")
struct MetricsEndpointTests {
    @Test func metricsEmittedThroughSwiftMetricsAreServedInPrometheusTextFormat() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsBootstrap.makeFactory(registry: registry)
        Metrics.Counter(label: "mioctx_jobs_received_total", factory: factory).increment(by: 3)
        Metrics.Counter(label: "mioctx_jobs_completed_total", dimensions: [("status", "ok")], factory: factory).increment()
        Metrics.Timer(label: "mioctx_job_duration_seconds", factory: factory).record(duration: .milliseconds(1500))
        Gauge(label: "mioctx_partitions_paused", factory: factory).record(2)

        let router = Router()
        MetricsEndpoint(registry: registry).addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == MetricsEndpoint.contentType)
                let text = String(buffer: response.body)
                let lines = Set(text.split(separator: "\n").map(String.init))
                #expect(lines.contains("# TYPE mioctx_jobs_received_total counter"))
                #expect(lines.contains("mioctx_jobs_received_total 3"))
                #expect(lines.contains(#"mioctx_jobs_completed_total{status="ok"} 1"#))
                #expect(lines.contains("# TYPE mioctx_job_duration_seconds histogram"))
                // mioctx's job buckets reach two minutes; 1.5 s falls in the 2.5 s bucket and not in the 1 s one.
                #expect(lines.contains(#"mioctx_job_duration_seconds_bucket{le="1.0"} 0"#))
                #expect(lines.contains(#"mioctx_job_duration_seconds_bucket{le="2.5"} 1"#))
                #expect(lines.contains(#"mioctx_job_duration_seconds_bucket{le="120.0"} 1"#))
                #expect(lines.contains("mioctx_job_duration_seconds_count 1"))
                #expect(lines.contains("# TYPE mioctx_partitions_paused gauge"))
                #expect(lines.contains("mioctx_partitions_paused 2.0"))
            }
        }
    }
}
