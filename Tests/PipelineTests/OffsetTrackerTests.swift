import Pipeline
import Testing

@Suite struct OffsetTrackerTests {
    let partition = PartitionID(topic: "jobs", partition: 0)

    @Test func committedOffsetSkipsUnfinishedJobs() {
        var tracker = OffsetTracker()
        for offset in Int64(0) ..< 5 { tracker.received(offset, in: partition) }
        #expect(tracker.committableOffset(for: partition) == nil)
        let advanced1 = tracker.markDone(1, in: partition)
        #expect(advanced1 == false)
        let advanced2 = tracker.markDone(3, in: partition)
        #expect(advanced2 == false)
        let advanced3 = tracker.markDone(2, in: partition)
        #expect(advanced3 == false)
        #expect(tracker.committableOffset(for: partition) == nil)
        let advanced4 = tracker.markDone(0, in: partition)
        #expect(advanced4 == true)
        #expect(tracker.committableOffset(for: partition) == 4)
        #expect(tracker.pendingCount(in: partition) == 1)
        let advanced5 = tracker.markDone(4, in: partition)
        #expect(advanced5 == true)
        #expect(tracker.committableOffset(for: partition) == 5)
        #expect(tracker.pendingCount(in: partition) == 0)
    }

    @Test func committedOffsetFollowsReceivedOffsetsAcrossGaps() {
        var tracker = OffsetTracker()
        for offset: Int64 in [10, 11, 15, 20] { tracker.received(offset, in: partition) }
        tracker.markDone(15, in: partition)
        tracker.markDone(10, in: partition)
        #expect(tracker.committableOffset(for: partition) == 11)
        tracker.markDone(11, in: partition)
        #expect(tracker.committableOffset(for: partition) == 16)
        tracker.markDone(20, in: partition)
        #expect(tracker.committableOffset(for: partition) == 21)
    }

    @Test func committedOffsetMatchesModelUnderRandomCompletionOrder() {
        var generator = SplitMix64(seed: 42)
        for round in 0 ..< 50 {
            var tracker = OffsetTracker()
            var received: [Int64] = []
            var offset = Int64(round * 1000)
            for _ in 0 ..< 200 {
                offset += Int64.random(in: 1 ... 3, using: &generator)
                received.append(offset)
                tracker.received(offset, in: partition)
            }
            var done = Set<Int64>()
            for completed in received.shuffled(using: &generator) {
                let before = tracker.committableOffset(for: partition)
                let advanced = tracker.markDone(completed, in: partition)
                done.insert(completed)
                let prefix = received.prefix { done.contains($0) }
                let expected = prefix.last.map { $0 + 1 }
                #expect(tracker.committableOffset(for: partition) == expected)
                #expect(advanced == (before != expected))
            }
            #expect(tracker.committableOffset(for: partition) == received.last! + 1)
        }
    }

    @Test func partitionsAreIndependent() {
        var tracker = OffsetTracker()
        let other = PartitionID(topic: "jobs", partition: 1)
        tracker.received(0, in: partition)
        tracker.received(1, in: partition)
        tracker.received(0, in: other)
        tracker.markDone(0, in: other)
        tracker.markDone(1, in: partition)
        #expect(tracker.committableOffset(for: other) == 1)
        #expect(tracker.committableOffset(for: partition) == nil)
        #expect(tracker.committableOffsets == [other: 1])
    }

    @Test func forgottenPartitionIgnoresLateCompletions() {
        var tracker = OffsetTracker()
        tracker.received(0, in: partition)
        tracker.received(1, in: partition)
        tracker.markDone(0, in: partition)
        tracker.forget(partition)
        #expect(tracker.committableOffset(for: partition) == nil)
        let advanced6 = tracker.markDone(1, in: partition)
        #expect(advanced6 == false)
        #expect(tracker.partitions.isEmpty)
    }

    @Test func duplicateAndUnknownOffsetsAreIgnored() {
        var tracker = OffsetTracker()
        let accepted7 = tracker.received(5, in: partition)
        #expect(accepted7)
        let accepted8 = tracker.received(5, in: partition)
        #expect(accepted8 == false)
        let advanced9 = tracker.markDone(6, in: partition)
        #expect(advanced9 == false)
        let advanced10 = tracker.markDone(5, in: partition)
        #expect(advanced10)
        #expect(tracker.committableOffset(for: partition) == 6)
    }

    @Test func rewoundOffsetNeverMovesTheCommitBackward() {
        var tracker = OffsetTracker()
        tracker.received(10, in: partition)
        tracker.markDone(10, in: partition)
        tracker.received(11, in: partition)
        tracker.received(7, in: partition)
        #expect(tracker.pendingCount(in: partition) == 2)
        tracker.markDone(11, in: partition)
        #expect(tracker.committableOffset(for: partition) == 11)
        tracker.markDone(7, in: partition)
        #expect(tracker.committableOffset(for: partition) == 12)
    }
}

/// A seeded generator so that randomized tests repeat exactly.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
