import Coordination
import Logging

/// The part of a consumer that librdkafka's callbacks reach (on the poll thread) and the application reaches
/// (from any task): the ``KafkaConsumer/StateMachine`` under its one lock, the message buffer and the events.
///
/// It holds no librdkafka handle: the client owns this object's callbacks (through the handle's opaque
/// pointer), and every C call goes through the ``RDKafkaClient`` the caller passes or the ``RDKafkaRebalance``
/// librdkafka hands over. The waiters on the state are the application's `pause`/`resume` calls, woken when
/// the poll loop has applied them or the consumer closes.
final class KafkaConsumerCore: Sendable {
    /// What wakes an application's `pause`/`resume` call waiting on the state.
    enum PauseWake: Sendable {
        /// Its request was applied (or the task was cancelled): return.
        case done
        /// The poll loop applied requests or the consumer is closing: look at the state again.
        case recheck
    }

    let state = WaitableState<KafkaConsumer.StateMachine, PauseWake>(KafkaConsumer.StateMachine())
    let buffer: KafkaMessageBuffer
    /// Values larger than this are not copied out of librdkafka's message.
    let maxValueBytes: Int
    let logger: Logger
    let revocationTimeout: Duration
    let timeSource: TimeSource
    let onAssign: KafkaConsumer.AssignmentHandler?
    let onRevoke: KafkaConsumer.RevocationHandler?
    let onStatistics: (@Sendable (KafkaStatistics) -> Void)?
    let onCommit: KafkaConsumer.CommitHandler?
    let events: AsyncStream<KafkaConsumerEvent>.Continuation
    /// Where the poll loop is, for the diagnostics of a stall (``KafkaConsumer/pollLoopSummary``).
    let pollLoopHeartbeat = LoopHeartbeat(stages: PollLoopStage.names)

    /// The poll loop's stages, as ``pollLoopHeartbeat`` names them.
    enum PollLoopStage: Int {
        case polling, pausing, resuming, delivering, rebalancing, leavingGroup

        static let names = [
            "polling", "pausing partitions", "resuming partitions", "delivering a message",
            "in the rebalance callback", "leaving the group",
        ]
    }

    init(
        logger: Logger,
        options: KafkaConsumer.Options,
        onAssign: KafkaConsumer.AssignmentHandler?,
        onRevoke: KafkaConsumer.RevocationHandler?,
        events: AsyncStream<KafkaConsumerEvent>.Continuation
    ) {
        self.buffer = KafkaMessageBuffer(capacity: options.maxBufferedMessages, maxBytes: options.maxBufferedBytes)
        self.maxValueBytes = options.maxValueBytes
        self.logger = logger
        self.revocationTimeout = options.revocationTimeout
        self.timeSource = options.timeSource
        self.onAssign = onAssign
        self.onRevoke = onRevoke
        self.onStatistics = options.statisticsHandler
        self.onCommit = options.commitHandler
        self.events = events
    }

    /// The callbacks librdkafka calls on the poll thread.
    func makeCallbacks() -> RDKafkaCallbacks {
        var statistics: (@Sendable (UnsafeRawBufferPointer) -> Void)?
        if onStatistics != nil {
            statistics = { [self] json in self.statistics(json) }
        }
        return RDKafkaCallbacks(
            logger: logger,
            rebalance: { [self] rebalance in self.rebalance(rebalance) },
            committed: { [self] offsets, failure in self.committed(offsets, failure: failure) },
            statistics: statistics
        )
    }

    /// Reads the state machine.
    func read<Value>(_ body: (KafkaConsumer.StateMachine) -> Value) -> Value {
        state.withLock { state, _ in body(state) }
    }

    /// Ends ``KafkaConsumer/messages`` and ``KafkaConsumer/events``, and lets waiting `pause`/`resume` calls return.
    func finishStreams() {
        buffer.finish()
        events.finish()
        state.withLock { _, waiters in
            waiters.wakeAll(with: .recheck)
            return
        }
    }

    /// Records the application's pause (or resume) of `partitions` and waits until the poll loop applied it.
    func requestPause(_ partitions: [KafkaTopicPartition], paused: Bool, client: RDKafkaClient) async {
        guard let number = recordPause(partitions, paused: paused, client: client) else { return }
        while await state.wait(cancelled: .done, { state in state.isPauseApplied(number) ? .done : nil }) == .recheck {}
    }

    /// Records the application's pause (or resume) of `partitions` and wakes the poll loop to apply it; returns
    /// the request's number to wait for, or `nil` when there is nothing to wait for.
    @discardableResult
    func recordPause(_ partitions: [KafkaTopicPartition], paused: Bool, client: RDKafkaClient) -> UInt64? {
        let request = state.withLock { state, _ in state.requestPause(partitions, paused: paused) }
        guard case .waitForPollLoop(let number) = request else { return nil }
        client.wakeConsumerPoll()
        return number
    }

    func report(_ error: KafkaError, asCommit: Bool = false) {
        logger.error("\(error)")
        events.yield(asCommit ? .commitFailed(error) : .error(error))
    }

    /// librdkafka's offset commit callback (on the poll thread): every commit's result, automatic or not.
    private func committed(_ offsets: [KafkaTopicPartitionOffset], failure: KafkaError?) {
        if let failure {
            // A commit refused during a rebalance is no loss: the offsets stay stored (or committable) and the
            // next commit, in the new generation, carries those of the partitions still assigned.
            if failure.isRetriable {
                logger.info("offset commit deferred: \(failure)")
            } else {
                logger.warning("\(failure)")
            }
            events.yield(.commitFailed(failure))
        } else if !offsets.isEmpty {
            logger.debug("offsets committed", metadata: ["kafka.offsets": "\(offsets)"])
        }
        onCommit?(offsets, failure)
    }

    /// librdkafka's statistics callback (on the poll thread).
    private func statistics(_ json: UnsafeRawBufferPointer) {
        guard let onStatistics else { return }
        guard let statistics = KafkaStatistics.parse(json) else {
            logger.debug("librdkafka statistics could not be parsed")
            return
        }
        onStatistics(statistics)
    }
}
