/// Each assigned partition's position as the application saw it (one past the last message delivered), and
/// what to do with a message that comes before it.
///
/// librdkafka 2.0 can rewind a partition on its own in mid-run (see ``KafkaConsumer`` and docs/kafka.md): a
/// message before the partition's position is then a repeat. The consumer drops it and seeks the partition back
/// to its position. If seeking back does not stop the repeats (``maxSeeksBack`` times in a row, as when the log
/// was truncated below the position and the seek itself fails), the rewind is accepted: repeats, never a gap.
/// Gaps forward are normal (compaction, transaction markers) and pass. A pure value; the consumer keeps it
/// behind a mutex.
struct PartitionPositions: Sendable {
    /// What to do with a polled message.
    enum Verdict: Equatable, Sendable {
        /// In order: deliver it.
        case deliver
        /// A repeat from a rewind: drop it and seek the partition to this offset (its position).
        case seekBack(to: Int64)
        /// A repeat that seeking back did not prevent: deliver it, and the partition's position moves back to it.
        case acceptRewind(from: Int64)
    }

    private struct Position {
        var next: Int64
        var seeksBack = 0
    }

    /// Seeks back in a row, without a message at or past the position in between, after which a rewind is accepted.
    static let maxSeeksBack = 3

    private var positions: [KafkaTopicPartition: Position] = [:]

    /// Decides about a polled message at `offset` of `partition`, and records it as the last one delivered unless
    /// the verdict is ``Verdict/seekBack(to:)``.
    mutating func admit(_ offset: Int64, in partition: KafkaTopicPartition) -> Verdict {
        guard var position = positions[partition] else {
            positions[partition] = Position(next: offset + 1)
            return .deliver
        }
        defer { positions[partition] = position }
        guard offset < position.next else {
            position = Position(next: offset + 1)
            return .deliver
        }
        if position.seeksBack < Self.maxSeeksBack {
            position.seeksBack += 1
            return .seekBack(to: position.next)
        }
        let from = position.next
        position = Position(next: offset + 1)
        return .acceptRewind(from: from)
    }

    /// One past the last message of `partition` delivered since its assignment; `nil` before the first.
    func position(of partition: KafkaTopicPartition) -> Int64? {
        positions[partition]?.next
    }

    /// Forgets `partitions` (all when `nil`): assigned again, a partition starts wherever the group's commit
    /// says, and its first message sets its position.
    mutating func forget(_ partitions: [KafkaTopicPartition]?) {
        guard let partitions else { return positions.removeAll() }
        for partition in partitions { positions[partition] = nil }
    }
}
