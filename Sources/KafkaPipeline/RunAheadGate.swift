import Kafka
import Pipeline
import Synchronization

/// Bounds how far each partition's work runs ahead of its committable mark.
///
/// Jobs finish out of order, and only the contiguous mark is committed: a job that takes long (retries, a slow
/// user) holds its partition's mark while later jobs of the partition finish and publish. Everything past the
/// mark is repeated after a crash, so without a bound one stuck job makes the repeats grow with the throughput.
/// The gate takes a message only while its offset is less than ``limit`` past the lowest unfinished offset of
/// its partition. A message beyond it is held, in order with the later messages of its partition, and the
/// partition is paused in the consumer (the others keep flowing); ``release(submit:)`` takes held messages again
/// as the mark moves, and resumes the partitions that have none held any more.
///
/// The gate asks the consumer to pause and resume under its own lock (``KafkaConsumer/requestPause(_:paused:)``
/// records a request without waiting), so the consumer gets the requests in the order the gate decided them. When
/// the feed paused a partition after the lock, a release on the storing task could resume it in between; the late
/// pause then applied last and kept a partition with nothing held paused for good: its work stopped and its
/// commits with it, while the others finished (the stall of `RebalanceCommitTests` under a loaded suite).
///
/// Held messages are not yet recorded in the ``OffsetBook``, so the mark never passes them: after a crash or a
/// revocation their partition's next owner reads them from the committed offset.
final class RunAheadGate: Sendable {
    /// What became of a message.
    enum Admission: Sendable, Equatable {
        /// The message was submitted (or refused by the book, such as one of a revoked partition).
        case submitted
        /// The message is held; `paused` when it is the first held of its partition, which the gate paused.
        case held(paused: Bool)
    }

    /// Pauses (`true`) or resumes partitions in the consumer without waiting: called under the gate's lock.
    typealias PauseRequester = @Sendable (_ partitions: [KafkaTopicPartition], _ paused: Bool) -> Void

    private struct State {
        var held: [PartitionID: [KafkaMessage]] = [:]
        /// Partitions the gate asked the consumer to pause and has not resumed.
        var paused: Set<PartitionID> = []
    }

    /// The most offsets a message may be past its partition's lowest unfinished offset.
    let limit: Int
    private let book: OffsetBook
    private let requestPause: PauseRequester
    private let state = Mutex(State())

    /// - Parameters:
    ///   - limit: the most offsets past the mark (at least 1).
    ///   - book: where the lowest unfinished offset of each partition is read.
    ///   - requestPause: records a pause or resume in the consumer without waiting (it runs under the gate's lock).
    init(limit: Int, book: OffsetBook, requestPause: @escaping PauseRequester) {
        self.limit = max(1, limit)
        self.book = book
        self.requestPause = requestPause
    }

    /// Submits `message` through `submit` when its partition is within the limit and has nothing held, or else
    /// holds it and pauses its partition. `submit` runs under the gate's lock, so a partition's messages reach it
    /// in their order.
    func admit(_ message: KafkaMessage, submit: (KafkaMessage) -> Void) -> Admission {
        let partition = PartitionID(topic: message.topic, partition: message.partition)
        return state.withLock { state in
            if state.held[partition] != nil {
                state.held[partition]!.append(message)
                return .held(paused: false)
            }
            guard isAhead(message.offset, in: partition) else {
                submit(message)
                return .submitted
            }
            state.held[partition] = [message]
            state.paused.insert(partition)
            requestPause([partition.kafka], true)
            return .held(paused: true)
        }
    }

    /// Submits the held messages that are now within the limit, in order, and resumes the partitions whose held
    /// messages were all taken; returns those partitions.
    @discardableResult
    func release(submit: (KafkaMessage) -> Void) -> [KafkaTopicPartition] {
        state.withLock { state in
            var resumable: [KafkaTopicPartition] = []
            for partition in Array(state.held.keys) {
                let messages = state.held[partition] ?? []
                // Checked before each one: a submitted message is unfinished and may become the lowest.
                var taken = 0
                while taken < messages.count, !isAhead(messages[taken].offset, in: partition) {
                    submit(messages[taken])
                    taken += 1
                }
                state.held[partition]!.removeFirst(taken)
                if state.held[partition]?.isEmpty == true {
                    state.held[partition] = nil
                }
            }
            // Also those whose held messages a revocation dropped: a pause request that reached the consumer
            // after the revocation would otherwise keep the partition paused at its next assignment.
            for partition in state.paused where state.held[partition] == nil {
                state.paused.remove(partition)
                resumable.append(partition.kafka)
            }
            if !resumable.isEmpty {
                requestPause(resumable, false)
            }
            return resumable
        }
    }

    /// Drops the held messages of revoked partitions; the next ``release(submit:)`` resumes them.
    func forget(_ partitions: [PartitionID]) {
        state.withLock { state in
            for partition in partitions {
                state.held[partition] = nil
            }
        }
    }

    /// The held messages by partition and the partitions the gate keeps paused, for diagnostics.
    var summary: String {
        state.withLock { state in
            let held = state.held.filter { !$0.value.isEmpty }.map { "\($0.key): \($0.value.count)" }.sorted()
            return "held [\(held.joined(separator: ", "))], paused \(state.paused.map { "\($0)" }.sorted())"
        }
    }

    /// How many messages are held, over all partitions.
    var heldCount: Int {
        state.withLock { state in state.held.values.reduce(0) { $0 + $1.count } }
    }

    private func isAhead(_ offset: Int64, in partition: PartitionID) -> Bool {
        guard let lowest = book.lowestUnfinishedOffset(in: partition) else { return false }
        return offset - lowest >= Int64(limit)
    }
}
