import KafkaPipeline
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import Foundation
import HTTPEndpoints
import Kafka
import MioctxTestSupport
import Logging
import MioSimulator
import Prometheus
import Testing
import Tracing

@Suite("Observability: logs, traces and metrics of the full pipeline")
struct PipelineObservabilityTests {
    /// Faults on the context endpoints only, so users connect through a healthy token endpoint.
    static let faultySimulator: MioSimulator.Configuration = {
        var faults = MioSimulator.Faults(rate500: 0.15, rate429: 0.15, retryAfterSeconds: 0)
        faults.targets = [.context, .summary]
        return MioSimulator.Configuration(clientSecret: "sim-secret-\(UUID().uuidString)", faults: faults, seed: 11)
    }()

    @Test func noTokenCodeOrClientSecretAppearsInAnyLogLineEvenAtTraceLevel() async throws {
        let capture = LogCapture()
        let logger = capture.logger(label: "mioctx")
        let configuration = Self.faultySimulator
        let (secrets, messages) = try await withObservedHarness(simulatorConfiguration: configuration, logger: logger) {
            harness in
            // ok, 401 then refresh, revoked (refresh refused), unknown user, retried 429/500, and invalid input.
            try await harness.connect(["alice", "bob", "carol"])
            try await harness.makeAccessTokenStale("bob")
            harness.simulator.revoke(userID: "carol")
            try await harness.makeAccessTokenStale("carol")
            var messages: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = []
            for index in 0..<30 {
                let user = ["alice", "bob", "carol", "nobody"][index % 4]
                let value = #"{"id":"job-\#(index)","userId":"\#(user)","query":"q \#(index)"}"#
                messages.append((key: user, value: Array(value.utf8), headers: []))
            }
            messages.append((key: "x", value: Array("{not json".utf8), headers: []))
            try await harness.produce(messages)

            let worker = RunningWorker(
                try harness.makeObservedWorker(harness.workerConfiguration()),
                logger: harness.logger
            )
            let results = try await harness.read(topic: WorkerHarness.outputTopic) { $0.count >= 30 }
            _ = try await harness.read(topic: WorkerHarness.deadLetterTopic) { $0.count >= 1 }
            try await worker.stop()
            return (harness.simulator.issuedSecrets() + ["atk_stale_bob", "atk_stale_carol", configuration.clientSecret], results)
        }
        let results = try messages.map(ResultMessage.init)
        let statuses = Set(results.map(\.status))
        #expect(statuses.isSuperset(of: ["ok", "reauth_required", "no_tokens"]))

        let lines = capture.all
        #expect(lines.contains { $0.level == .trace || $0.level == .debug }, "the pipeline logged at debug and below")
        #expect(secrets.count >= 8, "codes and token pairs of three users, a refresh, stale tokens, the secret")
        for secret in secrets {
            // Reports where a secret leaked, never the line itself (it holds the secret).
            let leaks = lines.filter { $0.text.contains(secret) }.map { "\($0.level) \($0.label)" }
            #expect(leaks.isEmpty, "a secret of \(secret.count) characters appeared in log lines at \(leaks)")
            #expect(!results.contains { String(decoding: $0.message.value ?? [], as: UTF8.self).contains(secret) })
        }

        // Every line about a job says which job and where it was read.
        let jobLines = lines.filter { $0.metadata["job.id"] != nil }
        #expect(!jobLines.isEmpty)
        for line in jobLines {
            #expect(line.metadata["job.topic"] == WorkerHarness.inputTopic, "\(line.text)")
            #expect(line.metadata["job.partition"] != nil && line.metadata["job.offset"] != nil, "\(line.text)")
        }
    }

    @Test func aJobsSpansFormOneTreeUnderItsTraceparentAndTheTraceReachesMioAndTheResult() async throws {
        let tracer = TestTracer()
        var logger = Logger(label: "trace-tests")
        logger.logLevel = .warning
        let incoming = ["alice", "bob"].map { user in
            (user: user, parent: TestTracer.Identity(traceID: TestTracer.randomHex(bytes: 16), spanID: TestTracer.randomHex(bytes: 8)))
        }
        let (messages, traceparentsAtMio) = try await withObservedHarness(
            simulatorConfiguration: MioSimulator.Configuration(),
            logger: logger,
            tracer: tracer
        ) { harness in
            try await harness.connect(["alice", "bob"])
            try await harness.makeAccessTokenStale("bob")
            for (index, job) in incoming.enumerated() {
                try await harness.produceJob(
                    id: "traced-\(index)",
                    userID: job.user,
                    headers: [KafkaHeader(key: "traceparent", value: job.parent.traceparent)]
                )
            }
            let worker = RunningWorker(
                try harness.makeObservedWorker(harness.workerConfiguration(), tracer: tracer),
                logger: harness.logger
            )
            let results = try await harness.read(topic: WorkerHarness.outputTopic) { $0.count >= incoming.count }
            try await worker.stop()
            return (results, harness.simulator.receivedTraceparents())
        }
        let results = try messages.map(ResultMessage.init)

        let spans = tracer.finishedSpans
        for (index, job) in incoming.enumerated() {
            let trace = spans.filter { $0.identity.traceID == job.parent.traceID }
            let root = try #require(trace.first { $0.name == JobSpan.job }, "no job span in trace of \(job.user)")
            #expect(root.parentSpanID == job.parent.spanID, "the job span continues the message's trace")
            #expect(root.kind == .consumer)
            #expect(root.attributes["mioctx.job.id"]?.toSpanAttribute() == SpanAttribute.string("traced-\(index)"))
            #expect(root.attributes["mioctx.job.status"]?.toSpanAttribute() == SpanAttribute.string("ok"))
            let children = trace.filter { $0.parentSpanID == root.identity.spanID }
            let names = children.map(\.name)
            #expect(names.filter { $0 == JobSpan.tokenLookup }.count == 1)
            #expect(names.filter { $0 == JobSpan.publish }.count == 1)
            let calls = children.filter { $0.name == JobSpan.mioCall }
            if job.user == "bob" {
                // 401 with the stale token, one refresh, one retry.
                #expect(calls.count == 2)
                #expect(names.filter { $0 == JobSpan.tokenRefresh }.count == 1)
            } else {
                #expect(calls.count == 1)
                #expect(!names.contains(JobSpan.tokenRefresh))
            }
            // Each Mio call has the HTTP client span as its child, and that span's context reached the simulator.
            for call in calls {
                let http = try #require(trace.first { $0.parentSpanID == call.identity.spanID && $0.kind == .client })
                #expect(traceparentsAtMio.contains(http.identity.traceparent))
            }
            // The result carries the publish span's context, not a copy of the job's header.
            let publish = try #require(children.first { $0.name == JobSpan.publish })
            let result = try #require(results.first { $0.id == "traced-\(index)" })
            #expect(result.message.header("traceparent")?.stringValue == publish.identity.traceparent)
        }
    }

