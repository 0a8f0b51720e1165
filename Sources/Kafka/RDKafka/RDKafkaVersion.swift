import CRdKafka

extension KafkaConfiguration {
    /// The version of the librdkafka library loaded at run time (`rd_kafka_version_str()`), such as `2.0.2`.
    public static var librdkafkaVersion: String {
        String(cString: rd_kafka_version_str())
    }
}
