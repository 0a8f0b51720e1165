@testable import Kafka
import Testing

@Suite("Partition positions: repeats from a librdkafka rewind")
struct PartitionPositionsTests {
    let partition = KafkaTopicPartition(topic: "jobs", partition: 0)
    let other = KafkaTopicPartition(topic: "jobs", partition: 1)

    @Test func messagesInOrderAndGapsForwardAreDelivered() {
        var positions = PartitionPositions()
        #expect(positions.position(of: partition) == nil)
        #expect(positions.admit(5, in: partition) == .deliver)
        #expect(positions.admit(6, in: partition) == .deliver)
        // Compaction and transaction markers leave gaps: normal.
        #expect(positions.admit(10, in: partition) == .deliver)
        #expect(positions.position(of: partition) == 11)
    }

    @Test func aRepeatIsDroppedAndThePartitionSoughtBackToItsPosition() {
        var positions = PartitionPositions()
        for offset in Int64(0)..<220 { #expect(positions.admit(offset, in: partition) == .deliver) }
        #expect(positions.admit(0, in: partition) == .seekBack(to: 220))
        // The position does not move back, and the seek lands where the partition left off.
        #expect(positions.position(of: partition) == 220)
        #expect(positions.admit(220, in: partition) == .deliver)
        // Partitions are independent.
        #expect(positions.admit(0, in: other) == .deliver)
    }

    @Test func repeatsThatSeekingBackDoesNotStopAreAcceptedAfterThreeSeeks() {
        var positions = PartitionPositions()
        _ = positions.admit(99, in: partition)
        // The log was truncated below 100: every seek back fails and librdkafka starts again at 0.
        for _ in 0..<PartitionPositions.maxSeeksBack {
            #expect(positions.admit(0, in: partition) == .seekBack(to: 100))
        }
        #expect(positions.admit(0, in: partition) == .acceptRewind(from: 100))
        #expect(positions.position(of: partition) == 1)
        #expect(positions.admit(1, in: partition) == .deliver)
    }

    @Test func progressResetsTheCountOfSeeksBack() {
        var positions = PartitionPositions()
        _ = positions.admit(9, in: partition)
        for round in 0..<5 {
            let position = Int64(10 + round)
            #expect(positions.admit(0, in: partition) == .seekBack(to: position))
            #expect(positions.admit(position, in: partition) == .deliver)
        }
    }

    @Test func aReassignedPartitionStartsWhereverItsFirstMessageIs() {
        var positions = PartitionPositions()
        _ = positions.admit(500, in: partition)
        _ = positions.admit(700, in: other)
        positions.forget([partition])
        // Back from the group's commit, behind where this member had read: not a rewind.
        #expect(positions.admit(300, in: partition) == .deliver)
        #expect(positions.admit(0, in: other) == .seekBack(to: 701))
        positions.forget(nil)
        #expect(positions.admit(0, in: other) == .deliver)
    }
}
