import CRdKafka
import Dispatch
public import Logging
public import ServiceLifecycle
import Synchronization

/// Something that happened to a consumer's group membership or commits.
public enum KafkaConsumerEvent: Sendable, Hashable {
    /// These partitions were assigned to this member (incrementally, with `cooperative-sticky`).
    case assigned([KafkaTopicPartition])
    /// These partitions were taken away. `lost` means the session expired: they already belong to another
    /// member and no commit for them can succeed.
    case revoked([KafkaTopicPartition], lost: Bool)
    /// An asynchronous commit failed.
    case commitFailed(KafkaError)
    /// librdkafka reported an error while polling (most are transient; the client recovers by itself).
    case error(KafkaError)
}

/// A member of a Kafka consumer group.
///
/// Messages arrive through ``messages``, an `AsyncSequence` backed by a bounded buffer. Offsets are never
/// committed behind the application's back: `enable.auto.commit` and `enable.auto.offset.store` are off
/// unless the configuration turns them on, and the application commits what it has finished with
/// ``commit(_:)`` or ``commitAsync(_:)``.
///
/// When partitions are revoked (a rebalance, or ``close()``), the consumer first drops its buffered messages
/// of those partitions, then calls the revocation handler and waits for it, at most
/// ``Options/revocationTimeout``, so the application can finish its work and commit before another member
/// takes over. The consumer is a `Service`: it polls while ``run()`` runs, on a dedicated thread.
public final class KafkaConsumer: Service, Sendable {
    /// Behaviour that is not a librdkafka property.
    public struct Options: Sendable {
        /// At most this many messages wait in the consumer for the application; above it, fetching pauses.
        /// Default 1,000.
        public var maxBufferedMessages: Int = 1000
        /// How long a revocation waits for the revocation handler. Keep it well under
        /// `max.poll.interval.ms`. Default 10 s.
        public var revocationTimeout: Duration = .seconds(10)
        /// How long one poll waits for a message. Default 100 ms.
        public var pollInterval: Duration = .milliseconds(100)
        /// Receives librdkafka's statistics on the poll thread (keep it quick), every `statistics.interval.ms`;
        /// when set and the configuration does not name that property, it defaults to
        /// ``defaultStatisticsInterval``. Default `nil`: no statistics.
        public var statisticsHandler: (@Sendable (KafkaStatistics) -> Void)?

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
    public typealias AssignmentHandler = @Sendable (_ partitions: [KafkaTopicPartition]) -> Void

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
    private let context: ConsumerContext
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
    /// - Throws: ``KafkaError`` with code `configuration` naming a property librdkafka refused.
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
        if let reset = properties["auto.offset.reset"], ["latest", "largest", "end"].contains(reset) {
            // The rewind the consumer undoes (`keepsInOrder(_:)`) moves a partition to this position: with
            // `latest` that is a jump forward, a skip no consumer can tell from compaction.
            logger.warning(
                "auto.offset.reset=\(reset): librdkafka 2.0 may skip messages of a partition starting without a committed offset; prefer earliest (docs/kafka.md)",
                metadata: ["kafka.group": "\(groupID)"]
            )
        }
        if options.statisticsHandler != nil, properties["statistics.interval.ms"] == nil {
            properties["statistics.interval.ms"] = String(Self.defaultStatisticsInterval.milliseconds)
        }
        let (events, eventContinuation) = AsyncStream.makeStream(
            of: KafkaConsumerEvent.self,
            bufferingPolicy: .bufferingNewest(1000)
        )
        let context = ConsumerContext(
            logger: logger,
            capacity: options.maxBufferedMessages,
            revocationTimeout: options.revocationTimeout,
            onAssign: onAssign,
            onRevoke: onRevoke,
            onStatistics: options.statisticsHandler,
            events: eventContinuation
        )
        self.client = try RDKafkaClient(kind: .consumer, properties: properties, context: context) { conf in
            rd_kafka_conf_set_rebalance_cb(conf) { handle, error, partitions, _ in
                guard let handle, let context = RDKafkaCallbackContext.from(handle) as? ConsumerContext else { return }
                context.rebalance(handle: handle, error: error, partitions: partitions)
            }
            rd_kafka_conf_set_offset_commit_cb(conf) { handle, error, offsets, _ in
                guard let handle, let context = RDKafkaCallbackContext.from(handle) as? ConsumerContext else { return }
                context.committed(error: error, offsets: offsets)
            }
            if options.statisticsHandler != nil {
                rd_kafka_conf_set_stats_cb(conf) { handle, json, length, _ in
                    guard let handle, let json, let context = RDKafkaCallbackContext.from(handle) as? ConsumerContext else {
                        return 0
                    }
                    context.statistics(UnsafeRawBufferPointer(start: json, count: length))
                    // 0: librdkafka frees the JSON buffer.
                    return 0
                }
            }
        }
        rd_kafka_poll_set_consumer(client.pointer)
        context.attach(client)
        self.context = context
        self.groupID = groupID
        self.topics = topics
        self.options = options
        self.events = events
        self.messages = KafkaConsumerMessages(buffer: context.buffer)
    }

