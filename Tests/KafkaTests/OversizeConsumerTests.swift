@testable import Kafka
import MioctxTestSupport
import Testing

/// The consumer's bounds on memory: values over a limit are not copied, and the buffer is bounded by bytes.
@Suite("Kafka consumer: oversized messages and the byte bound")
struct OversizeConsumerTests {
    func message(_ offset: Int64, valueBytes: Int) -> KafkaMessage {
        KafkaMessage(topic: "jobs", partition: 0, offset: offset, key: nil, value: [UInt8](repeating: 0x61, count: valueBytes))
    }

    @Test func theBufferPausesFetchingAtItsByteBoundAndResumesBelowHalf() async {
        // Room for 1,000 messages, but only about 10 of 100 KB.
        let buffer = KafkaMessageBuffer(capacity: 1000, maxBytes: 1_000_000)
        for offset in 0..<9 {
            buffer.push(message(Int64(offset), valueBytes: 100_000))
        }
        #expect(!buffer.keepsFetchingPaused(), "below the byte bound")
        buffer.push(message(9, valueBytes: 100_000))
        #expect(buffer.keepsFetchingPaused(), "10 messages of 100 KB reach the bound of 1 MB")
        #expect(buffer.byteCount >= 1_000_000)
        for _ in 0..<5 {
            _ = await buffer.next()
        }
        #expect(buffer.keepsFetchingPaused(), "half the bytes are still there")
        let read = await buffer.next()
        #expect(read.resumeFetching, "below half of the bytes, the read asks to resume")
        #expect(!buffer.keepsFetchingPaused())
        #expect(buffer.purge([KafkaTopicPartition(topic: "jobs", partition: 0)]) == 4)
        #expect(buffer.byteCount == 0)
    }

    @Test func aValueOverTheLimitIsNotCopiedAndItsSizeIsKept() async throws {
        let cluster = try makeCluster(topics: ["big": 1])
        try await withProducer(cluster, properties: ["message.max.bytes": "2000000"]) { producer in
            _ = try await producer.send(topic: "big", key: Array("small".utf8), value: Array("tiny".utf8))
            _ = try await producer.send(
                topic: "big", key: Array("large".utf8), value: [UInt8](repeating: 0x62, count: 1_500_000),
                headers: [KafkaHeader(key: "origin", value: "test")]
            )
        }
        var options = KafkaConsumer.Options()
        options.maxValueBytes = 100_000
        let consumer = try RunningConsumer(cluster, group: "oversize", topics: ["big"], options: options)
        let messages = try await consumer.read(2)
        try await consumer.stop()
        #expect(messages[0].value == Array("tiny".utf8))
        #expect(messages[0].droppedValueBytes == nil)
        #expect(messages[1].value == nil, "the value is not copied")
        #expect(messages[1].droppedValueBytes == 1_500_000)
        #expect(messages[1].key == Array("large".utf8), "key and headers still are")
        #expect(messages[1].header("origin")?.stringValue == "test")
        #expect(messages[1].heldBytes < 1000)
    }
}
