import CRdKafka

/// Builds librdkafka configuration objects from property strings.
enum RDKafkaConfig {
    /// Creates an `rd_kafka_conf_t` holding `properties`.
    ///
    /// Every property is validated by librdkafka itself, so an unknown name or a bad value fails here with
    /// an error that names the property and carries librdkafka's explanation.
    static func make(_ properties: [String: String]) throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(code: .configuration, message: "rd_kafka_conf_new returned NULL")
        }
        // Sorted, so that the first error reported for a given configuration is always the same one.
        for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
            if let failure = set(conf, name, value) {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(
                    code: .configuration,
                    message: "invalid Kafka property '\(name)': \(failure)"
                )
            }
        }
        return conf
    }

    /// Sets one property; returns librdkafka's message when it refuses it.
    static func set(_ conf: OpaquePointer, _ name: String, _ value: String) -> String? {
        let capacity = 512
        var buffer = [CChar](repeating: 0, count: capacity)
        let result = rd_kafka_conf_set(conf, name, value, &buffer, capacity)
        guard result != RD_KAFKA_CONF_OK else { return nil }
        let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return message.isEmpty ? "rejected by librdkafka" : message
    }
}
