import Coordination
import CoreMetrics
import Kafka
@testable import KafkaPipeline
import Pipeline
import Synchronization
import Testing

/// The run-ahead gate's pauses against the consumer: a partition is paused while, and only while, the gate holds
/// messages of it. Found as a stall of `RebalanceCommitTests` in a loaded suite: the feed paused a partition after
/// the gate's lock, a release on the storing task resumed it in between, and the late pause kept a partition with
/// nothing held paused for good.
@Suite("Kafka worker: run-ahead gate")
struct RunAheadGateTests {
    private static let topic = "context-requests"

    /// The consumer as the gate's requests leave it: they apply in the order recorded, as the consumer's do.
    private final class PauseRecorder: Sendable {
        private let state = Mutex<(paused: Set<Int32>, requests: [String])>(([], []))

        /// - Parameter latency: time taken before the request is recorded, as a consumer's own lock may take: it
        ///   widens the window in which a request made after the gate's lock would be overtaken.
        func record(_ partitions: [KafkaTopicPartition], _ paused: Bool, latency: Duration = .zero) {
            if latency > .zero { RunAheadGateTests.spin(for: latency) }
            state.withLock { state in
                for partition in partitions {
                    if paused { state.paused.insert(partition.partition) } else { state.paused.remove(partition.partition) }
                    state.requests.append("\(paused ? "pause" : "resume") \(partition.partition)")
                }
            }
        }

        var paused: Set<Int32> { state.withLock { $0.paused } }
        var requests: [String] { state.withLock { $0.requests } }
    }

    private static func spin(for duration: Duration) {
        let clock = ContinuousClock()
        let end = clock.now + duration
        while clock.now < end {}
    }

    /// What the two tasks of the concurrent test share.
    private final class Shared: Sendable {
        let submitted = Mutex<[JobSource]>([])
        let admitted = Atomic<Bool>(false)
        let admitting = Atomic<Bool>(true)
    }

    private static func book(open partitions: [Int32]) -> OffsetBook {
        let book = OffsetBook(metrics: WorkerMetrics(factory: NOOPMetricsHandler.instance), clock: .system)
        book.open(partitions.map { PartitionID(topic: topic, partition: $0) })
        return book
    }

    private static func message(_ partition: Int32, _ offset: Int64) -> KafkaMessage {
        KafkaMessage(topic: topic, partition: partition, offset: offset, key: nil, value: [])
    }

    private static func source(_ partition: Int32, _ offset: Int64) -> JobSource {
        JobSource(partition: PartitionID(topic: topic, partition: partition), offset: offset)
    }

    @Test func aPartitionIsPausedWhileItsMessagesAreHeldAndResumedWhenTheyAreReleased() {
        let book = Self.book(open: [0])
        let recorder = PauseRecorder()
        let gate = RunAheadGate(limit: 4, book: book, requestPause: { recorder.record($0, $1) })
        var submitted: [Int64] = []
        let submit: (KafkaMessage) -> Void = { message in
            if book.received(Self.source(message.partition, message.offset)) { submitted.append(message.offset) }
        }

        for offset in Int64(0)..<4 {
            #expect(gate.admit(Self.message(0, offset), submit: submit) == .submitted)
        }
        #expect(gate.admit(Self.message(0, 4), submit: submit) == .held(paused: true))
        #expect(gate.admit(Self.message(0, 5), submit: submit) == .held(paused: false), "behind a held message")
        #expect(recorder.requests == ["pause 0"], "paused once, by the gate itself")
        #expect(gate.release(submit: submit) == [], "the mark has not moved")

        book.markDone(Self.source(0, 0))
        book.markDone(Self.source(0, 1))
        #expect(gate.release(submit: submit).map(\.partition) == [0])
        #expect(submitted == [0, 1, 2, 3, 4, 5], "held messages go in their order")
        #expect(recorder.requests == ["pause 0", "resume 0"])
        #expect(recorder.paused.isEmpty)
        #expect(gate.heldCount == 0)
    }

