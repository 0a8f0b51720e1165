import Coordination
import Logging

extension KafkaConsumerCore {
    /// The poll loop, on the consumer's poll thread: before each poll it applies the pause changes the state
    /// machine asks for; when the consumer closes, it leaves the group and finishes the streams.
    func pollLoop(_ client: RDKafkaClient, pollInterval: Duration) {
        while true {
            let fetchingPaused = buffer.keepsFetchingPaused()
            let action = state.withLock { state, _ in state.nextPollLoopAction(bufferIsFull: fetchingPaused) }
            switch action {
            case .poll(let changes):
                if !changes.isEmpty { apply(changes, client) }
                pollLoopHeartbeat.enter(PollLoopStage.polling.rawValue)
                guard let polled = client.consumerPoll(timeout: pollInterval, maxValueBytes: maxValueBytes) else { continue }
                pollLoopHeartbeat.enter(PollLoopStage.delivering.rawValue)
                deliver(polled, client)
            case .leaveGroup:
                pollLoopHeartbeat.enter(PollLoopStage.leavingGroup.rawValue)
                if let failure = client.consumerClose() {
                    report(failure)
                }
                let finishStreams = state.withLock { state, _ in state.leftGroup() }
                if finishStreams { self.finishStreams() }
                return
            case .stop:
                return
            }
        }
    }

    /// Pauses and resumes partitions in librdkafka, and seeks the resumed ones to their positions.
    ///
    /// A resume alone would leave librdkafka (2.0) idle for up to a second: it clears a partition's pause flag
    /// but does not wake the thread that fetches from the partition's leader, which looks again only on its next
    /// I/O or its one-second tick. With every partition paused nothing is in flight, so each pause cost up to a
    /// second without fetching (at 20 ms of Mio latency the worker did a third of the jobs it does with this).
    /// Seeking a partition to its position (one past the last message delivered) starts fetching there at once:
    /// the same offset a resume would fetch from, so nothing is skipped or repeated. Here, on the poll thread,
    /// nothing is polled between reading the position and seeking. A partition with no position yet (nothing
    /// delivered since its assignment) is left to librdkafka, which starts it from the committed offset: its
    /// start offset may still be being looked up, and a seek then is what makes librdkafka rewind it later (see
    /// ``deliver(_:_:)``).
    private func apply(_ changes: KafkaConsumer.StateMachine.PauseChanges, _ client: RDKafkaClient) {
        if !changes.pause.isEmpty {
            pollLoopHeartbeat.enter(PollLoopStage.pausing.rawValue)
            applied(client.pause(changes.pause), paused: true, changes.pause)
        }
        if !changes.resume.isEmpty {
            pollLoopHeartbeat.enter(PollLoopStage.resuming.rawValue)
            if applied(client.resume(changes.resume), paused: false, changes.resume) {
                seek(changes.seeks, client, reason: "resume")
            }
        }
        if let request = changes.completesRequest {
            state.withLock { state, waiters in
                state.pausesApplied(through: request)
                waiters.wakeAll(with: .recheck)
            }
        }
    }

    /// Logs a pause or resume; reports it when it failed. Returns whether it succeeded.
    @discardableResult
    private func applied(_ failure: KafkaError?, paused: Bool, _ partitions: [KafkaTopicPartition]) -> Bool {
        if let failure {
            report(failure)
            return false
        }
        logger.debug(
            paused ? "Kafka partitions paused" : "Kafka partitions resumed",
            metadata: ["kafka.partitions": "\(partitions)", "kafka.buffered": "\(buffer.count)"]
        )
        return true
    }

    private func seek(_ targets: [KafkaTopicPartitionOffset], _ client: RDKafkaClient, reason: String) {
        guard !targets.isEmpty, let failure = client.seek(targets) else { return }
        logger.debug("Kafka seek failed", metadata: ["kafka.seekReason": "\(reason)", "kafka.error": "\(failure)"])
    }

    /// Hands one polled message to the buffer, or reports a consumer error (on the poll thread).
    ///
    /// A message before its partition's position is a repeat librdkafka made on its own: it is dropped and the
    /// partition sought back (see ``PartitionPositions``). librdkafka 2.0 moves a partition back to its
    /// `auto.offset.reset` position in mid-run when a pause, resume or seek changes the partition while a lookup
    /// of its start offset is in flight. The outdated answer schedules another lookup half a second later
    /// ("outdated offset response", in librdkafka's handling of the offset answer), and that lookup's answer moves the
    /// partition back although it is already fetching. A consumer whose buffer fills while a partition is
    /// starting hits it.
    private func deliver(_ polled: RDKafkaConsumerPoll, _ client: RDKafkaClient) {
        let message: KafkaMessage
        switch polled {
        case .error(let error):
            logger.warning("\(error)")
            events.yield(.error(error))
            return
        case .message(let polledMessage):
            message = polledMessage
        }
        let partition = message.topicPartition
        let (verdict, position) = state.withLock { state, _ in
            let position = state.position(of: partition)
            return (state.admit(message.offset, in: partition), position)
        }
        switch verdict {
        case .deliver:
            if let position, message.offset - position > 1 {
                // Counted in `offsetsSkipped`; a gap of one is a transaction marker.
                logger.warning(
                    "Kafka partition skipped offsets the consumer never received: deleted by the broker's retention before they were read, or compacted",
                    metadata: [
                        "kafka.partition": "\(partition)", "kafka.position": "\(position)", "kafka.offset": "\(message.offset)",
                        "kafka.skipped": "\(message.offset - position)",
                    ]
                )
            }
            // A full buffer pauses fetching at the poll loop's next turn, before the next poll.
            buffer.push(message)
        case .seekBack(let position):
            logger.warning(
                "Kafka partition rewound by librdkafka; dropping the repeat and seeking back to the position",
                metadata: ["kafka.partition": "\(partition)", "kafka.offset": "\(message.offset)", "kafka.position": "\(position)"]
            )
            seek([KafkaTopicPartitionOffset(partition, offset: position)], client, reason: "rewind")
        case .acceptRewind(let position):
            logger.warning(
                "Kafka partition rewound again after seeking back \(PartitionPositions.maxSeeksBack) times; accepting the repeats",
                metadata: ["kafka.partition": "\(partition)", "kafka.offset": "\(message.offset)", "kafka.position": "\(position)"]
            )
            buffer.push(message)
        }
    }
}
