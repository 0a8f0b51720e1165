import Coordination
import Kafka
import Logging
import Pipeline
import Synchronization

/// Offsets received, finished and committed, shared by the pipeline, the engine's events and revocations.
///
/// Finished marks are stored in the consumer as they advance (`ConsumerFeed`) and librdkafka commits them every
/// commit interval; the book itself commits only the marks of revoked partitions, inside the revocation.
final class OffsetBook: Sendable {
    private struct State {
        var tracker = OffsetTracker()
        var committed: [PartitionID: Int64] = [:]
        /// Partitions assigned and not revoked: only their messages are taken.
        var open: Set<PartitionID> = []
        /// Marks that advanced since they were last taken to be stored in the consumer.
        var unstored: [PartitionID: Int64] = [:]
        /// Marks of lost partitions that were ahead of this member's last commit: where to resume if the group
        /// gives a partition back (``resumeMarks(for:)``).
        var lostMarks: [PartitionID: Int64] = [:]
        /// Since when finished work of an open partition has waited for a commit: set when a mark advances past
        /// the last commit, moved to the time of each successful commit that leaves work uncommitted, cleared when
        /// none is left (``uncommittedAge``).
        var uncommittedSince: Duration?

        /// Whether an open partition's finished mark is ahead of what this member committed.
        var hasUncommittedWork: Bool {
            tracker.committableOffsets.contains { partition, mark in
                open.contains(partition) && mark > (committed[partition] ?? -1)
            }
        }

        /// Clears ``uncommittedSince`` when no finished work waits for a commit any more.
        mutating func clearUncommittedSinceIfDone() {
            if uncommittedSince != nil, !hasUncommittedWork {
                uncommittedSince = nil
            }
        }
    }

    private let state = Mutex(State())
    /// Whether a revocation commit is under way: they run one at a time, in arrival order.
    private let commitTurn = WaitableState<Bool, Bool>(false)
    private let metrics: WorkerMetrics
    private let clock: TimeSource

    init(metrics: WorkerMetrics, clock: TimeSource) {
        self.metrics = metrics
        self.clock = clock
    }

    /// Records a message before it is submitted; `false` means do not submit it: its partition was revoked
    /// (its next owner reads it from the committed offset) or it is already being processed (a re-delivery).
    func received(_ source: JobSource) -> Bool {
        state.withLock { state in
            guard state.open.contains(source.partition) else { return false }
            return state.tracker.received(source.offset, in: source.partition)
        }
    }

    /// Partitions were assigned (called on the poll thread before any of their messages is polled).
    func open(_ partitions: [PartitionID]) {
        state.withLock { $0.open.formUnion(partitions) }
    }

    /// Partitions are being revoked: their messages are no longer taken.
    func close(_ partitions: [PartitionID]) {
        state.withLock { state in
            state.open.subtract(partitions)
            state.clearUncommittedSinceIfDone()
        }
    }

    /// Records a finished job (its result or dead-letter copy acknowledged by Kafka); a committable mark that
    /// advanced waits in the book until ``takeUnstoredMarks()``.
    func markDone(_ source: JobSource) {
        state.withLock { state in
            guard state.tracker.markDone(source.offset, in: source.partition),
                let mark = state.tracker.committableOffsets[source.partition]
            else { return }
            state.unstored[source.partition] = mark
            if state.uncommittedSince == nil, state.open.contains(source.partition),
                mark > (state.committed[source.partition] ?? -1)
            {
                state.uncommittedSince = clock.now()
            }
        }
    }

    /// How long finished work has waited for its commit: since the first mark that advanced after the last
    /// successful commit (a commit leaves the work finished meanwhile, so its time restarts the count). `nil`
    /// when every open partition's mark is committed. While the group rebalances librdkafka commits nothing, so
    /// this grows until the group is stable again; ``ConsumerFeed`` takes no new job while it is over its bound.
    var uncommittedAge: Duration? {
        state.withLock { state in state.uncommittedSince.map { clock.now() - $0 } }
    }

    /// The committable marks (the next offset to read) that advanced since the last call, one per partition:
    /// the feed stores them in the consumer in one call, instead of one librdkafka call per finished job.
    func takeUnstoredMarks() -> [KafkaTopicPartitionOffset] {
        state.withLock { state in
            guard !state.unstored.isEmpty else { return [] }
            defer { state.unstored.removeAll(keepingCapacity: true) }
            return state.unstored.map { KafkaTopicPartitionOffset($0.key.kafka, offset: $0.value) }
        }
    }

    /// Whether the committable mark of every assigned partition has been committed (by this member).
    var marksAreCommitted: Bool {
        state.withLock { !$0.hasUncommittedWork }
    }

    /// The lowest received offset of `partition` whose job is not done (``RunAheadGate`` measures from it);
    /// `nil` when every received job is done, or when the partition is not assigned: the gate then submits its
    /// messages, which ``received(_:)`` refuses, instead of holding them. A message of a revoked partition held
    /// through the revocation would otherwise be submitted at the partition's next assignment, ahead of the
    /// messages the new assignment starts with at the committed offset.
    func lowestUnfinishedOffset(in partition: PartitionID) -> Int64? {
        state.withLock { state in
            guard state.open.contains(partition) else { return nil }
            return state.tracker.lowestUnfinishedOffset(in: partition)
        }
    }

    /// Partitions were lost (the member's generation ended before it could commit): their marks ahead of the
    /// last commit are kept, so that if the group gives a partition back to this member, it resumes after the
    /// work it finished (its results are in Kafka) instead of repeating it from the last commit.
    func keepLostMarks(of partitions: [PartitionID]) {
        state.withLock { state in
            for partition in partitions {
                guard let mark = state.tracker.committableOffsets[partition],
                    mark > (state.committed[partition] ?? -1)
                else { continue }
                state.lostMarks[partition] = mark
            }
        }
    }