    @Test func metricsCountJobsRetriesRefreshesCommitsAndReportConsumerLag() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsBootstrap.makeFactory(registry: registry)
        var logger = Logger(label: "metrics-tests")
        logger.logLevel = .warning
        let jobs = 40
        let exposition = try await withObservedHarness(
            simulatorConfiguration: Self.faultySimulator,
            logger: logger,
            metricsFactory: factory
        ) { harness in
            try await harness.connect(["alice", "bob"])
            try await harness.makeAccessTokenStale("bob")
            var messages: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = (0..<jobs).map { index in
                let user = index % 2 == 0 ? "alice" : "bob"
                return (key: user, value: Array(#"{"id":"m-\#(index)","userId":"\#(user)","query":"q"}"#.utf8), headers: [])
            }
            messages.append((key: nil, value: Array("[1]".utf8), headers: []))
            let ends = try await harness.produce(messages)
            var configuration = harness.workerConfiguration()
            configuration.kafka["statistics.interval.ms"] = "200"
            let worker = RunningWorker(
                try harness.makeObservedWorker(configuration, metricsFactory: factory),
                logger: harness.logger
            )
            _ = try await harness.read(topic: WorkerHarness.outputTopic) { $0.count >= jobs }
            try await waitUntil("every offset committed and reported with zero lag") {
                let committed = worker.worker.committedOffsets
                let allCommitted = ends.allSatisfy { partition, end in
                    committed[KafkaTopicPartition(topic: WorkerHarness.inputTopic, partition: partition)] == end
                }
                let values = PrometheusText(registry.emitToString())
                let lagged = ends.keys.allSatisfy { partition in
                    values[#"mioctx_consumer_lag{topic="\#(WorkerHarness.inputTopic)",partition="\#(partition)"}"#] == 0
                }
                return allCommitted && lagged
            }
            try await worker.stop()
            return registry.emitToString()
        }
        print("--- /metrics after \(jobs) jobs ---\n\(exposition)")
        let values = PrometheusText(exposition)
        #expect(values["mioctx_jobs_received_total"] == Double(jobs + 1))
        #expect(values.sum("mioctx_jobs_completed_total") == Double(jobs))
        #expect(values[#"mioctx_dead_letters_total{reason="not_object"}"#] == 1)
        #expect(values["mioctx_job_duration_seconds_count"] == Double(jobs))
        #expect(values["mioctx_jobs_in_flight"] == 0)
        // Bob's jobs in flight all meet the stale token: each retries once after the 401; one refresh serves them.
        #expect((values[#"mioctx_retries_total{cause="unauthorized"}"#] ?? 0) >= 1)
        #expect((values[#"mioctx_retries_total{cause="rate_limited"}"#] ?? 0) + (values[#"mioctx_retries_total{cause="server_error"}"#] ?? 0) > 0)
        #expect(values[#"mioctx_token_refreshes_total{outcome="performed"}"#] == 1)
        #expect((values[#"mioctx_mio_requests_total{endpoint="/v1/context",status_class="2xx"}"#] ?? 0) >= Double(jobs) - 1)
        #expect((values[#"mioctx_mio_requests_total{endpoint="/v1/context",status_class="4xx"}"#] ?? 0) >= 1)
        #expect((values["mioctx_offset_commits_total"] ?? 0) >= 1)
        #expect((values[#"mioctx_rebalances_total{event="assigned"}"#] ?? 0) >= 1)
    }
}

/// Sample values of a Prometheus text exposition, by series (`name{labels}` exactly as written).
struct PrometheusText {
    private var samples: [String: Double] = [:]

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
    }

    subscript(series: String) -> Double? { samples[series] }

    /// The sum over every series of a metric.
    func sum(_ name: String) -> Double {
        samples.filter { $0.key == name || $0.key.hasPrefix(name + "{") }.values.reduce(0, +)
    }
}
