extension KafkaConsumer {
    /// Everything a consumer knows about itself: where it is in its life, its group membership, its assignment,
    /// which partitions are paused and why, and each partition's position.
    ///
    /// A pure state machine (the nio pattern, as `JobScheduler`): its owner keeps it under one lock, calls a
    /// mutating method and carries out the returned action after releasing the lock. It never calls librdkafka,
    /// never awaits and never calls out.
    ///
    /// Life: ``Lifecycle/idle`` until ``KafkaConsumer/run()`` subscribes, ``Lifecycle/running`` while the poll
    /// loop polls, ``Lifecycle/closing`` from ``KafkaConsumer/close()`` until the poll loop has left the group,
    /// then ``Lifecycle/finished`` for good (a consumer closed before it ran goes there at once).
    ///
    /// Every librdkafka call that changes what is fetched (pause, resume, seek, assign) is made by the poll
    /// thread, as the action of ``nextPollLoopAction(bufferIsFull:)`` or inside a rebalance callback. So they
    /// never run on two threads at once, and a partition's position, read here, is exact when it is sought to.
    /// The application's ``requestPause(_:paused:)`` only records what it wants; the poll loop applies it and
    /// ``pausesApplied(through:)`` lets the application's waiting call return.
    struct StateMachine: Sendable {
        /// Where the consumer is in its life.
        enum Lifecycle: Sendable, Hashable {
            /// Created; not subscribed yet.
            case idle
            /// Subscribed; the poll loop is polling.
            case running
            /// Close was requested while running; the poll loop is leaving the group.
            case closing
            /// Left the group or closed before running; the streams are finished. Final.
            case finished
        }

        /// What ``KafkaConsumer/run()`` does.
        enum RunAction: Sendable, Hashable {
            /// Subscribe and start the poll loop.
            case subscribe
            /// Return at once: the consumer was closed already, or is running elsewhere.
            case returnAtOnce
        }

        /// What ``KafkaConsumer/close()`` does.
        enum CloseAction: Sendable, Hashable {
            /// Wake the poll loop so it leaves the group.
            case wakePollLoop
            /// Finish the streams: the consumer never ran, there is no group to leave.
            case finishStreams
            /// Nothing: already closing or finished.
            case nothing
        }

        /// Changes of librdkafka's paused partitions, for the poll thread to make.
        struct PauseChanges: Sendable, Hashable {
            /// Partitions to pause.
            var pause: [KafkaTopicPartition] = []
            /// Partitions to resume.
            var resume: [KafkaTopicPartition] = []
            /// Resumed partitions to seek to their positions, so that librdkafka fetches them at once (see
            /// docs/kafka.md); a resumed partition without a position is left to librdkafka.
            var seeks: [KafkaTopicPartitionOffset] = []
            /// The application's pause request these changes complete, to report with ``pausesApplied(through:)``
            /// once they are made.
            var completesRequest: UInt64?

            var isEmpty: Bool { pause.isEmpty && resume.isEmpty && completesRequest == nil }
        }

        /// What the poll loop does next.
        enum PollLoopAction: Sendable, Hashable {
            /// Make these changes (if any), then poll once.
            case poll(PauseChanges)
            /// Leave the group (the final revocation runs inside), then report ``leftGroup()``.
            case leaveGroup
            /// Stop without leaving: the consumer is not running.
            case stop
        }

        /// What the application's pause or resume waits for.
        enum PauseRequest: Sendable, Hashable {
            /// Until ``isPauseApplied(_:)`` says this request was applied by the poll loop.
            case waitForPollLoop(UInt64)
            /// Nothing: recorded for when the consumer runs, or ignored because it is closing or finished.
            case nothing
        }

        private(set) var lifecycle = Lifecycle.idle
        /// Whether the consumer received an assignment (possibly empty) and has not left the group.
        private(set) var hasJoinedGroup = false
        /// The partitions assigned to this member.
        private(set) var assignment: Set<KafkaTopicPartition> = []
        /// The partitions librdkafka has paused (by the application, or all of them while the buffer is full).
        private(set) var pausedInLibrary: Set<KafkaTopicPartition> = []
        /// How many times a rewind by librdkafka was undone (see ``admit(_:in:)``).
        private(set) var rewindsUndone = 0
        /// How many offsets the consumer jumped over in gaps of more than one offset after a partition's position
        /// (see ``admit(_:in:)``).
        private(set) var offsetsSkipped: Int64 = 0
        private var pausedByApplication: Set<KafkaTopicPartition> = []
        private var positions = PartitionPositions()
        /// The application's pause requests: the last one made and the last one the poll loop applied.
        private var lastPauseRequest: UInt64 = 0
        private var lastPauseApplied: UInt64 = 0

        /// A consumer that has not run.
        init() {}

        // MARK: Life

        /// ``KafkaConsumer/run()`` starts.
        mutating func run() -> RunAction {
            guard lifecycle == .idle else { return .returnAtOnce }
            lifecycle = .running
            return .subscribe
        }

