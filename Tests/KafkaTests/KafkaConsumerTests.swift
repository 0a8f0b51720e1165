import Coordination
import Foundation
import Kafka
import MioctxTestSupport
import Synchronization
import Testing

@Suite("Kafka consumer group")
struct KafkaConsumerTests {
    @Test func twoMembersSplitThePartitionsAndTheSurvivorTakesAll() async throws {
        let cluster = try makeCluster(brokers: 3, topics: ["split": 6])
        let first = try RunningConsumer(cluster, group: "split-group", topics: ["split"])
        try await waitUntil("the first member to own all 6 partitions") { first.consumer.assignment.count == 6 }

        let second = try RunningConsumer(cluster, group: "split-group", topics: ["split"])
        try await waitUntil("the partitions to be shared") {
            let a = Set(first.consumer.assignment)
            let b = Set(second.consumer.assignment)
            return !a.isEmpty && !b.isEmpty && a.isDisjoint(with: b) && a.union(b).count == 6
        }

        try await second.stop()
        try await waitUntil("the survivor to own all 6 partitions again") { first.consumer.assignment.count == 6 }
        try await first.stop()
    }

    @Test func cooperativeStickyRebalancesIncrementally() async throws {
        let cluster = try makeCluster(brokers: 1, topics: ["sticky": 4])
        let properties = ["partition.assignment.strategy": "cooperative-sticky"]
        let first = try RunningConsumer(cluster, group: "sticky-group", topics: ["sticky"], properties: properties)
        try await waitUntil("the first member to own all partitions") { first.consumer.assignment.count == 4 }
        let before = Set(first.consumer.assignment)

        let second = try RunningConsumer(cluster, group: "sticky-group", topics: ["sticky"], properties: properties)
        try await waitUntil("the partitions to be shared") {
            !second.consumer.assignment.isEmpty && first.consumer.assignment.count + second.consumer.assignment.count == 4
        }
        // Sticky: the first member kept a subset of what it had; nothing moved that did not have to.
        #expect(Set(first.consumer.assignment).isSubset(of: before))
        try await second.stop()
        try await first.stop()
    }

    @Test func restartResumesRightAfterTheCommittedOffsets() async throws {
        let cluster = try makeCluster(topics: ["resume": 1])
        try await withProducer(cluster) { producer in
            for index in 0..<10 {
                _ = try await producer.send(topic: "resume", key: nil, value: Array("m-\(index)".utf8))
            }
        }
        let first = try RunningConsumer(cluster, group: "resume-group", topics: ["resume"])
        let firstRead = try await first.read(10)
        #expect(firstRead.map(\.offset) == Array(0..<10))
        // Only the first six are "finished": commit the next offset to read, 6.
        try await first.consumer.commit([KafkaTopicPartitionOffset(topic: "resume", partition: 0, offset: 6)])
        let committed = try await first.consumer.committedOffsets(for: [KafkaTopicPartition(topic: "resume", partition: 0)])
        #expect(committed[KafkaTopicPartition(topic: "resume", partition: 0)] == 6)
        try await first.stop()

        let second = try RunningConsumer(cluster, group: "resume-group", topics: ["resume"])
        let secondRead = try await second.read(4)
        try await second.stop()
        #expect(secondRead.map(\.offset) == [6, 7, 8, 9])
        #expect(secondRead.map(\.valueString) == ["m-6", "m-7", "m-8", "m-9"])
    }

    @Test func asynchronousCommitIsStoredByTheBroker() async throws {
        let cluster = try makeCluster(topics: ["async-commit": 2])
        let consumer = try RunningConsumer(cluster, group: "async-group", topics: ["async-commit"])
        try await waitUntil("assignment") { consumer.consumer.assignment.count == 2 }
        let partition = KafkaTopicPartition(topic: "async-commit", partition: 1)
        try consumer.consumer.commitAsync([KafkaTopicPartitionOffset(partition, offset: 42)])
        try await waitUntil("the asynchronous commit to land") {
            try await consumer.consumer.committedOffsets(for: [partition])[partition] == 42
        }
        try await consumer.stop()
    }

