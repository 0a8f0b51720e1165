import Tracing

/// Names of the spans the pipeline starts; a job's spans form one tree under ``job``.
public enum JobSpan {
    /// One job, from its start to its acknowledged result (kind consumer). Its parent is the W3C trace context
    /// (`traceparent`, `tracestate`) of the job's message headers, when they carry one.
    public static let job = "mioctx.job"
    /// Getting the user's access token (cache, store, maybe a proactive refresh).
    public static let tokenLookup = "mioctx.token.lookup"
    /// The coordinated refresh after Mio answered 401.
    public static let tokenRefresh = "mioctx.token.refresh"
    /// One call to Mio's `getContext` or `getContextSummary` (the HTTP client span is its child).
    public static let mioCall = "mioctx.mio.call"
    /// Publishing the result, until the sink acknowledged it (kind producer).
    public static let publish = "mioctx.publish"
    /// Sending an invalid message to the dead-letter sink (kind producer).
    public static let deadLetter = "mioctx.dead_letter"
}

/// Reads trace-context headers from an input item.
struct MessageHeaderExtractor: Extractor {
    func extract(key: String, from carrier: [MessageHeader]) -> String? {
        carrier.first { $0.name.lowercased() == key.lowercased() }?.value.map { String(decoding: $0, as: UTF8.self) }
    }
}

/// The pipeline's tracer: spans, and the task-local trace context, only when the tracer records them.
///
/// With the default `NoOpTracer`, `withSpan` would still bind a task-local context and add a few async frames
/// per span, for nothing; here the body then runs directly with a no-op span. That saves CPU on every job and,
/// with a thousand jobs in flight, megabytes (a task keeps the memory of its deepest stack of frames).
struct JobTracer: Sendable {
    /// The tracer spans go to.
    let tracer: any Tracer
    /// Whether spans are worth starting: false for `NoOpTracer`.
    let records: Bool

    init(_ tracer: any Tracer) {
        self.tracer = tracer
        self.records = !(tracer is NoOpTracer)
    }

    /// Runs `body` in a span named `name` (a child of `context`), or with a no-op span when nothing records.
    func withSpan<T>(
        _ name: String,
        context: @autoclosure () -> ServiceContext = ServiceContext.current ?? .topLevel,
        ofKind kind: SpanKind = .internal,
        _ body: (any Span) async throws -> T
    ) async rethrows -> T {
        guard records else {
            return try await body(NoOpTracer.NoOpSpan(context: .topLevel))
        }
        return try await tracer.withSpan(name, context: context(), ofKind: kind) { span in
            try await body(span)
        }
    }
}