        /// The subscription was refused: the consumer is finished.
        ///
        /// - Returns: whether the streams still need finishing.
        mutating func subscriptionFailed() -> Bool {
            finish()
        }

        /// ``KafkaConsumer/close()`` was called.
        mutating func close() -> CloseAction {
            switch lifecycle {
            case .idle:
                lifecycle = .finished
                return .finishStreams
            case .running:
                lifecycle = .closing
                return .wakePollLoop
            case .closing, .finished:
                return .nothing
            }
        }

        /// The poll loop left the group (librdkafka's consumer close returned).
        ///
        /// - Returns: whether the streams still need finishing.
        mutating func leftGroup() -> Bool {
            finish()
        }

        private mutating func finish() -> Bool {
            guard lifecycle != .finished else { return false }
            lifecycle = .finished
            hasJoinedGroup = false
            return true
        }

        // MARK: Polling

        /// Before each poll: what to do, given whether the message buffer wants fetching paused.
        ///
        /// While running, librdkafka's paused partitions are made what they should be: every assigned partition
        /// while the buffer is full, otherwise those the application paused.
        mutating func nextPollLoopAction(bufferIsFull: Bool) -> PollLoopAction {
            switch lifecycle {
            case .running:
                let wanted = bufferIsFull ? assignment : pausedByApplication.intersection(assignment)
                var changes = PauseChanges()
                changes.completesRequest = lastPauseRequest > lastPauseApplied ? lastPauseRequest : nil
                guard wanted != pausedInLibrary else { return .poll(changes) }
                changes.pause = wanted.subtracting(pausedInLibrary).sorted()
                changes.resume = pausedInLibrary.subtracting(wanted).sorted()
                changes.seeks = changes.resume.compactMap { partition in
                    positions.position(of: partition).map { KafkaTopicPartitionOffset(partition, offset: $0) }
                }
                pausedInLibrary = wanted
                return .poll(changes)
            case .closing:
                return .leaveGroup
            case .idle, .finished:
                return .stop
            }
        }

        /// The poll loop made the changes that complete the application's request `request`.
        mutating func pausesApplied(through request: UInt64) {
            lastPauseApplied = max(lastPauseApplied, request)
        }

        /// Decides about a polled message at `offset` of `partition` (see ``PartitionPositions``); a repeat that
        /// is dropped counts in ``rewindsUndone``. A message delivered more than one offset past its partition's
        /// position counts the offsets in between in ``offsetsSkipped``: the consumer never received them (the
        /// broker deleted them, by retention, before they were read, or compaction removed them). A gap of one is
        /// not counted: a transaction's commit marker leaves one in every partition it wrote.
        mutating func admit(_ offset: Int64, in partition: KafkaTopicPartition) -> PartitionPositions.Verdict {
            let position = positions.position(of: partition)
            let verdict = positions.admit(offset, in: partition)
            switch verdict {
            case .seekBack:
                rewindsUndone += 1
            case .deliver:
                if let position, offset - position > 1 {
                    offsetsSkipped += offset - position
                }
            case .acceptRewind:
                break
            }
            return verdict
        }

        /// One past the last message of `partition` delivered since its assignment; `nil` before the first.
        func position(of partition: KafkaTopicPartition) -> Int64? {
            positions.position(of: partition)
        }

        // MARK: The application's pauses

        /// The application pauses (`paused`) or resumes `partitions`.
        mutating func requestPause(_ partitions: [KafkaTopicPartition], paused: Bool) -> PauseRequest {
            switch lifecycle {
            case .idle, .running:
                if paused {
                    pausedByApplication.formUnion(partitions)
                } else {
                    pausedByApplication.subtract(partitions)
                }
                guard lifecycle == .running else { return .nothing }
                lastPauseRequest += 1
                return .waitForPollLoop(lastPauseRequest)
            case .closing, .finished:
                return .nothing
            }
        }

        /// Whether the application's request `request` no longer needs waiting for: the poll loop applied it, or
        /// it never will because the consumer is closing or finished.
        func isPauseApplied(_ request: UInt64) -> Bool {
            lastPauseApplied >= request || lifecycle != .running
        }

        // MARK: Rebalances

        /// librdkafka applied an assignment: incrementally (cooperative), or replacing the whole assignment.
        ///
        /// Partitions assigned (again) forget their positions: they start wherever the group's commit says.
        mutating func assigned(_ partitions: [KafkaTopicPartition], incrementally: Bool) {
            if incrementally {
                positions.forget(partitions)
            } else {
                positions.forget(nil)
                assignment = []
                pausedInLibrary = []
            }
            assignment.formUnion(partitions)
            hasJoinedGroup = true
        }

        /// librdkafka released revoked `partitions`.
        mutating func revoked(_ partitions: [KafkaTopicPartition]) {
            positions.forget(partitions)
            assignment.subtract(partitions)
            pausedInLibrary.subtract(partitions)
            pausedByApplication.subtract(partitions)
        }

        /// A rebalance failed and librdkafka dropped the whole assignment.
        mutating func rebalanceFailed() {
            positions.forget(nil)
            assignment = []
            pausedInLibrary = []
        }
    }
}