    /// The kept marks of lost partitions among `partitions`, now assigned again (each is given once); the
    /// consumer starts a partition there when the group's committed offset is behind it.
    func resumeMarks(for partitions: [PartitionID]) -> [KafkaTopicPartition: Int64] {
        state.withLock { state in
            var marks: [KafkaTopicPartition: Int64] = [:]
            for partition in partitions {
                if let mark = state.lostMarks.removeValue(forKey: partition) {
                    marks[partition.kafka] = mark
                }
            }
            return marks
        }
    }

    func forget(_ partitions: [PartitionID]) {
        state.withLock { state in
            for partition in partitions {
                state.tracker.forget(partition)
                state.unstored[partition] = nil
            }
            state.clearUncommittedSinceIfDone()
        }
    }

    /// One line per partition the book knows: open or closed, the committable mark, the last commit, the lowest
    /// unfinished offset and the jobs received and not done. For diagnostics (a test that waits in vain for a
    /// commit prints it).
    var summary: String {
        state.withLock { state in
            let partitions = Set(state.tracker.partitions).union(state.committed.keys).union(state.open)
            return partitions.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }.map { partition in
                let mark = state.tracker.committableOffset(for: partition).map(String.init) ?? "-"
                let committed = state.committed[partition].map(String.init) ?? "-"
                let lowest = state.tracker.lowestUnfinishedOffset(in: partition).map(String.init) ?? "-"
                return "\(partition): \(state.open.contains(partition) ? "open" : "closed") mark \(mark) committed "
                    + "\(committed) lowest unfinished \(lowest) not done \(state.tracker.pendingCount(in: partition))"
            }.joined(separator: "; ")
        }
    }

    var lastCommitted: [KafkaTopicPartition: Int64] {
        state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.committed.map { ($0.key.kafka, $0.value) })
        }
    }

    /// Records the result of a commit (librdkafka's offset commit callback, for automatic and revocation commits
    /// alike): the metrics, ``lastCommitted`` and ``uncommittedAge``.
    func committed(_ offsets: [KafkaTopicPartitionOffset], failure: KafkaError?) {
        metrics.committed(success: failure == nil)
        state.withLock { state in
            for offset in offsets {
                let partition = PartitionID(offset.topicPartition)
                state.committed[partition] = max(state.committed[partition] ?? -1, offset.offset)
            }
            if !state.hasUncommittedWork {
                state.uncommittedSince = nil
            } else if failure == nil, !offsets.isEmpty {
                // What is still uncommitted finished after this commit's offsets were taken (about now). A partial
                // failure keeps the older time: the failed partitions' work is as old as it was.
                state.uncommittedSince = clock.now()
            }
        }
    }

    /// The committable marks of `partitions` that are ahead of the last commit.
    private func marks(of partitions: Set<PartitionID>) -> [KafkaTopicPartitionOffset] {
        state.withLock { state in
            state.tracker.committableOffsets.compactMap { partition, offset -> KafkaTopicPartitionOffset? in
                guard partitions.contains(partition), offset > (state.committed[partition] ?? -1) else { return nil }
                return KafkaTopicPartitionOffset(partition.kafka, offset: offset)
            }
        }
    }

    /// The committable marks of the open partitions that are ahead of the last commit.
    func marksAheadOfCommit() -> [KafkaTopicPartitionOffset] {
        marks(of: state.withLock { $0.open })
    }

    /// Commits the marks of revoked partitions synchronously: call it only inside the revocation handler (not on
    /// `lost`), where librdkafka cannot be rejoining the group, so the commit carries the current generation.
    /// Any other explicit commit could go out behind this member's own JoinGroup, be answered
    /// ILLEGAL_GENERATION, and make librdkafka 2.0.2 drop the member's assignment (docs/kafka.md).
    ///
    /// The marks are stored first, so that librdkafka's own commit of the removed partitions' stored offsets is
    /// a second chance.
    ///
    /// - Parameter attempts: tries for a retriable failure, 100 ms apart.
    func commitRevoked(_ partitions: Set<PartitionID>, with consumer: KafkaConsumer, attempts: Int, logger: Logger) async {
        await takeCommitTurn()
        defer { releaseCommitTurn() }
        let offsets = marks(of: partitions)
        guard !offsets.isEmpty else { return }
        do throws(KafkaError) {
            try consumer.storeOffsets(offsets)
        } catch {
            logger.warning("offsets of revoked partitions could not be stored", metadata: ["error": "\(error)"])
        }
        for attempt in 1...max(1, attempts) {
            do throws(KafkaError) {
                try await consumer.commit(offsets)
                logger.debug("offsets of revoked partitions committed", metadata: ["kafka.offsets": "\(offsets)"])
                return
            } catch {
                guard attempt < attempts, error.isRetriable else {
                    logger.warning(
                        "offset commit of revoked partitions failed; their next owner repeats the work since the last commit",
                        metadata: ["error": "\(error)", "attempts": "\(attempt)"]
                    )
                    return
                }
                try? await clock.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Waits for the commit turn, in arrival order. A cancelled task still waits (a commit at shutdown must land
    /// after the ones before it): it checks again after yielding, until the turn is free.
    private func takeCommitTurn() async {
        while true {
            let taken = await commitTurn.wait(cancelled: false) { busy in
                if busy { return nil }
                busy = true
                return true
            }
            if taken { return }
            await Task.yield()
        }
    }

    /// Hands the turn to the oldest waiting commit, or frees it.
    private func releaseCommitTurn() {
        commitTurn.withLock { busy, waiters in
            if !waiters.wakeFirst(with: true) {
                busy = false
            }
        }
    }
}
