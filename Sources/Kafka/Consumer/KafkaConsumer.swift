public import Coordination
public import Logging
public import ServiceLifecycle

/// A member of a Kafka consumer group.
///
/// Messages arrive through ``messages``, an `AsyncSequence` backed by a bounded buffer. Only offsets the
/// application finished are committed. By default `enable.auto.commit` and `enable.auto.offset.store` are off
/// (unless the configuration turns them on) and the application commits with ``commit(_:)`` or
/// ``commitAsync(_:)``. With ``Options/autoCommitInterval`` the consumer is at-least-once the librdkafka way:
/// the application stores what it finished with ``storeOffsets(_:)``, librdkafka commits the stored offsets
/// every interval, only while the group is stable, and the application commits synchronously only in its
/// revocation handler (see docs/kafka.md: an explicit commit sent while the member rejoins its group makes
/// librdkafka 2.0.2 lose the assignment).
///
/// When partitions are revoked (a rebalance, or ``close()``), the consumer first drops its buffered messages
/// of those partitions, then calls the revocation handler and waits for it, at most
/// ``Options/revocationTimeout``, so the application can finish its work and commit before another member
/// takes over. The consumer is a `Service`: it polls while ``run()`` runs, on a dedicated thread.
///
/// Its state is one `StateMachine` under one lock (in `KafkaConsumerCore`); every librdkafka call that
/// changes what is fetched is made on the poll thread (see `KafkaConsumerCore+PollLoop.swift` and
/// `KafkaConsumerCore+Rebalance.swift`).
public final class KafkaConsumer: Service, Sendable {
    /// Behaviour that is not a librdkafka property.
    public struct Options: Sendable {
        /// At most this many messages wait in the consumer for the application; above it, fetching pauses.
        /// Default 1,000.
        public var maxBufferedMessages: Int = 1000
        /// At most about this many bytes (keys, values, headers) wait in the consumer; above it, fetching pauses
        /// as at ``maxBufferedMessages``. Default 32 MiB.
        public var maxBufferedBytes: Int = 32 * 1024 * 1024
        /// A message whose value is larger is delivered without it: ``KafkaMessage/value`` is `nil` and
        /// ``KafkaMessage/droppedValueBytes`` gives its size, so a huge message costs no copy. Default: no limit.
        public var maxValueBytes: Int = .max
        /// How long a revocation waits for the revocation handler. Keep it well under
        /// `max.poll.interval.ms`. Default 10 s.
        public var revocationTimeout: Duration = .seconds(10)
        /// How long one poll waits for a message. Default 100 ms.
        public var pollInterval: Duration = .milliseconds(100)
        /// Receives librdkafka's statistics on the poll thread (keep it quick), every `statistics.interval.ms`;
        /// when set and the configuration does not name that property, it defaults to
        /// ``defaultStatisticsInterval``. Default `nil`: no statistics.
        public var statisticsHandler: (@Sendable (KafkaStatistics) -> Void)?
        /// When set, librdkafka commits the offsets stored with ``KafkaConsumer/storeOffsets(_:)`` this often
        /// (`enable.auto.commit=true`, `enable.auto.offset.store=false`, `auto.commit.interval.ms`), only while
        /// the group is stable; the configuration must then not name `enable.auto.commit` or
        /// `enable.auto.offset.store`. Default `nil`: nothing is committed unless the application commits.
        public var autoCommitInterval: Duration?
        /// Receives the result of every offset commit on the poll thread (keep it quick): the automatic ones and
        /// the application's, the offsets committed and the failure, if any. Default `nil`.
        public var commitHandler: CommitHandler?
        /// The clock the revocation bound is measured on. Default `.system`; tests inject a manual clock.
        public var timeSource: TimeSource = .system

        /// Creates options with the defaults.
        public init() {}
    }

    /// Called when partitions are revoked, before the revocation completes.
    ///
    /// - Parameters:
    ///   - partitions: the partitions taken away.
    ///   - lost: `true` when the session expired and commits for them can no longer succeed.
    public typealias RevocationHandler = @Sendable (_ partitions: [KafkaTopicPartition], _ lost: Bool) async -> Void

