import ArgumentParser
import Foundation
import Logging
#if OTLP
import OTel
#endif
import ServiceLifecycle
import Settings
import Tracing

/// The export of the pipeline's spans over OTLP/HTTP (swift-otel), as the `tracing.*` settings and the standard
/// `OTEL_*` variables configure it.
///
/// Export is off unless `tracing.otlpEndpoint` (`OTEL_EXPORTER_OTLP_ENDPOINT`) or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set: then no tracer is bootstrapped, and the pipeline keeps its no-op
/// tracer (no span is even started). When it is on, ``bootstrap(logger:)`` installs swift-otel's tracer as
/// `InstrumentationSystem.tracer` and returns the exporter's service, to be run in the command's service group
/// (first, so that it shuts down last and flushes the spans of the drained jobs).
struct TracingExport: Sendable {
    /// The traces endpoint (the base URL with `/v1/traces`), nil when only swift-otel's variables name one.
    var tracesEndpoint: String?
    /// `service.name`.
    var serviceName: String
    /// The sampling ratio for traces without a sampled parent.
    var sampleRatio: Double
    /// Whether spans are exported at all.
    var enabled: Bool

    /// The export the settings and the environment ask for.
    init(_ settings: EffectiveSettings, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let base = settings[\.tracing.otlpEndpoint]
        tracesEndpoint = base.map { $0.hasSuffix("/") ? "\($0)v1/traces" : "\($0)/v1/traces" }
        serviceName = settings[\.tracing.serviceName]
        sampleRatio = settings[\.tracing.sampleRatio]
        let signalEndpoint = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].map { !$0.isEmpty } ?? false
        enabled = base != nil || signalEndpoint
        protocolVariable = ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"].lazy
            .compactMap { name in environment[name].map { (name, $0) } }.first
    }

    /// The first `OTEL_*` variable naming the protocol, if any: only OTLP/HTTP is built in.
    var protocolVariable: (name: String, value: String)?

    #if OTLP
    /// swift-otel's configuration: traces only (metrics stay on Prometheus, logs on standard error), OTLP over
    /// HTTP with protobuf, W3C trace context, a parent-based ratio sampler, diagnostics to `logger`.
    func configuration(logger: Logger) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.diagnosticLogger = .custom(logger)
        configuration.propagators = [.traceContext]
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        if let tracesEndpoint {
            configuration.traces.otlpExporter.endpoint = tracesEndpoint
        }
        if let sampler = OTel.Configuration.TracesConfiguration.SamplerConfiguration.parentBasedTraceIDRatio(ratio: sampleRatio) {
            configuration.traces.sampler = sampler
        }
        return configuration
    }

    /// Installs the exporting tracer as `InstrumentationSystem.tracer` when export is on, before the parts that
    /// capture the tracer are built; returns the service that batches and sends the spans, or nil when off.
    ///
    /// - Parameter logger: where swift-otel reports export failures.
    /// - Returns: the exporter's service, for the command's service group.
    func bootstrap(logger: Logger) throws -> (any Service)? {
        guard enabled else { return nil }
        if let (name, value) = protocolVariable, value.lowercased().hasPrefix("grpc") {
            // swift-otel would stop the process with a fatal error: the gRPC exporter is not compiled in.
            throw ValidationError(
                "\(name)=\(value): mioctx exports spans over OTLP/HTTP only (http/protobuf or http/json; port 4318)"
            )
        }
        let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration(logger: logger))
        InstrumentationSystem.bootstrap(tracer)
        return service
    }

    /// Puts the trace and span ids of the current span (`trace_id`, `span_id`, `trace_flags`) in each log line.
    static let logMetadataProvider: Logger.MetadataProvider = OTel.makeLoggingMetadataProvider()
    #else
    /// A build without the OTLP trait (the demo's) exports nothing: asking for export is an error that says so.
    func bootstrap(logger: Logger) throws -> (any Service)? {
        guard enabled else { return nil }
        throw ValidationError(
            "this build of mioctx has no OTLP export (`make demo` builds without it; `make build` or `swift build` "
                + "builds with it): unset tracing.otlpEndpoint and OTEL_EXPORTER_OTLP_*ENDPOINT"
        )
    }

    /// No span is exported in such a build, so log lines carry no trace id.
    static let logMetadataProvider = Logger.MetadataProvider { [:] }
    #endif
}