    @Test func pauseStopsDeliveryFromAPartitionAndResumeRestartsIt() async throws {
        let cluster = try makeCluster(topics: ["pause": 2])
        let consumer = try RunningConsumer(cluster, group: "pause-group", topics: ["pause"])
        try await waitUntil("assignment") { consumer.consumer.assignment.count == 2 }
        let paused = KafkaTopicPartition(topic: "pause", partition: 0)
        await consumer.consumer.pause([paused])

        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "pause", partition: 0, count: 5, prefix: "held")
            try await produce(producer, topic: "pause", partition: 1, count: 5, prefix: "flowing")
        }
        let flowing = try await consumer.read(5)
        #expect(flowing.allSatisfy { $0.partition == 1 })
        // Give the paused partition every chance to leak through before checking that it did not.
        try await Task.sleep(for: .seconds(2))
        #expect(consumer.consumer.bufferedMessageCount == 0)

        await consumer.consumer.resume([paused])
        let held = try await consumer.read(5)
        #expect(held.allSatisfy { $0.partition == 0 })
        #expect(Set(held.map(\.offset)) == Set(0..<5))
        try await consumer.stop()
    }

    @Test func aStalledReaderNeverBuffersMoreThanTheBound() async throws {
        let cluster = try makeCluster(topics: ["backlog": 3])
        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "backlog", partition: nil, count: 3000, prefix: "b")
        }
        var options = KafkaConsumer.Options()
        options.maxBufferedMessages = 100
        let consumer = try RunningConsumer(cluster, group: "backlog-group", topics: ["backlog"], options: options)
        try await waitUntil("the buffer to fill") { consumer.consumer.bufferedMessageCount >= 100 }
        // Nobody reads for a while; the consumer keeps polling but must not fetch into memory.
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(100))
            #expect(consumer.consumer.bufferedMessageCount <= 100)
        }
        // Reading everything afterwards loses nothing: fetching resumes as the buffer drains.
        let all = try await consumer.read(3000)
        #expect(Set(all.map { "\($0.partition)/\($0.offset)" }).count == 3000)
        try await consumer.stop()
    }

    /// A backlog read slowly through a small buffer pauses and resumes fetching about forty times; each resume
    /// seeks the partitions to their positions so that librdkafka fetches again at once. Every offset must still
    /// arrive exactly once and in order: the seek neither skips nor repeats a message. How soon the fetching
    /// restarts is a speed matter, measured by `scripts/bench_worker.py` (docs/benchmarks.md); this test prints
    /// the longest wait for a message (about 60 ms with the seek, about a second without).
    @Test func fetchingResumesAtTheNextOffsetAfterEachPause() async throws {
        let cluster = try makeCluster(topics: ["refill": 2])
        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "refill", partition: 0, count: 2000, prefix: "r0")
            try await produce(producer, topic: "refill", partition: 1, count: 2000, prefix: "r1")
        }
        var options = KafkaConsumer.Options()
        options.maxBufferedMessages = 100
        let consumer = try RunningConsumer(
            cluster, group: "refill-group", topics: ["refill"], properties: ["fetch.wait.max.ms": "100"], options: options
        )
        // A rebalance during the test (a revocation) restarts partitions from their committed offsets, here their
        // beginnings: a repeat that is not the seek's doing. The events tell whether one happened. (The two CI
        // failures that made this test tolerate rebalances were librdkafka's rewind instead, with no revocation:
        // the consumer now undoes it, see `aPauseDuringTheFirstOffsetLookupDoesNotRewindThePartition`.)
        let events = consumer.consumer.events
        let revocations = Mutex<[KafkaConsumerEvent]>([])
        let eventsTask = Task {
            for await event in events {
                if case .revoked = event { revocations.withLock { $0.append(event) } }
            }
        }
        defer { eventsTask.cancel() }
        try await waitUntil("the buffer to fill") { consumer.consumer.bufferedMessageCount >= 100 }
        // A reader slower than fetching, as a worker at its in-flight limit is: it stops between batches, so the
        // buffer fills and fetching pauses while it waits, then resumes once it has drained half the buffer.
        let messages = consumer.consumer.messages
        let (all, longestWait) = try await withPatience("4,000 messages") {
            let clock = ContinuousClock()
            var received: [KafkaMessage] = []
            var longestWait = Duration.zero
            var last = clock.now
            for await message in messages {
                received.append(message)
                longestWait = max(longestWait, last.duration(to: clock.now))
                if received.count == 4000 { break }
                if received.count.isMultiple(of: 50) { try await Task.sleep(for: .milliseconds(20)) }
                last = clock.now
            }
            return (received, longestWait)
        }
        let rebalances = revocations.withLock { $0 }  // before `stop`, which revokes everything
        try await consumer.stop()
        print("resume test: longest wait for a message after a pause: \(longestWait); librdkafka rewinds undone: \(consumer.consumer.rewindsUndone)")
        for partition in Int32(0)...1 {
            let offsets = all.filter { $0.partition == partition }.map(\.offset)
            if rebalances.isEmpty {
                #expect(offsets == Array(0..<2000), "partition \(partition): every offset once, in order")
            } else {
                // Restarts from the beginning are the rebalance's; a gap, or a restart anywhere else, is still a bug.
                print("resume test: the group rebalanced during the test (\(rebalances)); checking for gaps only")
                for (previous, next) in zip(offsets, offsets.dropFirst()) {
                    #expect(next == previous + 1 || next == 0, "partition \(partition): \(next) after \(previous)")
                }
                #expect(Set(offsets).count == min(offsets.count, 2000))
            }
        }
    }

    /// librdkafka 2.0 rewinds a partition to its `auto.offset.reset` position when the partition is paused or
    /// resumed while the lookup of its start offset is in flight: the outdated answer schedules another lookup,
    /// whose answer, half a second later, moves the partition back to offset 0 although it is fetching.
    ///
    /// Here the broker holds its first `ListOffsets` answer for a second; the application pauses and resumes
    /// the partition until the first message arrives (each resume starts another lookup, answered behind the
    /// first), then once more after reading everything, so that the partition's next offset is no longer 0
    /// when the late lookup's answer comes. Then one more message is produced. Without the consumer's seek back,
    /// offsets 0 to 299 arrived a second time before offset 300. Every offset must arrive once, in order.
    @Test func aPauseDuringTheFirstOffsetLookupDoesNotRewindThePartition() async throws {
        let cluster = try makeCluster(topics: ["lookup": 1])
        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "lookup", partition: 0, count: 300, prefix: "l")
        }
        try cluster.delayResponses(.listOffsets, ofBroker: 1, by: [.seconds(1)])
        let consumer = try RunningConsumer(cluster, group: "lookup-group", topics: ["lookup"])
        let partition = KafkaTopicPartition(topic: "lookup", partition: 0)
        let received = Mutex<[Int64]>([])
        let messages = consumer.consumer.messages
        let reader = Task {
            for await message in messages {
                received.withLock { $0.append(message.offset) }
                if message.offset == 300 { return }
            }
        }
        try await waitUntil("the partition to be assigned") { !consumer.consumer.assignment.isEmpty }
        while received.withLock({ $0.isEmpty }) {
            await consumer.consumer.pause([partition])
            await consumer.consumer.resume([partition])
            try await Task.sleep(for: .milliseconds(100))
        }
        try await waitUntil("the first 300 messages") { received.withLock { $0.count >= 300 } }
        await consumer.consumer.pause([partition])
        await consumer.consumer.resume([partition])
        // Past the late lookup (half a second after fetching started), then the message that ends the read.
        try await Task.sleep(for: .seconds(1))
        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "lookup", partition: 0, count: 1, prefix: "last")
        }
        try await withPatience("offset 300") { await reader.value }
        // Whether the rewind happened depends on timing (it did in most runs); what must hold does not.
        print("rewind test: librdkafka rewinds undone: \(consumer.consumer.rewindsUndone)")
        try await consumer.stop()
        #expect(received.withLock { $0 } == Array(0...300))
    }

    /// `latest` exposes a consumer to the forward form of that rewind (a skip): creating one says so; the default
    /// does not.
    @Test func latestAsTheOffsetResetIsWarnedAbout() throws {
        let warned = RecordingLogHandler.Store()
        _ = try KafkaConsumer(
            configuration: KafkaConfiguration(bootstrapServers: "127.0.0.1:9", properties: ["auto.offset.reset": "latest"]),
            groupID: "latest-group",
            topics: ["jobs"],
            logger: .recording("kafka", into: warned)
        )
        #expect(warned.all.contains { $0.hasPrefix("warning auto.offset.reset=latest") && $0.contains("prefer earliest") })
        let quiet = RecordingLogHandler.Store()
        _ = try KafkaConsumer(
            configuration: KafkaConfiguration(bootstrapServers: "127.0.0.1:9"),
            groupID: "default-group",
            topics: ["jobs"],
            logger: .recording("kafka", into: quiet)
        )
        #expect(!quiet.all.contains { $0.contains("auto.offset.reset") })
    }

    /// A member joins while the first one is pausing and resuming (and seeking) all the time: a slow reader
    /// (a few hundred messages a second) behind a 50-message buffer. Partitions move with cooperative-sticky, the first member commits what it
    /// read when they go. Together the two read every message, and neither ever skips one: within a member and
    /// partition, each message follows the previous one or starts again at or before it (a restart from a
    /// commit), never after a gap.
    @Test func aMemberJoiningWhileFetchingPausesAndResumesMissesNothing() async throws {
        let cluster = try makeCluster(topics: ["join": 4])
        try await withProducer(cluster) { producer in
            for partition in Int32(0)..<4 {
                try await produce(producer, topic: "join", partition: partition, count: 2000, prefix: "j\(partition)")
            }
        }
        let everything = Set((0..<4).flatMap { partition in (0..<2000).map { "\(partition)/\($0)" } })
        let properties = ["partition.assignment.strategy": "cooperative-sticky", "fetch.wait.max.ms": "100"]
        let log = DeliveryLog()
        let firstHolder = Mutex<KafkaConsumer?>(nil)
        var options = KafkaConsumer.Options()
        options.maxBufferedMessages = 50
        let first = try RunningConsumer(
            cluster, group: "join-group", topics: ["join"], properties: properties, options: options
        ) { partitions, lost in
            guard !lost, let consumer = firstHolder.withLock({ $0 }) else { return }
            let next = log.nextOffsets(of: "first", in: partitions)
            // The mock coordinator may answer REBALANCE_IN_PROGRESS for a moment: retry, as the worker does.
            for _ in 0..<20 {
                if (try? await consumer.commit(next)) != nil { break }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        firstHolder.withLock { $0 = first.consumer }
        let firstReader = Task { await log.read(first.consumer.messages, as: "first", pauseEvery: 5) }
        try await waitUntil("the first member to read 300 messages") { log.count(of: "first") >= 300 }

        let second = try RunningConsumer(cluster, group: "join-group", topics: ["join"], properties: properties)
        let secondReader = Task { await log.read(second.consumer.messages, as: "second", pauseEvery: nil) }
        try await waitUntil("the second member to take partitions") { !second.consumer.assignment.isEmpty }
        // The partitions moved while the first member was still reading (and pausing) its backlog.
        #expect(log.count(of: "first") < 8000)
        try await waitUntil("every message to be read by one member or the other") {
            log.delivered.isSuperset(of: everything)
        }
        try await second.stop()
        try await first.stop()
        _ = await (firstReader.value, secondReader.value)
        for member in ["first", "second"] {
            for (partition, offsets) in log.offsets(of: member) {
                let skips = zip(offsets, offsets.dropFirst()).filter { $1 > $0 + 1 }
                #expect(skips.isEmpty, "\(member) skipped in partition \(partition): \(skips.prefix(5))")
            }
        }
    }

    @Test func revocationWaitsForTheApplicationToCommitBeforeAnotherMemberTakesOver() async throws {
        let cluster = try makeCluster(topics: ["handover": 2])
        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "handover", partition: 0, count: 20, prefix: "h0")
            try await produce(producer, topic: "handover", partition: 1, count: 20, prefix: "h1")
        }
        let revocations = Mutex<[KafkaTopicPartition]>([])
        let firstHolder = Mutex<KafkaConsumer?>(nil)
        /// When the handler returned, and whether its commit was accepted.
        let handlerOutcome = Mutex<(finished: ContinuousClock.Instant, committed: Bool)?>(nil)
        // The handler commits its "finished work" (offset 15 of each revoked partition) only after a delay:
        // the revocation, and so the other member's start, must wait for it.
        // cooperative-sticky: librdkafka's mock coordinator refuses commits while an eager rebalance is in
        // progress (real brokers accept them), so the commit-on-revoke path is exercised incrementally.
        let properties = ["partition.assignment.strategy": "cooperative-sticky"]
        let first = try RunningConsumer(
            cluster,
            group: "handover-group",
            topics: ["handover"],
            properties: properties
        ) { partitions, lost in
            revocations.withLock { $0.append(contentsOf: partitions) }
            guard !lost, let consumer = firstHolder.withLock({ $0 }) else { return }
            try? await Task.sleep(for: .milliseconds(500))
            // The mock coordinator may still answer REBALANCE_IN_PROGRESS: retry, as the worker does.
            var committed = false
            for _ in 0..<20 where !committed {
                do {
                    try await consumer.commit(partitions.map { KafkaTopicPartitionOffset($0, offset: 15) })
                    committed = true
                } catch {
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            handlerOutcome.withLock { $0 = (ContinuousClock.now, committed) }
        }
        firstHolder.withLock { $0 = first.consumer }
        _ = try await first.read(40)

        let second = try RunningConsumer(cluster, group: "handover-group", topics: ["handover"], properties: properties)
        try await waitUntil("one partition to move") { second.consumer.assignment.count == 1 }
        let assignedSeenAt = ContinuousClock.now
        let moved = try #require(second.consumer.assignment.first)
        #expect(revocations.withLock { $0.contains(moved) })
        // The partition reached the second member only after the first member's handler had returned.
        let outcome = try #require(handlerOutcome.withLock { $0 }, "the handler had not finished when the partition moved")
        #expect(outcome.finished <= assignedSeenAt)
        let resumed = try await second.read(5)
        // Its work resumes at the handler's commit (when the mock accepted it), never past it.
        let start: Int64 = outcome.committed ? 15 : 0
        #expect(resumed.map(\.offset) == Array(start..<(start + 5)))
        #expect(resumed.allSatisfy { $0.topicPartition == moved })
        try await second.stop()
        try await first.stop()
    }

    @Test func closeRevokesSoTheApplicationCanCommitAndEndsTheMessages() async throws {
        let cluster = try makeCluster(topics: ["close": 1])
        let revoked = Mutex(false)
        let consumer = try RunningConsumer(cluster, group: "close-group", topics: ["close"]) { _, _ in
            revoked.withLock { $0 = true }
        }
        try await waitUntil("assignment") { consumer.consumer.assignment.count == 1 }
        try await consumer.stop()
        #expect(revoked.withLock { $0 })
        var iterator = consumer.consumer.messages.makeAsyncIterator()
        #expect(await iterator.next() == nil)
    }

    /// The revocation bound is measured on the consumer's time source: with a manual clock, a handler that never
    /// returns holds the revocation (and the close) exactly until the clock passes the bound.
    @Test func aRevocationHandlerThatOverrunsIsCutOffAtTheBoundOnTheConsumersClock() async throws {
        let cluster = try makeCluster(topics: ["overrun": 1])
        let clock = ManualClock()
        var options = KafkaConsumer.Options()
        options.revocationTimeout = .seconds(30)
        options.timeSource = TimeSource(clock, start: Date())
        let (gate, openGate) = AsyncStream<Void>.makeStream()
        defer { openGate.finish() }
        let handlerStarted = Mutex(false)
        let consumer = try RunningConsumer(cluster, group: "overrun-group", topics: ["overrun"], options: options) { _, _ in
            handlerStarted.withLock { $0 = true }
            for await _ in gate {}
        }
        try await waitUntil("assignment") { consumer.consumer.assignment.count == 1 }
        consumer.consumer.close()
        try await waitUntil("the revocation handler to start") { handlerStarted.withLock { $0 } }
        try await withPatience("the bound's timer to sleep") { await clock.waitForSleepers(1) }
        clock.advance(by: .seconds(29))
        try await Task.sleep(for: .milliseconds(300))
        #expect(consumer.consumer.hasJoinedGroup, "still revoking before the bound")
        try await withPatience("the bound's timer to sleep again") { await clock.waitForSleepers(1) }
        clock.advance(by: .seconds(1))
        try await withPatience("the close to finish after the bound") { try await consumer.stop() }
        #expect(!consumer.consumer.hasJoinedGroup)
        var iterator = consumer.consumer.messages.makeAsyncIterator()
        #expect(await iterator.next() == nil)
    }

    /// A consumer closed before it runs never joins: its messages end at once, and running it later returns.
    @Test func aConsumerClosedBeforeItRunsEndsItsMessagesAndDoesNotJoin() async throws {
        let consumer = try KafkaConsumer(
            configuration: KafkaConfiguration(bootstrapServers: "127.0.0.1:9"),
            groupID: "never-group",
            topics: ["jobs"],
            logger: testLogger()
        )
        consumer.close()
        var iterator = consumer.messages.makeAsyncIterator()
        #expect(await iterator.next() == nil)
        try await withPatience("run to return") { try await consumer.run() }
        #expect(!consumer.hasJoinedGroup)
        await consumer.pause([KafkaTopicPartition(topic: "jobs", partition: 0)])
        #expect(consumer.pausedPartitionCount == 0)
    }
}

/// What each member of a test group read, in order.
private final class DeliveryLog: Sendable {
    private let entries = Mutex<[(member: String, partition: Int32, offset: Int64)]>([])

    /// Reads `messages` until they end, recording each; with `pauseEvery`, sleeps 10 ms after that many.
    func read(_ messages: KafkaConsumerMessages, as member: String, pauseEvery: Int?) async {
        var count = 0
        for await message in messages {
            entries.withLock { $0.append((member, message.partition, message.offset)) }
            count += 1
            if let pauseEvery, count.isMultiple(of: pauseEvery) { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }

    func count(of member: String) -> Int {
        entries.withLock { $0.filter { $0.member == member }.count }
    }

    /// Every partition/offset read by any member.
    var delivered: Set<String> {
        entries.withLock { Set($0.map { "\($0.partition)/\($0.offset)" }) }
    }

    /// The offsets `member` read, by partition, in the order read.
    func offsets(of member: String) -> [Int32: [Int64]] {
        entries.withLock { entries in
            Dictionary(grouping: entries.filter { $0.member == member }, by: \.partition).mapValues { $0.map(\.offset) }
        }
    }

    /// For each of `partitions`, the offset after the last one `member` read (nothing for a partition it never read).
    func nextOffsets(of member: String, in partitions: [KafkaTopicPartition]) -> [KafkaTopicPartitionOffset] {
        let read = offsets(of: member)
        return partitions.compactMap { partition in
            read[partition.partition]?.max().map { KafkaTopicPartitionOffset(partition, offset: $0 + 1) }
        }
    }
}
