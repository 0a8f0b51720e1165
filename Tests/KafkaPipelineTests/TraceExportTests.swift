import Foundation
import Kafka
import MioctxTestSupport
import Testing

/// `mioctx run` exports its spans over OTLP/HTTP to a real receiver (tests/otlp_receiver.py, PyPI's
/// opentelemetry-proto decoding what arrives), and its JSON log lines carry the trace id.
@Suite("Traces exported over OTLP/HTTP")
struct TraceExportTests {
    static let receiverScript = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tests/otlp_receiver.py")

    /// The OTLP/HTTP receiver as a child process, writing each span it decodes as a JSON line to `output`.
    struct Receiver {
        let process: ChildProcess
        let port: Int
        let output: URL

        init(output: URL) throws {
            self.output = output
            process = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"), ["python3", TraceExportTests.receiverScript.path, output.path])
            let line = try process.firstLine()
            port = try #require(Int(line.trimmingCharacters(in: .whitespaces)), "the receiver's port, not \(line)")
        }

        /// The spans received so far.
        func spans() throws -> [[String: Any]] {
            try jsonLines(of: output)
        }
    }

    static func jsonLines(of file: URL) throws -> [[String: Any]] {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    @Test func aJobsSpanArrivesAtTheCollectorUnderItsTraceparentAndItsLogLineCarriesTheTraceID() async throws {
        try await WorkerProcessTests.withSetup { setup in
            let receiver = try Receiver(output: setup.directory.appendingPathComponent("spans.jsonl"))
            defer { receiver.process.terminate() }
            let traceID = TestTracer.randomHex(bytes: 16)
            let parentSpanID = TestTracer.randomHex(bytes: 8)
            try await setup.harness.produceJob(
                id: "exported-1", userID: "process-user-1",
                headers: [KafkaHeader(key: "traceparent", value: "00-\(traceID)-\(parentSpanID)-01")]
            )
            let counter = try WorkerProcessTests.ResultCounter(setup.harness)
            let worker = try setup.startWorker(
                logLevel: "debug",
                extraEnvironment: [
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(receiver.port)",
                    "OTEL_SERVICE_NAME": "mioctx-trace-test",
                ]
            )
            try await waitUntil("the job's result") { counter.unique >= 1 }
            // A graceful stop flushes the spans still batched: they must all have arrived once it exits.
            #expect(await worker.stop() == 0)
            try await counter.stop()

            let spans = try receiver.spans()
            let job = try #require(
                spans.first { $0["name"] as? String == "mioctx.job" },
                "a mioctx.job span among \(spans.map { $0["name"] ?? "?" })"
            )
            #expect(job["trace_id"] as? String == traceID)
            #expect(job["parent_span_id"] as? String == parentSpanID)
            #expect(job["service"] as? String == "mioctx-trace-test")
            #expect(job["kind"] as? Int == 5, "SPAN_KIND_CONSUMER")
            let jobSpanID = try #require(job["span_id"] as? String)
            // The job's children (the Mio call, the publish) are in the same trace, under the job's span.
            let publish = try #require(spans.first { $0["name"] as? String == "mioctx.publish" })
            #expect(publish["trace_id"] as? String == traceID)
            #expect(publish["parent_span_id"] as? String == jobSpanID)

            let lines = try Self.jsonLines(of: setup.directory.appendingPathComponent("worker.log"))
            let done = try #require(
                lines.first { $0["message"] as? String == "job done" && $0["job.id"] as? String == "exported-1" },
                "a `job done` line of the job"
            )
            #expect(done["trace_id"] as? String == traceID)
            #expect(done["span_id"] as? String == jobSpanID)
        }
    }
}
