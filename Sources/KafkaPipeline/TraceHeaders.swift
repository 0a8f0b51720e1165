import Tracing

/// Writes trace-context headers as string pairs (then turned into Kafka headers).
struct StringPairInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(String, String)]) {
        carrier.removeAll { $0.0 == key }
        carrier.append((key, value))
    }
}
