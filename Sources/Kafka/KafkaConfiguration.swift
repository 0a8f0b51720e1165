#if canImport(Glibc)
import Glibc
#endif

/// librdkafka configuration: property names and values exactly as librdkafka documents them.
///
/// Every property is passed through unchanged, so SASL, SSL and tuning settings work as they do in kcat or
/// confluent-kafka. librdkafka validates each one when a client is created; an unknown name or a bad value
/// throws a ``KafkaError`` with code ``KafkaError/Code/configuration`` that names the property.
public struct KafkaConfiguration: Sendable, Hashable {
    /// The properties, by librdkafka name (for example `bootstrap.servers`, `security.protocol`).
    public var properties: [String: String]

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - bootstrapServers: the `bootstrap.servers` list (`host:port,host:port`).
    ///   - properties: any other librdkafka properties; they win over `bootstrapServers` when they set it too.
    public init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.properties = ["bootstrap.servers": bootstrapServers].merging(properties) { _, new in new }
    }

    /// Reads or writes one property.
    public subscript(_ name: String) -> String? {
        get { properties[name] }
        set { properties[name] = newValue }
    }

    /// librdkafka defaults of every client mioctx creates, unless the configuration overrides them.
    ///
    /// `reconnect.backoff.max.ms`: librdkafka doubles the wait between attempts to reach a broker that went away,
    /// up to 10 s by default, so a client could stay idle for up to 10 s after a broker restart that took 3. With
    /// 1 s (the Java client's default) it is back within about a second, for one connection attempt per second
    /// per broker while the broker is down.
    ///
    /// `client.id`: `mioctx-` and the host name (a pod's name in Kubernetes), so that a broker's logs, quotas and
    /// consumer-group listings tell the replicas apart instead of showing librdkafka's `rdkafka` for all.
    static let clientDefaults: [String: String] = [
        "reconnect.backoff.max.ms": "1000",
        "client.id": defaultClientID,
    ]

    /// `mioctx-<host name>`, or `mioctx` when the host has no name.
    public static let defaultClientID: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "mioctx" }
        let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return host.isEmpty ? "mioctx" : "mioctx-\(host)"
    }()

    /// `properties` with `defaults`, then ``clientDefaults``, filled in where the user set nothing.
    func withDefaults(_ defaults: [String: String]) -> [String: String] {
        properties.merging(defaults) { user, _ in user }.merging(Self.clientDefaults) { set, _ in set }
    }
}