    /// Subscribes and polls until graceful shutdown, cancellation or ``close()``; then leaves the group
    /// (revoking, so the revocation handler can commit) and ends ``messages``.
    ///
    /// - Throws: ``KafkaError`` with code `subscription` when the subscription is refused.
    public func run() async throws {
        let list = RDKafkaTopicPartitionList.make(topics.map { KafkaTopicPartition(topic: $0, partition: RD_KAFKA_PARTITION_UA) })
        let error = rd_kafka_subscribe(client.pointer, list)
        rd_kafka_topic_partition_list_destroy(list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            context.finishStreams()
            throw KafkaError.rdKafka(error, code: .subscription, context: "could not subscribe to \(topics)")
        }
        let client = self.client
        let context = self.context
        let pollMilliseconds = Int32(options.pollInterval.milliseconds)
        await withTaskCancellationOrGracefulShutdownHandler {
            await pollThread.run { thread in
                while !thread.isStopRequested {
                    context.reconcilePauses(seekingResumed: true)
                    guard let message = rd_kafka_consumer_poll(client.pointer, pollMilliseconds) else { continue }
                    context.deliver(message)
                    rd_kafka_message_destroy(message)
                }
                context.close()
            }
        } onCancelOrGracefulShutdown: {
            self.close()
        }
    }

    /// Makes ``run()`` leave the group and return.
    public func close() {
        pollThread.requestStop()
        context.wakePoller()
    }

    /// Commits offsets and waits for the broker's confirmation.
    ///
    /// - Parameter offsets: for each partition, the offset of the next message to read (last finished + 1).
    /// - Throws: ``KafkaError`` with code `commit` naming the first partition that failed.
    public func commit(_ offsets: [KafkaTopicPartitionOffset]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let client = self.client
        let failure = await runBlocking { () -> KafkaError? in
            let list = RDKafkaTopicPartitionList.make(offsets)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let error = rd_kafka_commit(client.pointer, list, 0)
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .rdKafka(error, code: .commit, context: "could not commit \(offsets)")
            }
            if let (partition, error) = RDKafkaTopicPartitionList.firstError(list) {
                return .rdKafka(error, code: .commit, context: "could not commit offsets of \(partition)")
            }
            return nil
        }
        if let failure {
            throw failure
        }
    }

    /// Sends a commit without waiting for it; a failure arrives as ``KafkaConsumerEvent/commitFailed(_:)``.
    ///
    /// - Throws: ``KafkaError`` with code `commit` when the commit could not even be sent.
    public func commitAsync(_ offsets: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = RDKafkaTopicPartitionList.make(offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let error = rd_kafka_commit(client.pointer, list, 1)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw .rdKafka(error, code: .commit, context: "could not send commit of \(offsets)")
        }
    }

    /// The group's committed offsets for `partitions` (the next offset to read; `nil` when none is committed).
    ///
    /// - Throws: ``KafkaError`` with code `timeout` or `partitionControl` when the broker did not answer.
    public func committedOffsets(
        for partitions: [KafkaTopicPartition],
        timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> [KafkaTopicPartition: Int64] {
        let client = self.client
        let result = await runBlocking { () -> Result<[KafkaTopicPartition: Int64], KafkaError> in
            let list = RDKafkaTopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let error = rd_kafka_committed(client.pointer, list, Int32(timeout.milliseconds))
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(.rdKafka(error, code: .partitionControl, context: "could not read committed offsets"))
            }
            var offsets: [KafkaTopicPartition: Int64] = [:]
            for entry in RDKafkaTopicPartitionList.entries(list) where entry.offset >= 0 {
                offsets[entry.topicPartition] = entry.offset
            }
            return .success(offsets)
        }
        return try result.get()
    }

    /// Stops fetching from `partitions` (the consumer keeps polling, so it stays in the group).
    ///
    /// Messages of these partitions already in the buffer are still delivered.
    public func pause(_ partitions: [KafkaTopicPartition]) async {
        context.setPaused(partitions, paused: true)
        await applyPauses()
    }

    /// Restarts fetching from `partitions`.
    ///
    /// librdkafka (2.0) may take up to a second to fetch again after this: unlike the resumes the consumer makes
    /// itself when its buffer drains (on its poll thread, with a seek that restarts fetching at once), this one
    /// does not seek, since the poll thread may be polling the partition at the same moment.
    public func resume(_ partitions: [KafkaTopicPartition]) async {
        context.setPaused(partitions, paused: false)
        await applyPauses()
    }

    /// The partitions currently assigned to this member.
    public var assignment: [KafkaTopicPartition] {
        context.currentAssignment.sorted()
    }

    /// Whether the consumer has joined its group (received an assignment, possibly empty) and not left it.
    public var hasJoinedGroup: Bool {
        context.hasJoinedGroup
    }

    /// How many assigned partitions are paused (by ``pause(_:)`` or because the buffer is full).
    public var pausedPartitionCount: Int {
        context.pausedPartitionCount
    }

    /// How many messages wait in the buffer for the application.
    public var bufferedMessageCount: Int {
        context.buffer.count
    }

    /// How many times librdkafka rewound a partition on its own and the consumer sought it back to its position,
    /// dropping the repeated message (see docs/kafka.md).
    public var rewindsUndone: Int {
        context.rewindsUndone.load(ordering: .relaxed)
    }

    private func applyPauses() async {
        let context = self.context
        // Not on the poll thread, which may be polling a resumed partition meanwhile: no seek (see
        // `reconcilePauses(seekingResumed:)`); librdkafka restarts fetching by itself, within a second.
        await runBlocking { context.reconcilePauses(seekingResumed: false) }
    }
}

