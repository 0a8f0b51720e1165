/// Something that happened to a consumer's group membership or commits.
public enum KafkaConsumerEvent: Sendable, Hashable {
    /// These partitions were assigned to this member (incrementally, with `cooperative-sticky`).
    case assigned([KafkaTopicPartition])
    /// These partitions were taken away. `lost` means the session expired: they already belong to another
    /// member and no commit for them can succeed.
    case revoked([KafkaTopicPartition], lost: Bool)
    /// A commit failed (an automatic one, or the application's).
    case commitFailed(KafkaError)
    /// librdkafka reported an error while polling (most are transient; the client recovers by itself).
    case error(KafkaError)
}
