import Synchronization
import Tracing

/// A tracer that keeps every finished span in memory and speaks W3C trace context (`traceparent`), so tests can
/// check the span tree and what was propagated, without an exporter or a global bootstrap.
final class TestTracer: Tracer {
    /// The identity of a span: W3C trace id (32 hex digits) and span id (16 hex digits).
    struct Identity: Sendable, Hashable {
        var traceID: String
        var spanID: String

        var traceparent: String { "00-\(traceID)-\(spanID)-01" }

        /// Parses `00-<trace id>-<span id>-<flags>`.
        init?(traceparent: String) {
            let parts = traceparent.split(separator: "-")
            guard parts.count == 4, parts[0] == "00", parts[1].count == 32, parts[2].count == 16 else { return nil }
            traceID = String(parts[1])
            spanID = String(parts[2])
        }

        init(traceID: String, spanID: String) {
            self.traceID = traceID
            self.spanID = spanID
        }
    }

    /// A span that ended.
    struct FinishedSpan: Sendable {
        var name: String
        var kind: SpanKind
        var identity: Identity
        var parentSpanID: String?
        var attributes: SpanAttributes
        var errors: [String]
    }

    private enum IdentityKey: ServiceContextKey {
        typealias Value = Identity
    }

    private let finished = Mutex<[FinishedSpan]>([])

    var finishedSpans: [FinishedSpan] { finished.withLock { $0 } }

    static func randomHex(bytes: Int) -> String {
        (0..<bytes).map { _ in
            let byte = UInt8.random(in: 0...255)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> TestSpan {
        var spanContext = context()
        let parent = spanContext[IdentityKey.self]
        let identity = Identity(traceID: parent?.traceID ?? Self.randomHex(bytes: 16), spanID: Self.randomHex(bytes: 8))
        spanContext[IdentityKey.self] = identity
        return TestSpan(
            name: operationName,
            kind: kind,
            context: spanContext,
            identity: identity,
            parentSpanID: parent?.spanID
        ) { [weak self] span in
            self?.finished.withLock { $0.append(span) }
        }
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(
        _ context: ServiceContext,
        into carrier: inout Carrier,
        using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard let identity = context[IdentityKey.self] else { return }
        injector.inject(identity.traceparent, forKey: "traceparent", into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier,
        into context: inout ServiceContext,
        using extractor: Extract
    ) where Extract.Carrier == Carrier {
        guard let value = extractor.extract(key: "traceparent", from: carrier), let identity = Identity(traceparent: value)
        else { return }
        context[IdentityKey.self] = identity
    }
}

/// A span of the ``TestTracer``.
final class TestSpan: Span {
    private struct State {
        var name: String
        var attributes = SpanAttributes()
        var errors: [String] = []
        var ended = false
    }

    let context: ServiceContext
    private let kind: SpanKind
    private let identity: TestTracer.Identity
    private let parentSpanID: String?
    private let state: Mutex<State>
    private let onEnd: @Sendable (TestTracer.FinishedSpan) -> Void

    init(
        name: String,
        kind: SpanKind,
        context: ServiceContext,
        identity: TestTracer.Identity,
        parentSpanID: String?,
        onEnd: @escaping @Sendable (TestTracer.FinishedSpan) -> Void
    ) {
        self.context = context
        self.kind = kind
        self.identity = identity
        self.parentSpanID = parentSpanID
        self.state = Mutex(State(name: name))
        self.onEnd = onEnd
    }

    var operationName: String {
        get { state.withLock { $0.name } }
        set { state.withLock { $0.name = newValue } }
    }

    var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { $0.attributes = newValue } }
    }

    var isRecording: Bool { state.withLock { !$0.ended } }

    func setStatus(_ status: SpanStatus) {}

    func addEvent(_ event: SpanEvent) {}

    func addLink(_ link: SpanLink) {}

    func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        state.withLock { $0.errors.append(String(describing: type(of: error))) }
    }

    func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let finished = state.withLock { state -> TestTracer.FinishedSpan? in
            guard !state.ended else { return nil }
            state.ended = true
            return TestTracer.FinishedSpan(
                name: state.name,
                kind: kind,
                identity: identity,
                parentSpanID: parentSpanID,
                attributes: state.attributes,
                errors: state.errors
            )
        }
        if let finished { onEnd(finished) }
    }
}