/// The `AsyncSequence` of a consumer's messages.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = KafkaMessage

    let buffer: KafkaMessageBuffer

    /// Iterates over the consumer's messages; ends when the consumer closes.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let buffer: KafkaMessageBuffer

        public mutating func next() async -> KafkaMessage? {
            await buffer.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(buffer: buffer)
    }
}

/// The consumer's state reached from librdkafka callbacks on the poll thread and from the application.
///
/// Everything mutable is inside `state` (a mutex); the C calls that apply pauses, and those that change the
/// assignment, run under `applyLock` so that two threads never apply pause decisions out of order nor to a
/// partition whose assignment is changing.
final class ConsumerContext: RDKafkaCallbackContext, @unchecked Sendable {
    private struct State {
        var joined = false
        var assignment: Set<KafkaTopicPartition> = []
        var pausedByApplication: Set<KafkaTopicPartition> = []
        var pausedInLibrary: Set<KafkaTopicPartition> = []
    }

    let buffer: KafkaMessageBuffer
    private let state = Mutex(State())
    /// Used on the poll thread only; a mutex all the same, so the class stays honestly `Sendable`.
    private let positions = Mutex(PartitionPositions())
    /// Rewinds undone by seeking back (see `keepsInOrder(_:)`).
    let rewindsUndone = Atomic<Int>(0)
    private let applyLock = Mutex(())
    private let revocationTimeout: Duration
    private let onAssign: KafkaConsumer.AssignmentHandler?
    private let onRevoke: KafkaConsumer.RevocationHandler?
    private let onStatistics: (@Sendable (KafkaStatistics) -> Void)?
    private let eventContinuation: AsyncStream<KafkaConsumerEvent>.Continuation
    /// Set once after the handle exists; read only afterwards. The handle outlives the context's use.
    private nonisolated(unsafe) var handle: OpaquePointer?
    /// Owned by the client, which destroys it before its handle.
    private nonisolated(unsafe) var consumerQueue: OpaquePointer?

    init(
        logger: Logger,
        capacity: Int,
        revocationTimeout: Duration,
        onAssign: KafkaConsumer.AssignmentHandler?,
        onRevoke: KafkaConsumer.RevocationHandler?,
        onStatistics: (@Sendable (KafkaStatistics) -> Void)?,
        events: AsyncStream<KafkaConsumerEvent>.Continuation
    ) {
        self.revocationTimeout = revocationTimeout
        self.onAssign = onAssign
        self.onRevoke = onRevoke
        self.onStatistics = onStatistics
        self.eventContinuation = events
        let wake = WakeBox()
        self.buffer = KafkaMessageBuffer(capacity: capacity) { wake.wake() }
        super.init(logger: logger)
        wake.context = self
    }

