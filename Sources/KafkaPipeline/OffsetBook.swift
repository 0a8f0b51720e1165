import Coordination
import Kafka
import Logging
import Pipeline
import Synchronization

/// Offsets received, finished and committed, shared by the pipeline, the engine's events and revocations.
final class OffsetBook: Sendable {
    private struct State {
        var tracker = OffsetTracker()
        var committed: [PartitionID: Int64] = [:]
        /// Partitions assigned and not revoked: only their messages are taken.
        var open: Set<PartitionID> = []
    }

    private let state = Mutex(State())
    /// Whether a commit is under way: commits run one at a time, in arrival order, so that an older commit never
    /// lands after a newer one.
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
        state.withLock { $0.open.subtract(partitions) }
    }

    func markDone(_ source: JobSource) {
        state.withLock { _ = $0.tracker.markDone(source.offset, in: source.partition) }
    }

    func forget(_ partitions: [PartitionID]) {
        state.withLock { state in
            for partition in partitions {
                state.tracker.forget(partition)
            }
        }
    }

    var lastCommitted: [KafkaTopicPartition: Int64] {
        state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.committed.map { ($0.key.kafka, $0.value) })
        }
    }

    /// Commits, and waits for, the committable offsets that advanced (of `partitions`, or all).
    ///
    /// - Parameter attempts: tries for a retriable failure (a rebalance in progress, a coordinator moving),
    ///   100 ms apart; the periodic commit uses 1 (the next period retries), revocation and shutdown more.
    func commit(
        _ partitions: Set<PartitionID>? = nil,
        with consumer: KafkaConsumer,
        attempts: Int = 1,
        logger: Logger
    ) async {
        for attempt in 1...max(1, attempts) {
            switch await commitOnce(partitions, with: consumer, logger: logger) {
            case .done:
                return
            case .failed(let error):
                guard attempt < attempts, error.isRetriable else {
                    // Not fatal: the offsets stay committable and the next commit carries them.
                    logger.warning("offset commit failed", metadata: ["error": "\(error)", "attempts": "\(attempt)"])
                    return
                }
                try? await clock.sleep(for: .milliseconds(100))
            }
        }
    }

    private enum CommitOutcome {
        case done
        case failed(KafkaError)
    }

    private func commitOnce(_ partitions: Set<PartitionID>?, with consumer: KafkaConsumer, logger: Logger) async -> CommitOutcome {
        await takeCommitTurn()
        defer { releaseCommitTurn() }
        let offsets = state.withLock { state in
            state.tracker.committableOffsets.compactMap { partition, offset -> KafkaTopicPartitionOffset? in
                guard partitions?.contains(partition) ?? true, offset > (state.committed[partition] ?? -1) else { return nil }
                return KafkaTopicPartitionOffset(partition.kafka, offset: offset)
            }
        }
        guard !offsets.isEmpty else { return .done }
        do throws(KafkaError) {
            try await consumer.commit(offsets)
        } catch {
            metrics.committed(success: false)
            return .failed(error)
        }
        metrics.committed(success: true)
        state.withLock { state in
            for offset in offsets {
                let partition = PartitionID(offset.topicPartition)
                state.committed[partition] = max(state.committed[partition] ?? -1, offset.offset)
            }
        }
        logger.debug("offsets committed", metadata: ["kafka.offsets": "\(offsets)"])
        return .done
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