    /// Called on the poll thread when partitions are assigned, before any of their messages is polled.
    /// Keep it quick: it runs inside librdkafka's rebalance callback.
    ///
    /// - Returns: for partitions whose work this consumer finished past what it could commit (in a generation
    ///   it lost), the next offset to read. Such a partition starts there instead of at the group's committed
    ///   offset when the committed offset is behind it (checked with the coordinator), and the offset is stored
    ///   so that the next commit records it. `[:]`: every partition starts at the committed offset.
    public typealias AssignmentHandler = @Sendable (_ partitions: [KafkaTopicPartition]) -> [KafkaTopicPartition: Int64]

    /// Called on the poll thread with the result of an offset commit.
    ///
    /// - Parameters:
    ///   - offsets: the offsets committed (the next offset to read of each partition); empty when it failed.
    ///   - failure: the failure of the commit, or of its first failed partition; `nil` when it succeeded.
    public typealias CommitHandler = @Sendable (_ offsets: [KafkaTopicPartitionOffset], _ failure: KafkaError?) -> Void

    /// Properties that ``Options/autoCommitInterval`` sets and the configuration may not.
    public static let autoCommitProperties = ["enable.auto.commit", "enable.auto.offset.store"]

    /// The `statistics.interval.ms` used with a ``Options/statisticsHandler`` unless the configuration sets one.
    public static let defaultStatisticsInterval: Duration = .seconds(5)

    /// librdkafka defaults that mioctx sets unless the configuration overrides them.
    static let defaultProperties: [String: String] = [
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": "false",
    ]

    /// The group this consumer is a member of.
    public let groupID: String
    /// The topics it subscribes to.
    public let topics: [String]
    /// Messages, in order within each partition. Read it from one task.
    public let messages: KafkaConsumerMessages
    /// Assignments, revocations and errors. The stream keeps the newest 1,000 events if nobody reads it.
    public let events: AsyncStream<KafkaConsumerEvent>

    private let client: RDKafkaClient
    private let core: KafkaConsumerCore
    private let options: Options
    private let pollThread = RDKafkaPollThread(name: "mioctx.kafka.consumer")

    /// Creates a consumer; it joins the group when ``run()`` starts.
    ///
    /// - Parameters:
    ///   - configuration: librdkafka properties (`bootstrap.servers`, security, tuning).
    ///   - groupID: the consumer group (`group.id`).
    ///   - topics: the topics to subscribe to.
    ///   - options: buffering and revocation bounds.
    ///   - logger: receives librdkafka's own log lines too.
    ///   - onAssign: called when partitions are assigned, before any of their messages arrives.
    ///   - onRevoke: called before a revocation completes; finish and commit the partitions' work there.
    /// - Throws: ``KafkaError`` with code `configuration` naming a property librdkafka refused, or one of
    ///   ``autoCommitProperties`` set while ``Options/autoCommitInterval`` is.
    public init(
        configuration: KafkaConfiguration,
        groupID: String,
        topics: [String],
        options: Options = Options(),
        logger: Logger,
        onAssign: AssignmentHandler? = nil,
        onRevoke: RevocationHandler? = nil
    ) throws(KafkaError) {
        guard !topics.isEmpty else {
            throw KafkaError(code: .subscription, message: "a consumer needs at least one topic")
        }
        var properties = configuration.withDefaults(Self.defaultProperties)
        properties["group.id"] = groupID
        if let interval = options.autoCommitInterval {
            if let reserved = Self.autoCommitProperties.first(where: { configuration.properties[$0] != nil }) {
                throw KafkaError(
                    code: .configuration,
                    message: "\(reserved) is set by mioctx (offsets are stored when work is finished and committed every commit interval); remove it from the Kafka properties"
                )
            }
            properties["enable.auto.commit"] = "true"
            properties["enable.auto.offset.store"] = "false"
            properties["auto.commit.interval.ms"] = String(max(1, interval.wholeMilliseconds))
        }
        if let reset = properties["auto.offset.reset"], ["latest", "largest", "end"].contains(reset) {
            // The rewind the consumer undoes (see `KafkaConsumerCore.deliver`) moves a partition to this position:
            // with `latest` that is a jump forward, a skip no consumer can tell from compaction.
            logger.warning(
                "auto.offset.reset=\(reset): librdkafka 2.0 may skip messages of a partition starting without a committed offset; prefer earliest (docs/kafka.md)",
                metadata: ["kafka.group": "\(groupID)"]
            )
        }
        if options.statisticsHandler != nil, properties["statistics.interval.ms"] == nil {
            properties["statistics.interval.ms"] = String(Self.defaultStatisticsInterval.wholeMilliseconds)
        }
        let (events, eventContinuation) = AsyncStream.makeStream(
            of: KafkaConsumerEvent.self,
            bufferingPolicy: .bufferingNewest(1000)
        )
        let core = KafkaConsumerCore(
            logger: logger,
            options: options,
            onAssign: onAssign,
            onRevoke: onRevoke,
            events: eventContinuation
        )
        let client = try RDKafkaClient(kind: .consumer, properties: properties, callbacks: core.makeCallbacks())
        self.client = client
        self.core = core
        self.groupID = groupID
        self.topics = topics
        self.options = options
        self.events = events
        self.messages = KafkaConsumerMessages(buffer: core.buffer, wakePollLoop: { client.wakeConsumerPoll() })
    }