    func attach(_ client: RDKafkaClient) {
        handle = client.pointer
        consumerQueue = client.consumerQueue
    }

    var currentAssignment: Set<KafkaTopicPartition> {
        state.withLock { $0.assignment }
    }

    var hasJoinedGroup: Bool {
        state.withLock { $0.joined }
    }

    var pausedPartitionCount: Int {
        state.withLock { $0.pausedInLibrary.count }
    }

    /// Interrupts a blocking `rd_kafka_consumer_poll` so the poll thread re-checks its state.
    func wakePoller() {
        if let consumerQueue {
            rd_kafka_queue_yield(consumerQueue)
        }
    }

    /// Ends ``KafkaConsumer/messages`` and ``KafkaConsumer/events``.
    func finishStreams() {
        buffer.finish()
        eventContinuation.finish()
    }

    func setPaused(_ partitions: [KafkaTopicPartition], paused: Bool) {
        state.withLock { state in
            if paused {
                state.pausedByApplication.formUnion(partitions)
            } else {
                state.pausedByApplication.subtract(partitions)
            }
        }
    }

    /// Brings librdkafka's paused partitions in line with what the application and the buffer want.
    ///
    /// - Parameter seekingResumed: also seek resumed partitions to their positions, so that fetching restarts at
    ///   once (see `restartFetching`). Only the poll thread passes `true`: there nothing is being polled between
    ///   reading a partition's position and seeking to it, so the seek can neither skip nor repeat a message.
    func reconcilePauses(seekingResumed: Bool) {
        guard let handle else { return }
        applyLock.withLock { _ in
            let fullBuffer = buffer.keepsFetchingPaused()
            let (toPause, toResume) = state.withLock { state -> ([KafkaTopicPartition], [KafkaTopicPartition]) in
                let wanted = fullBuffer ? state.assignment : state.pausedByApplication.intersection(state.assignment)
                let toPause = wanted.subtracting(state.pausedInLibrary)
                let toResume = state.pausedInLibrary.subtracting(wanted)
                state.pausedInLibrary = wanted
                return (Array(toPause), Array(toResume))
            }
            apply(handle, toPause, pause: true, seekingResumed: false)
            apply(handle, toResume, pause: false, seekingResumed: seekingResumed)
        }
    }

    private func apply(_ handle: OpaquePointer, _ partitions: [KafkaTopicPartition], pause: Bool, seekingResumed: Bool) {
        guard !partitions.isEmpty else { return }
        let list = RDKafkaTopicPartitionList.make(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let error = pause ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            let failure = KafkaError.rdKafka(error, code: .partitionControl, context: pause ? "pause failed" : "resume failed")
            logger.error("\(failure)")
            eventContinuation.yield(.error(failure))
            return
        }
        if !pause && seekingResumed { restartFetching(handle, partitions) }
        logger.debug(
            pause ? "Kafka partitions paused" : "Kafka partitions resumed",
            metadata: ["kafka.partitions": "\(partitions.sorted())", "kafka.buffered": "\(buffer.count)"]
        )
    }

    /// Makes librdkafka fetch resumed partitions now rather than up to a second later.
    ///
    /// librdkafka (2.0) clears a partition's pause flag on resume but does not wake the thread that fetches
    /// from the partition's leader; that thread looks again only on its next I/O or its one-second tick. With
    /// every partition paused nothing is in flight, so each pause cost up to a second without fetching (at
    /// 20 ms of Mio latency the worker did a third of the jobs it does with this). Seeking a partition to its
    /// position (one past the last message delivered) starts fetching there at once: the same offset a resume
    /// would fetch from, so nothing is skipped or repeated. A partition with no position yet (nothing delivered
    /// since its assignment) is left to librdkafka, which starts it from the committed offset: its start
    /// offset may still be being looked up, and a seek then is what makes librdkafka rewind it later (see
    /// `keepsInOrder(_:)`).
    private func restartFetching(_ handle: OpaquePointer, _ partitions: [KafkaTopicPartition]) {
        let targets = positions.withLock { positions in
            partitions.compactMap { partition in
                positions.position(of: partition).map { KafkaTopicPartitionOffset(partition, offset: $0) }
            }
        }
        seek(handle, targets, reason: "resume")
    }

