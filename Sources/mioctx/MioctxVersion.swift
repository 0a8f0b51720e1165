import Kafka

/// mioctx's version, printed by `mioctx --version` with the librdkafka it runs on.
enum MioctxVersion {
    /// The release; raised with each tagged release.
    static let release = "0.9.0"

    /// `0.9.0 (librdkafka 2.0.2)`.
    static var description: String {
        "\(release) (librdkafka \(KafkaConfiguration.librdkafkaVersion))"
    }
}
