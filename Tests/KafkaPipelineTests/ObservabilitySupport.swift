import KafkaPipeline
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import CoreMetrics
import Foundation
import Kafka
import Logging
import Mio
import MioSimulator
import MioTokens
import Synchronization
import Testing
import Tracing

/// One log call as a capturing handler saw it.
struct CapturedLogLine: Sendable {
    var level: Logger.Level
    var label: String
    var message: String
    var metadata: [String: String]
    /// When it was logged (printed by tests that show a timeline on failure).
    var time = ContinuousClock.now

    /// Everything the line would show, for searching.
    var text: String {
        "\(level) \(label) \(message) " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

/// Keeps every line logged through its loggers, with metadata rendered as a log handler would render it.
final class LogCapture: Sendable {
    private let lines = Mutex<[CapturedLogLine]>([])

    var all: [CapturedLogLine] { lines.withLock { $0 } }

    func logger(label: String, level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { CapturingLogHandler(label: $0, capture: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: CapturedLogLine) {
        lines.withLock { $0.append(line) }
    }
}

private struct CapturingLogHandler: LogHandler {
    let label: String
    let capture: LogCapture
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        capture.append(
            CapturedLogLine(
                level: event.level,
                label: label,
                message: "\(event.message)",
                metadata: merged.mapValues { "\($0)" }
            )
        )
    }
}

/// A `WorkerHarness` whose every part logs to `logger`, emits to `metricsFactory` and traces with `tracer`.
func withObservedHarness<T: Sendable>(
    partitions: Int = 3,
    simulatorConfiguration: MioSimulator.Configuration,
    logger: Logger,
    metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
    tracer: any Tracer = NoOpTracer(),
    _ body: (WorkerHarness) async throws -> T
) async throws -> T {
    try await WorkerHarness.with(
        partitions: partitions,
        simulatorConfiguration: simulatorConfiguration,
        logger: logger,
        metricsFactory: metricsFactory,
        tracer: tracer,
        body
    )
}

extension WorkerHarness {
    /// A worker whose handler and engine use `metricsFactory` and `tracer`.
    func makeObservedWorker(
        _ configuration: KafkaWorker.Configuration,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
        tracer: any Tracer = NoOpTracer()
    ) throws -> KafkaWorker {
        let handler = JobHandler(api: MioContextAPI(mio), tokens: MioTokenSource(tokens), logger: logger, metricsFactory: metricsFactory, tracer: tracer)
        return try KafkaWorker(
            configuration: configuration,
            handler: handler,
            logger: logger,
            metricsFactory: metricsFactory,
            tracer: tracer
        )
    }

    /// Stores an access token Mio never issued for a connected user, so their next call gets a 401 and refreshes.
    func makeAccessTokenStale(_ userID: String) async throws {
        let record = try #require(await store.get(userID: userID))
        _ = await store.upsert(
            userID: userID,
            tokens: TokenGrant(
                accessToken: "atk_stale_\(userID)",
                refreshToken: record.refreshToken,
                idToken: nil,
                expiresAt: Date().addingTimeInterval(3600),
                issuedAt: Date()
            )
        )
    }

    /// Produces one job message with the given headers.
    func produceJob(id: String, userID: String, headers: [KafkaHeader] = []) async throws {
        let value = Array(#"{"id":"\#(id)","userId":"\#(userID)","query":"query \#(id)"}"#.utf8)
        try await produce([(key: userID, value: value, headers: headers)])
    }
}
