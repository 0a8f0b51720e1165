@testable import Kafka
import Testing

/// A partition's messages deleted by the broker before the consumer read them (docs/kafka.md, "Retention").
///
/// librdkafka 2.0.2's mock cluster keeps at most 5 MiB of log per partition (`max_size` in
/// `rd_kafka_mock_partition_init`, not configurable through its API): appending beyond it deletes the oldest
/// message sets and moves the partition's log start, as a real broker's `retention.bytes` does. A test that produces
/// more than that to a partition before it is read loses the oldest messages: no consumer can read them.
@Suite("Kafka retention: messages deleted before they were read")
struct RetentionTests {
    static let megabyte = [UInt8](repeating: 0x78, count: 1_000_000)

    /// One partition's log: small messages, eight of 1 MB (one message set each), small messages.
    @Test func theMockClusterKeepsFiveMebibytesPerPartitionAndDeletesTheOldestMessages() async throws {
        let cluster = try makeCluster(topics: ["retained": 1])
        try await withProducer(cluster, properties: ["message.max.bytes": "1048588"]) { producer in
            try await produce(producer, topic: "retained", partition: 0, count: 2, prefix: "early")
            for index in 0..<8 {
                _ = try await producer.send(topic: "retained", partition: 0, key: Array("huge-\(index)".utf8), value: Self.megabyte)
            }
            try await produce(producer, topic: "retained", partition: 0, count: 2, prefix: "late")
        }
        var options = KafkaConsumer.Options()
        options.maxValueBytes = 1000
        let consumer = try RunningConsumer(cluster, group: "retention-mock", topics: ["retained"], options: options)
        let messages = try await consumer.read(7)
        try await consumer.stop()
        // Offsets 0 and 1 (early) and 2 to 4 (the first three of 1 MB) are gone: the log starts at the newest five
        // message sets of 1 MB that fit in 5 MiB.
        #expect(messages.map(\.offset) == Array(Int64(5)...11))
        #expect(messages.prefix(5).allSatisfy { $0.droppedValueBytes == 1_000_000 })
        #expect(messages.suffix(2).map(\.valueString).sorted() == ["late-0", "late-1"])
    }

    /// A consumer that paused a partition while the broker deleted its unread messages goes on from the log
    /// start when it resumes (no stall), and counts the offsets it never received.
    @Test func offsetsDeletedBeforeTheyWereReadAreSkippedAndCounted() async throws {
        let cluster = try makeCluster(topics: ["deleted": 1])
        let partition = KafkaTopicPartition(topic: "deleted", partition: 0)
        var options = KafkaConsumer.Options()
        options.maxValueBytes = 1000
        let consumer = try RunningConsumer(cluster, group: "retention-gap", topics: ["deleted"], options: options)
        try await withProducer(cluster, properties: ["message.max.bytes": "1048588"]) { producer in
            try await produce(producer, topic: "deleted", partition: 0, count: 3, prefix: "read")
            let first = try await consumer.read(3)
            #expect(first.map(\.offset) == [0, 1, 2])
            await consumer.consumer.pause([partition])
            // Offsets 3 to 10, of which the mock keeps the newest five (6 to 10) when the eighth is appended.
            for index in 0..<8 {
                _ = try await producer.send(topic: "deleted", partition: 0, key: Array("huge-\(index)".utf8), value: Self.megabyte)
            }
            try await produce(producer, topic: "deleted", partition: 0, count: 2, prefix: "after")
        }
        await consumer.consumer.resume([partition])
        // The resume seeks to the position, 3, which is no longer in the log (OFFSET_OUT_OF_RANGE); librdkafka
        // resets the partition to its log start (auto.offset.reset=earliest) and the consumer goes on there.
        let rest = try await consumer.read(7)
        try await consumer.stop()
        #expect(rest.map(\.offset) == Array(Int64(6)...12))
        #expect(consumer.consumer.offsetsSkipped == 3, "offsets 3, 4 and 5 were never received")
        #expect(consumer.consumer.rewindsUndone == 0)
    }

    @Test func aGapOfMoreThanOneOffsetIsCountedAndAMarkersGapIsNot() {
        let p0 = KafkaTopicPartition(topic: "jobs", partition: 0)
        var machine = KafkaConsumer.StateMachine()
        _ = machine.run()
        machine.assigned([p0], incrementally: false)
        // Where a partition starts after its assignment is the group's commit, not a gap.
        #expect(machine.admit(100, in: p0) == .deliver)
        #expect(machine.admit(101, in: p0) == .deliver)
        // One offset jumped over: a transaction's commit marker.
        #expect(machine.admit(103, in: p0) == .deliver)
        #expect(machine.offsetsSkipped == 0)
        // Offsets 104 to 149 never came.
        #expect(machine.admit(150, in: p0) == .deliver)
        #expect(machine.offsetsSkipped == 46)
        // A repeat is no gap.
        #expect(machine.admit(120, in: p0) == .seekBack(to: 151))
        #expect(machine.offsetsSkipped == 46)
    }
}