    /// Subscribes and polls until graceful shutdown, cancellation or ``close()``; then leaves the group
    /// (revoking, so the revocation handler can commit) and ends ``messages``. Returns at once when the consumer
    /// was closed before, or is already running.
    ///
    /// - Throws: ``KafkaError`` with code `subscription` when the subscription is refused.
    public func run() async throws {
        guard core.state.withLock({ state, _ in state.run() }) == .subscribe else { return }
        if let failure = client.subscribe(topics) {
            if core.state.withLock({ state, _ in state.subscriptionFailed() }) {
                core.finishStreams()
            }
            throw failure
        }
        let client = self.client
        let core = self.core
        let pollInterval = options.pollInterval
        await withTaskCancellationOrGracefulShutdownHandler {
            await pollThread.run { _ in
                core.pollLoop(client, pollInterval: pollInterval)
            }
        } onCancelOrGracefulShutdown: {
            self.close()
        }
    }

    /// Makes ``run()`` leave the group and return. A consumer closed before it runs never joins its group:
    /// ``messages`` and ``events`` end at once. Calling it again does nothing.
    public func close() {
        let action = core.state.withLock { state, waiters in
            let action = state.close()
            if action != .nothing { waiters.wakeAll(with: .recheck) }
            return action
        }
        switch action {
        case .wakePollLoop:
            client.wakeConsumerPoll()
        case .finishStreams:
            core.finishStreams()
        case .nothing:
            break
        }
    }

    /// Commits offsets and waits for the broker's confirmation.
    ///
    /// - Parameter offsets: for each partition, the offset of the next message to read (last finished + 1).
    /// - Throws: ``KafkaError`` with code `commit` naming the first partition that failed.
    public func commit(_ offsets: [KafkaTopicPartitionOffset]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let client = self.client
        if let failure = await runBlocking({ client.commit(offsets) }) {
            throw failure
        }
    }

    /// Stores finished offsets for the automatic commit (``Options/autoCommitInterval``); it does no I/O.
    /// Offsets of partitions no longer assigned are skipped.
    ///
    /// - Parameter offsets: for each partition, the offset of the next message to read (last finished + 1).
    /// - Throws: ``KafkaError`` with code `commit` when librdkafka refused the store (for example without
    ///   ``Options/autoCommitInterval`` and with `enable.auto.offset.store` on).
    public func storeOffsets(_ offsets: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        if let failure = client.storeOffsets(offsets) {
            throw failure
        }
    }

    /// Sends a commit without waiting for it; a failure arrives as ``KafkaConsumerEvent/commitFailed(_:)``.
    ///
    /// - Parameter offsets: for each partition, the offset of the next message to read (last finished + 1).
    /// - Throws: ``KafkaError`` with code `commit` when the commit could not even be sent.
    public func commitAsync(_ offsets: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        if let failure = client.commitAsync(offsets) {
            throw failure
        }
    }