    /// A message of a partition being revoked (closed in the book, its jobs still finishing) is not held: held,
    /// it would be submitted at the partition's next assignment ahead of the messages that assignment starts
    /// with, and its pause could outlive the revocation.
    @Test func aMessageOfARevokedPartitionIsNeverHeld() {
        let book = Self.book(open: [0])
        let recorder = PauseRecorder()
        let gate = RunAheadGate(limit: 2, book: book, requestPause: { recorder.record($0, $1) })
        var refused = 0
        let submit: (KafkaMessage) -> Void = { message in
            if !book.received(Self.source(message.partition, message.offset)) { refused += 1 }
        }
        #expect(gate.admit(Self.message(0, 0), submit: submit) == .submitted)
        #expect(gate.admit(Self.message(0, 1), submit: submit) == .submitted)

        book.close([PartitionID(topic: Self.topic, partition: 0)])
        gate.forget([PartitionID(topic: Self.topic, partition: 0)])
        #expect(gate.admit(Self.message(0, 2), submit: submit) == .submitted, "offered to the book, not held")
        #expect(refused == 1, "the book refuses it: the partition's next owner reads it from the committed offset")
        #expect(gate.heldCount == 0)
        #expect(recorder.requests.isEmpty)
    }

    /// The race itself: one task admits the messages of four partitions, taking none of a partition the
    /// consumer has paused, while another finishes jobs and releases, as the feed and the storing task do. Each
    /// pause or resume takes a moment before the consumer records it. A pause recorded after a resume that the
    /// gate decided later leaves a partition paused with nothing held: its messages stop.
    @Test func concurrentAdmitsAndReleasesLeaveNoPartitionPaused() async {
        let partitions: [Int32] = [0, 1, 2, 3]
        let perPartition: Int64 = 3_000
        let book = Self.book(open: partitions)
        let recorder = PauseRecorder()
        let gate = RunAheadGate(limit: 3, book: book) { partitions, paused in
            recorder.record(partitions, paused, latency: .microseconds(Int.random(in: 0...100)))
        }
        let shared = Shared()
        let submit: @Sendable (KafkaMessage) -> Void = { message in
            let source = Self.source(message.partition, message.offset)
            if book.received(source) { shared.submitted.withLock { $0.append(source) } }
        }

        // Each partition starts held: its fourth message is three past its first, unfinished one.
        for partition in partitions {
            for offset in Int64(0)..<4 { _ = gate.admit(Self.message(partition, offset), submit: submit) }
        }
        #expect(recorder.paused == Set(partitions))

        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var next = [Int64](repeating: 4, count: partitions.count)
                var idleRounds = 0
                // Bounded, so that a partition left paused fails the expectations below instead of hanging.
                while next.contains(where: { $0 < perPartition }), idleRounds < 20_000 {
                    let paused = recorder.paused
                    var progressed = false
                    for (index, partition) in partitions.enumerated() where next[index] < perPartition && !paused.contains(partition) {
                        _ = gate.admit(Self.message(partition, next[index]), submit: submit)
                        next[index] += 1
                        progressed = true
                    }
                    idleRounds = progressed ? 0 : idleRounds + 1
                    await Task.yield()
                }
                shared.admitted.store(!next.contains { $0 < perPartition }, ordering: .releasing)
                shared.admitting.store(false, ordering: .releasing)
            }
            group.addTask {
                while true {
                    let ready = shared.submitted.withLock { sources in
                        defer { sources.removeAll() }
                        return sources
                    }
                    // Out of order within the batch, as jobs finish.
                    for source in ready.reversed() { book.markDone(source) }
                    gate.release(submit: submit)
                    if ready.isEmpty {
                        if !shared.admitting.load(ordering: .acquiring) { return }
                        await Task.yield()
                    }
                }
            }
        }
        gate.release(submit: submit)

        let everyMessageAdmitted = shared.admitted.load(ordering: .acquiring)
        #expect(everyMessageAdmitted, "every partition's messages were taken (paused: \(recorder.paused.sorted()))")
        #expect(gate.heldCount == 0)
        #expect(recorder.paused.isEmpty, "no partition stays paused once nothing is held")
        let pauses = recorder.requests.filter { $0.hasPrefix("pause") }.count
        print("run-ahead gate: \(pauses) pauses of \(partitions.count) partitions, \(perPartition) messages each")
    }
}