    /// Seeks partitions asynchronously (timeout 0): librdkafka reports no error here, and a seek that fails
    /// leaves the partition where it was.
    private func seek(_ handle: OpaquePointer, _ targets: [KafkaTopicPartitionOffset], reason: String) {
        guard !targets.isEmpty else { return }
        let list = RDKafkaTopicPartitionList.make(targets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_seek_partitions(handle, list, 0) {
            logger.debug(
                "Kafka seek failed",
                metadata: ["kafka.seekReason": "\(reason)", "kafka.error": "\(String(cString: rd_kafka_error_string(error)))"]
            )
            rd_kafka_error_destroy(error)
        }
    }

    /// Whether a polled message comes at or after its partition's position. One that comes before is a repeat
    /// librdkafka made on its own: it is dropped and the partition sought back (see `PartitionPositions`).
    ///
    /// The rewind: librdkafka 2.0 moves a partition back to its `auto.offset.reset` position in mid-run when a
    /// pause, resume or seek changes the partition while a lookup of its start offset is in flight. The
    /// outdated answer schedules another lookup half a second later ("outdated offset response" in
    /// `rd_kafka_toppar_handle_Offset`), and that lookup's answer moves the partition back although it is
    /// already fetching. A consumer whose buffer fills while a partition is starting hits it.
    private func keepsInOrder(_ message: KafkaMessage) -> Bool {
        let partition = KafkaTopicPartition(topic: message.topic, partition: message.partition)
        let verdict = positions.withLock { $0.admit(message.offset, in: partition) }
        switch verdict {
        case .deliver:
            return true
        case .seekBack(let position):
            logger.warning(
                "Kafka partition rewound by librdkafka; dropping the repeat and seeking back to the position",
                metadata: ["kafka.partition": "\(partition)", "kafka.offset": "\(message.offset)", "kafka.position": "\(position)"]
            )
            rewindsUndone.add(1, ordering: .relaxed)
            if let handle { seek(handle, [KafkaTopicPartitionOffset(partition, offset: position)], reason: "rewind") }
            return false
        case .acceptRewind(let position):
            logger.warning(
                "Kafka partition rewound again after seeking back \(PartitionPositions.maxSeeksBack) times; accepting the repeats",
                metadata: ["kafka.partition": "\(partition)", "kafka.offset": "\(message.offset)", "kafka.position": "\(position)"]
            )
            return true
        }
    }

    /// Handles one polled message or error (on the poll thread).
    func deliver(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) {
        let raw = pointer.pointee
        if raw.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            guard raw.err != RD_KAFKA_RESP_ERR__PARTITION_EOF else { return }
            let error = KafkaError.rdKafka(raw.err, code: .consumer, context: "consumer error")
            logger.warning("\(error)")
            eventContinuation.yield(.error(error))
            return
        }
        let message = Self.convert(pointer)
        guard keepsInOrder(message) else { return }
        // A full buffer pauses fetching at the poll loop's next `reconcilePauses(seekingResumed:)`, before the next
        // poll.
        buffer.push(message)?.resume(returning: message)
    }

