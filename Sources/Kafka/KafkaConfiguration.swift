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

    /// `properties` with `defaults` filled in where the user set nothing.
    func withDefaults(_ defaults: [String: String]) -> [String: String] {
        properties.merging(defaults) { user, _ in user }
    }
}
