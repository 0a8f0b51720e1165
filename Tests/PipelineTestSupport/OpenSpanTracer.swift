import Synchronization
package import Tracing

/// A tracer that remembers the spans started and not yet ended, for a test that waits in vain: a job's handling
/// opens a span around each await that can take long (the token lookup, the Mio call, a refresh), so the spans
/// still open name where the stuck jobs wait, and for how long. It exports nothing and propagates nothing.
package final class OpenSpanTracer: Tracer {
    private struct Open {
        var name: String
        var started: ContinuousClock.Instant
    }

    private let open = Mutex<(next: Int, spans: [Int: Open])>((0, [:]))

    package init() {}

    /// The spans open for at least `age`, by name: how many and the oldest's age ("mio.getContext: 12, oldest
    /// 95.2 s"), or "none".
    package func summary(openFor age: Duration = .seconds(5)) -> String {
        let now = ContinuousClock.now
        let old = open.withLock { state in state.spans.values.filter { now - $0.started >= age } }
        guard !old.isEmpty else { return "none" }
        let byName = Dictionary(grouping: old, by: \.name)
        return byName.map { name, spans in
            let oldest = spans.map { now - $0.started }.max() ?? .zero
            let seconds = (Double(oldest.components.seconds) * 10 + Double(oldest.components.attoseconds) / 1e17).rounded() / 10
            return "\(name): \(spans.count), oldest \(seconds) s"
        }.sorted().joined(separator: "; ")
    }

    package func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> OpenSpan {
        let id = open.withLock { state in
            state.next += 1
            state.spans[state.next] = Open(name: operationName, started: .now)
            return state.next
        }
        return OpenSpan(name: operationName, context: context()) { [weak self] in
            self?.open.withLock { _ = $0.spans.removeValue(forKey: id) }
        }
    }

    package func forceFlush() {}

    package func inject<Carrier, Inject: Injector>(
        _ context: ServiceContext,
        into carrier: inout Carrier,
        using injector: Inject
    ) where Inject.Carrier == Carrier {}

    package func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier,
        into context: inout ServiceContext,
        using extractor: Extract
    ) where Extract.Carrier == Carrier {}
}

/// A span of the ``OpenSpanTracer``: it records nothing but its end.
package final class OpenSpan: Span {
    package let context: ServiceContext
    private let name: Mutex<String>
    private let ended = Atomic<Bool>(false)
    private let onEnd: @Sendable () -> Void

    init(name: String, context: ServiceContext, onEnd: @escaping @Sendable () -> Void) {
        self.name = Mutex(name)
        self.context = context
        self.onEnd = onEnd
    }

    package var operationName: String {
        get { name.withLock { $0 } }
        set { name.withLock { $0 = newValue } }
    }

    package var attributes: SpanAttributes {
        get { SpanAttributes() }
        set {}
    }

    package var isRecording: Bool { !ended.load(ordering: .relaxed) }

    package func setStatus(_ status: SpanStatus) {}

    package func addEvent(_ event: SpanEvent) {}

    package func addLink(_ link: SpanLink) {}

    package func recordError<Instant: TracerInstant>(
        _ error: any Error,
        attributes: SpanAttributes,
        at instant: @autoclosure () -> Instant
    ) {}

    package func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        guard !ended.exchange(true, ordering: .relaxed) else { return }
        onEnd()
    }
}
