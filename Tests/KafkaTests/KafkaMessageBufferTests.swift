@testable import Kafka
import Testing

@Suite("Kafka consumer's message buffer")
struct KafkaMessageBufferTests {
    func message(_ offset: Int64, partition: Int32 = 0) -> KafkaMessage {
        KafkaMessage(topic: "jobs", partition: partition, offset: offset, key: nil, value: nil)
    }

    @Test func messagesComeOutInOrderAndAFinishedBufferEndsOnceDrained() async {
        let buffer = KafkaMessageBuffer(capacity: 10)
        buffer.push(message(0))
        buffer.push(message(1))
        buffer.finish()
        #expect(await buffer.next().message?.offset == 0)
        #expect(await buffer.next().message?.offset == 1)
        #expect(await buffer.next().message == nil)
    }

    @Test func aWaitingReaderIsHandedThePushedMessage() async throws {
        let buffer = KafkaMessageBuffer(capacity: 10)
        let reader = Task { await buffer.next().message?.offset }
        // Until the reader waits, a push would simply queue the message; either way the reader gets it.
        try await Task.sleep(for: .milliseconds(20))
        buffer.push(message(7))
        #expect(await reader.value == 7)
        #expect(buffer.count == 0)
    }

    @Test func finishingWakesAWaitingReaderWithTheEnd() async throws {
        let buffer = KafkaMessageBuffer(capacity: 10)
        let reader = Task { await buffer.next().message }
        try await Task.sleep(for: .milliseconds(20))
        buffer.finish()
        #expect(await reader.value == nil)
    }

    @Test func aCancelledReaderGetsTheEndAndLaterMessagesWait() async throws {
        let buffer = KafkaMessageBuffer(capacity: 10)
        let reader = Task { await buffer.next().message }
        try await Task.sleep(for: .milliseconds(20))
        reader.cancel()
        #expect(await reader.value == nil)
        buffer.push(message(3))
        #expect(buffer.count == 1, "no cancelled reader took it")
    }

    @Test func aFullBufferKeepsFetchingPausedUntilDrainedBelowHalf() async {
        let buffer = KafkaMessageBuffer(capacity: 4)
        for offset in 0..<4 { buffer.push(message(Int64(offset))) }
        #expect(buffer.keepsFetchingPaused())
        #expect(await buffer.next().resumeFetching == false, "3 left: not below half")
        #expect(await buffer.next().resumeFetching == false, "2 left: not below half")
        #expect(buffer.keepsFetchingPaused())
        #expect(await buffer.next().resumeFetching == true, "1 left: the poll loop should resume")
        #expect(!buffer.keepsFetchingPaused())
        #expect(await buffer.next().resumeFetching == false, "no longer paused")
    }

    @Test func purgeDropsOnlyTheRevokedPartitions() async {
        let buffer = KafkaMessageBuffer(capacity: 10)
        buffer.push(message(0, partition: 0))
        buffer.push(message(0, partition: 1))
        buffer.push(message(1, partition: 0))
        #expect(buffer.purge([KafkaTopicPartition(topic: "jobs", partition: 0)]) == 2)
        #expect(await buffer.next().message?.partition == 1)
        #expect(buffer.count == 0)
    }
}