    /// The group's committed offsets for `partitions` (the next offset to read; `nil` when none is committed).
    ///
    /// - Parameters:
    ///   - partitions: the partitions to look up.
    ///   - timeout: how long to wait for the broker.
    /// - Returns: the committed offset of each partition that has one.
    /// - Throws: ``KafkaError`` with code `timeout` or `partitionControl` when the broker did not answer.
    public func committedOffsets(
        for partitions: [KafkaTopicPartition],
        timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> [KafkaTopicPartition: Int64] {
        let client = self.client
        return try await runBlocking { client.committedOffsets(for: partitions, timeout: timeout) }.get()
    }

    /// Stops fetching from `partitions` (the consumer keeps polling, so it stays in the group).
    ///
    /// The poll thread makes the change; this returns once it has (at once when the consumer is not running:
    /// before ``run()``, the pause applies when it starts). Messages of these partitions already in the buffer
    /// are still delivered.
    ///
    /// - Parameter partitions: the partitions to pause.
    public func pause(_ partitions: [KafkaTopicPartition]) async {
        await core.requestPause(partitions, paused: true, client: client)
    }

    /// Restarts fetching from `partitions`.
    ///
    /// The poll thread makes the change and seeks each resumed partition to its position, so that librdkafka
    /// fetches it again at once; this returns once it has.
    ///
    /// - Parameter partitions: the partitions to resume.
    public func resume(_ partitions: [KafkaTopicPartition]) async {
        await core.requestPause(partitions, paused: false, client: client)
    }

    /// Records a pause (`paused`) or a resume of `partitions` and returns at once; the poll thread applies it
    /// as ``pause(_:)`` and ``resume(_:)`` do.
    ///
    /// Requests take effect in the order they are recorded, whichever task records them. A caller that decides
    /// to pause or resume under a lock of its own should record the request under that lock: with the awaiting
    /// calls, a pause decided before a resume could be recorded after it and keep the partition paused.
    ///
    /// - Parameters:
    ///   - partitions: the partitions to pause or resume.
    ///   - paused: `true` to pause them, `false` to resume them.
    public func requestPause(_ partitions: [KafkaTopicPartition], paused: Bool) {
        core.recordPause(partitions, paused: paused, client: client)
    }

    /// The partitions currently assigned to this member.
    public var assignment: [KafkaTopicPartition] {
        core.read { $0.assignment }.sorted()
    }

    /// Whether the consumer has joined its group (received an assignment, possibly empty) and not left it.
    public var hasJoinedGroup: Bool {
        core.read { $0.hasJoinedGroup }
    }

    /// How many assigned partitions are paused (by ``pause(_:)`` or because the buffer is full).
    public var pausedPartitionCount: Int {
        core.read { $0.pausedInLibrary.count }
    }

    /// How many messages wait in the buffer for the application.
    public var bufferedMessageCount: Int {
        core.buffer.count
    }

    /// Where the poll thread is and since when ("polling for 0.1 s", "pausing partitions for 95.0 s"): for the
    /// diagnostics of a stall.
    package var pollLoopSummary: String {
        core.pollLoopHeartbeat.summary
    }

    /// How many times librdkafka rewound a partition on its own and the consumer sought it back to its position,
    /// dropping the repeated message (see docs/kafka.md).
    public var rewindsUndone: Int {
        core.read { $0.rewindsUndone }
    }

    /// How many offsets the consumer jumped over in gaps of more than one offset within a partition since it
    /// started: messages it never received because the broker deleted them (retention: `retention.bytes` or
    /// `retention.ms` reached before they were read) or compaction removed them. Gaps of one offset (a
    /// transaction's commit marker) and where a partition starts after its assignment are not counted
    /// (librdkafka logs an out-of-range committed offset itself). See docs/kafka.md.
    public var offsetsSkipped: Int64 {
        core.read { $0.offsetsSkipped }
    }
}
