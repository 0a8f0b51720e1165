import Coordination
import Dispatch
import Logging
import Synchronization

extension KafkaConsumerCore {
    /// librdkafka's rebalance callback (on the poll thread, inside a poll or the final close).
    ///
    /// An assignment calls the application's assignment handler first, so it sees the partitions before any of
    /// their messages. A revocation first drops the buffered messages of the revoked partitions and publishes
    /// the event, then runs the application's revocation handler and blocks until it returns or
    /// ``revocationTimeout`` passes, and only then lets librdkafka release the partitions.
    func rebalance(_ rebalance: RDKafkaRebalance) {
        pollLoopHeartbeat.enter(PollLoopStage.rebalancing.rawValue)
        defer { pollLoopHeartbeat.enter(PollLoopStage.polling.rawValue) }
        let partitions = rebalance.partitions
        switch rebalance.kind {
        case .assign:
            let finished = onAssign?(partitions) ?? [:]
            let starts = startOffsets(finished, rebalance: rebalance)
            rebalance.setStartOffsets(starts)
            applyReportingFailure(rebalance)
            if !starts.isEmpty {
                if let failure = rebalance.storeOffsets(starts) {
                    report(failure)
                }
                logger.info(
                    "Kafka partitions resume after the work this member finished before it lost them",
                    metadata: ["kafka.offsets": "\(starts.sorted { $0.key < $1.key }.map { "\($0.key)@\($0.value)" })"]
                )
            }
            state.withLock { state, _ in state.assigned(partitions, incrementally: rebalance.isCooperative) }
            logger.info("Kafka partitions assigned", metadata: ["kafka.partitions": "\(partitions.sorted())"])
            events.yield(.assigned(partitions))
        case .revoke(let lost):
            let dropped = buffer.purge(Set(partitions))
            logger.info(
                "Kafka partitions revoked",
                metadata: ["kafka.partitions": "\(partitions.sorted())", "kafka.lost": "\(lost)", "kafka.dropped": "\(dropped)"]
            )
            events.yield(.revoked(partitions, lost: lost))
            waitForRevocationHandler(partitions, lost: lost)
            // librdkafka keeps a pause across the unassign (librdkafka#1849): a partition paused by the full buffer
            // would come back paused at its next assignment, while the state machine forgets the pause here.
            let paused = state.withLock { state, _ in state.pausedInLibrary.intersection(partitions) }
            if !paused.isEmpty, let failure = rebalance.resume(paused.sorted()) {
                report(failure)
            }
            applyReportingFailure(rebalance)
            state.withLock { state, _ in state.revoked(partitions) }
        case .failed(let error):
            report(error)
            applyReportingFailure(rebalance)
            state.withLock { state, _ in state.rebalanceFailed() }
        }
    }

    /// The offsets of `finished` that are ahead of the group's committed offsets: a peer may have taken the
    /// partitions over and committed further, and starting behind its commit would repeat its work. When the
    /// coordinator does not answer in time, none (the partitions start at the committed offsets, as usual).
    private func startOffsets(
        _ finished: [KafkaTopicPartition: Int64],
        rebalance: RDKafkaRebalance
    ) -> [KafkaTopicPartition: Int64] {
        guard !finished.isEmpty else { return [:] }
        switch rebalance.committedOffsets(for: Array(finished.keys), timeout: Self.committedLookupTimeout) {
        case .success(let committed):
            return finished.filter { partition, offset in offset > (committed[partition] ?? -1) }
        case .failure(let error):
            logger.warning(
                "could not read the committed offsets of reassigned partitions; they start at the committed offsets",
                metadata: ["error": "\(error)"]
            )
            return [:]
        }
    }

    /// How long an assignment waits for the coordinator's committed offsets of partitions it resumes.
    static var committedLookupTimeout: Duration { .seconds(5) }

    private func applyReportingFailure(_ rebalance: RDKafkaRebalance) {
        if let failure = rebalance.apply() {
            report(failure)
        }
    }

    /// Runs the application's handler and blocks this (poll) thread until it returns or the bound passes on the
    /// consumer's time source; a handler that overruns keeps running, but the partitions are released.
    private func waitForRevocationHandler(_ partitions: [KafkaTopicPartition], lost: Bool) {
        guard let onRevoke else { return }
        let race = RevocationRace()
        Task {
            await onRevoke(partitions, lost)
            race.finish(.handlerReturned)
        }
        let timeSource = self.timeSource
        let timeout = revocationTimeout
        let timer = Task {
            do {
                try await timeSource.sleep(for: timeout)
                race.finish(.timedOut)
            } catch {
                // Cancelled: the handler returned first.
            }
        }
        let outcome = race.wait()
        timer.cancel()
        if outcome == .timedOut {
            logger.warning(
                "revocation handler did not finish in time; releasing the partitions anyway",
                metadata: ["kafka.partitions": "\(partitions.sorted())", "kafka.revocationTimeout": "\(revocationTimeout)"]
            )
        }
    }
}

/// The revocation handler against its time limit: the first to finish wins, and the blocked poll thread wakes.
///
/// The poll thread is a dedicated thread inside librdkafka's rebalance callback, so it blocks on a semaphore
/// rather than awaiting.
private final class RevocationRace: Sendable {
    enum Outcome: UInt8, Sendable {
        case pending
        case handlerReturned
        case timedOut
    }

    private let outcome = Atomic<UInt8>(Outcome.pending.rawValue)
    private let done = DispatchSemaphore(value: 0)

    /// Records `result` and wakes the waiting thread, unless the other side finished first.
    func finish(_ result: Outcome) {
        let (won, _) = outcome.compareExchange(
            expected: Outcome.pending.rawValue,
            desired: result.rawValue,
            ordering: .acquiringAndReleasing
        )
        if won { done.signal() }
    }

    /// Blocks until one side finished; returns which.
    func wait() -> Outcome {
        done.wait()
        return Outcome(rawValue: outcome.load(ordering: .acquiring)) ?? .pending
    }
}