    private static func convert(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaMessage {
        let raw = pointer.pointee
        let topic = String(cString: rd_kafka_topic_name(raw.rkt))
        let value = raw.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.len)) }
        let key = raw.key.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        if rd_kafka_message_headers(pointer, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            var index = 0
            var name: UnsafePointer<CChar>?
            var valuePointer: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(headerList, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let headerValue = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(key: name.map { String(cString: $0) } ?? "", value: headerValue))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        return KafkaMessage(
            topic: topic,
            partition: raw.partition,
            offset: raw.offset,
            key: key,
            value: value,
            headers: headers,
            timestampMilliseconds: timestamp >= 0 ? timestamp : nil
        )
    }

    /// librdkafka's rebalance callback (on the poll thread).
    func rebalance(handle: OpaquePointer, error: rd_kafka_resp_err_t, partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
        let changed = partitions.map { RDKafkaTopicPartitionList.partitions($0) } ?? []
        switch error {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            onAssign?(changed)
            forgetPositions(cooperative ? changed : nil)
            changeAssignment(handle, partitions, assign: true, cooperative: cooperative) { state in
                if !cooperative {
                    state.assignment = []
                    state.pausedInLibrary = []
                }
                state.assignment.formUnion(changed)
                state.joined = true
            }
            logger.info("Kafka partitions assigned", metadata: ["kafka.partitions": "\(changed.sorted())"])
            eventContinuation.yield(.assigned(changed))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(handle) != 0
            let dropped = buffer.purge(Set(changed))
            logger.info(
                "Kafka partitions revoked",
                metadata: ["kafka.partitions": "\(changed.sorted())", "kafka.lost": "\(lost)", "kafka.dropped": "\(dropped)"]
            )
            eventContinuation.yield(.revoked(changed, lost: lost))
            forgetPositions(changed)
            waitForRevocationHandler(changed, lost: lost)
            changeAssignment(handle, partitions, assign: false, cooperative: cooperative) { state in
                state.assignment.subtract(changed)
                state.pausedInLibrary.subtract(changed)
                state.pausedByApplication.subtract(changed)
            }
        default:
            report(KafkaError.rdKafka(error, code: .subscription, context: "rebalance failed"))
            forgetPositions(nil)
            changeAssignment(handle, nil, assign: false, cooperative: false) { state in
                state.assignment = []
                state.pausedInLibrary = []
            }
        }
    }

    private func forgetPositions(_ partitions: [KafkaTopicPartition]?) {
        positions.withLock { $0.forget(partitions) }
    }

    /// Assigns or unassigns `partitions` in librdkafka (incrementally when `cooperative`; an eager unassign
    /// drops the whole assignment) and records the change with `record`. Under `applyLock`, so that a pause or
    /// resume applied from another thread never acts on a partition between librdkafka's assignment changing
    /// and this member's record of it.
    private func changeAssignment(
        _ handle: OpaquePointer,
        _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
        assign: Bool,
        cooperative: Bool,
        record: (inout State) -> Void
    ) {
        applyLock.withLock { _ in
            if cooperative {
                let failure = assign ? rd_kafka_incremental_assign(handle, partitions) : rd_kafka_incremental_unassign(handle, partitions)
                if let failure {
                    let context = assign ? "incremental assign failed" : "incremental unassign failed"
                    report(KafkaError.rdKafka(consuming: failure, code: .subscription, context: context))
                }
            } else {
                rd_kafka_assign(handle, assign ? partitions : nil)
            }
            state.withLock { record(&$0) }
        }
    }

    /// Runs the application's handler and blocks this (poll) thread until it returns or the bound passes.
    private func waitForRevocationHandler(_ partitions: [KafkaTopicPartition], lost: Bool) {
        guard let onRevoke else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            await onRevoke(partitions, lost)
            done.signal()
        }
        let deadline = DispatchTime.now() + .milliseconds(revocationTimeout.milliseconds)
        if done.wait(timeout: deadline) == .timedOut {
            logger.warning(
                "revocation handler did not finish in time; releasing the partitions anyway",
                metadata: ["kafka.partitions": "\(partitions.sorted())", "kafka.revocationTimeout": "\(revocationTimeout)"]
            )
        }
    }

    /// librdkafka's statistics callback (on the poll thread).
    func statistics(_ json: UnsafeRawBufferPointer) {
        guard let onStatistics else { return }
        guard let statistics = KafkaStatistics.parse(json) else {
            logger.debug("librdkafka statistics could not be parsed")
            return
        }
        onStatistics(statistics)
    }

    /// librdkafka's commit callback, for asynchronous commits (on the poll thread).
    func committed(error: rd_kafka_resp_err_t, offsets: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        if error != RD_KAFKA_RESP_ERR_NO_ERROR && error != RD_KAFKA_RESP_ERR__NO_OFFSET {
            report(KafkaError.rdKafka(error, code: .commit, context: "offset commit failed"), asCommit: true)
        } else if let offsets, let (partition, partitionError) = RDKafkaTopicPartitionList.firstError(offsets) {
            report(
                KafkaError.rdKafka(partitionError, code: .commit, context: "offset commit of \(partition) failed"),
                asCommit: true
            )
        }
    }

    private func report(_ error: KafkaError, asCommit: Bool = false) {
        logger.error("\(error)")
        eventContinuation.yield(asCommit ? .commitFailed(error) : .error(error))
    }

    /// Leaves the group (on the poll thread): revokes, so the handler runs, then ends the streams.
    func close() {
        if let handle {
            let error = rd_kafka_consumer_close(handle)
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                report(KafkaError.rdKafka(error, code: .shutdown, context: "consumer close failed"))
            }
        }
        state.withLock { $0.joined = false }
        finishStreams()
    }
}

/// Lets the buffer wake the poll thread without the buffer and the context owning each other.
private final class WakeBox: @unchecked Sendable {
    weak var context: ConsumerContext?

    func wake() {
        context?.wakePoller()
    }
}
