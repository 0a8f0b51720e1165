@testable import Kafka
import Testing

@Suite("Kafka consumer state machine")
struct KafkaConsumerStateMachineTests {
    typealias StateMachine = KafkaConsumer.StateMachine

    let p0 = KafkaTopicPartition(topic: "jobs", partition: 0)
    let p1 = KafkaTopicPartition(topic: "jobs", partition: 1)
    let p2 = KafkaTopicPartition(topic: "jobs", partition: 2)

    /// A running consumer with `partitions` assigned.
    func running(assigned partitions: [KafkaTopicPartition]) -> StateMachine {
        var machine = StateMachine()
        _ = machine.run()
        machine.assigned(partitions, incrementally: false)
        return machine
    }

    /// The changes of the next poll, failing the test if the loop is told to do something else.
    func changes(_ machine: inout StateMachine, bufferIsFull: Bool = false) -> StateMachine.PauseChanges? {
        guard case .poll(let changes) = machine.nextPollLoopAction(bufferIsFull: bufferIsFull) else {
            Issue.record("expected the poll loop to poll")
            return nil
        }
        return changes
    }

    // MARK: Life

    @Test func runSubscribesOnceAndAgainReturnsAtOnce() {
        var machine = StateMachine()
        #expect(machine.lifecycle == .idle)
        #expect(machine.run() == .subscribe)
        #expect(machine.lifecycle == .running)
        #expect(machine.run() == .returnAtOnce)
        #expect(machine.lifecycle == .running)
    }

    @Test func closeWhileRunningWakesThePollLoopWhichLeavesTheGroupThenFinishes() {
        var machine = running(assigned: [p0])
        #expect(machine.hasJoinedGroup)
        #expect(machine.close() == .wakePollLoop)
        #expect(machine.lifecycle == .closing)
        #expect(machine.nextPollLoopAction(bufferIsFull: false) == .leaveGroup)
        // The final revocation runs inside the close, while closing.
        machine.revoked([p0])
        let finishStreams = machine.leftGroup()
        #expect(finishStreams)
        #expect(machine.lifecycle == .finished)
        #expect(!machine.hasJoinedGroup)
        #expect(machine.assignment.isEmpty)
    }

    @Test func closeBeforeRunFinishesTheStreamsAndRunThenReturnsAtOnce() {
        var machine = StateMachine()
        #expect(machine.close() == .finishStreams)
        #expect(machine.lifecycle == .finished)
        #expect(machine.run() == .returnAtOnce)
        #expect(machine.nextPollLoopAction(bufferIsFull: false) == .stop)
    }

    @Test func callsAfterCloseChangeNothing() {
        var machine = running(assigned: [p0])
        _ = machine.close()
        #expect(machine.close() == .nothing)
        #expect(machine.requestPause([p0], paused: true) == .nothing)
        #expect(machine.run() == .returnAtOnce)
        let finishStreams = machine.leftGroup()
        #expect(finishStreams)
        #expect(machine.close() == .nothing)
        #expect(machine.run() == .returnAtOnce)
        #expect(machine.requestPause([p0], paused: false) == .nothing)
        #expect(machine.nextPollLoopAction(bufferIsFull: true) == .stop)
        let finishAgain = machine.leftGroup()
        #expect(!finishAgain, "the streams are finished once")
        #expect(machine.lifecycle == .finished)
    }

    @Test func aRefusedSubscriptionFinishesTheConsumerOnce() {
        var machine = StateMachine()
        _ = machine.run()
        let finishStreams = machine.subscriptionFailed()
        #expect(finishStreams)
        #expect(machine.lifecycle == .finished)
        #expect(machine.close() == .nothing)
        let finishAgain = machine.subscriptionFailed()
        #expect(!finishAgain)
    }

    // MARK: Pauses

    @Test func aFullBufferPausesEveryAssignedPartitionAndADrainedOneResumesAndSeeksThem() {
        var machine = running(assigned: [p0, p1])
        let next1 = changes(&machine)
        #expect(next1?.isEmpty == true)
        #expect(machine.admit(41, in: p0) == .deliver)

        let full = changes(&machine, bufferIsFull: true)
        #expect(full?.pause == [p0, p1])
        #expect(full?.resume == [])
        #expect(machine.pausedInLibrary == [p0, p1])
        let next2 = changes(&machine, bufferIsFull: true)
        #expect(next2?.isEmpty == true, "nothing to change while it stays full")

        let drained = changes(&machine, bufferIsFull: false)
        #expect(drained?.resume == [p0, p1])
        // p1 delivered nothing since its assignment: librdkafka starts it, no seek.
        #expect(drained?.seeks == [KafkaTopicPartitionOffset(p0, offset: 42)])
        #expect(machine.pausedInLibrary.isEmpty)
    }

    @Test func theApplicationsPauseWaitsForThePollLoopThatAppliesIt() {
        var machine = running(assigned: [p0, p1])
        guard case .waitForPollLoop(let request) = machine.requestPause([p0], paused: true) else {
            Issue.record("a running consumer's pause waits for the poll loop")
            return
        }
        #expect(!machine.isPauseApplied(request))
        let applied = changes(&machine)
        #expect(applied?.pause == [p0])
        #expect(applied?.completesRequest == request)
        #expect(!machine.isPauseApplied(request), "applied only once the poll loop made the change")
        machine.pausesApplied(through: request)
        #expect(machine.isPauseApplied(request))
        let next3 = changes(&machine)
        #expect(next3?.completesRequest == nil)

        // The buffer filling and draining leaves the application's pause in place.
        let next4 = changes(&machine, bufferIsFull: true)
        #expect(next4?.pause == [p1])
        let next5 = changes(&machine, bufferIsFull: false)
        #expect(next5?.resume == [p1])
        #expect(machine.pausedInLibrary == [p0])

        guard case .waitForPollLoop(let resume) = machine.requestPause([p0], paused: false) else {
            Issue.record("a running consumer's resume waits for the poll loop")
            return
        }
        let resumed = changes(&machine)
        #expect(resumed?.resume == [p0])
        #expect(resumed?.completesRequest == resume)
    }

    @Test func aRequestWithNothingToChangeIsStillCompletedByThePollLoop() {
        var machine = running(assigned: [p0])
        guard case .waitForPollLoop(let request) = machine.requestPause([p2], paused: true) else {
            Issue.record("a running consumer's pause waits for the poll loop")
            return
        }
        let applied = changes(&machine)
        #expect(applied?.pause == [], "p2 is not assigned")
        #expect(applied?.completesRequest == request)
        #expect(applied?.isEmpty == false)
    }

    @Test func aPauseBeforeRunIsAppliedWhenThePartitionIsAssigned() {
        var machine = StateMachine()
        #expect(machine.requestPause([p0], paused: true) == .nothing)
        _ = machine.run()
        machine.assigned([p0, p1], incrementally: false)
        let next6 = changes(&machine)
        #expect(next6?.pause == [p0])
    }

    @Test func closingReleasesWaitingPauses() {
        var machine = running(assigned: [p0])
        guard case .waitForPollLoop(let request) = machine.requestPause([p0], paused: true) else {
            Issue.record("a running consumer's pause waits for the poll loop")
            return
        }
        _ = machine.close()
        #expect(machine.isPauseApplied(request))
    }

    // MARK: Rebalances

    @Test func anEagerAssignmentReplacesTheAssignmentAndForgetsEveryPosition() {
        var machine = running(assigned: [p0, p1])
        _ = machine.admit(10, in: p0)
        _ = changes(&machine, bufferIsFull: true)
        machine.assigned([p1, p2], incrementally: false)
        #expect(machine.assignment == [p1, p2])
        #expect(machine.pausedInLibrary.isEmpty)
        // p0's position is gone: an earlier offset is no repeat.
        machine.assigned([p0], incrementally: true)
        #expect(machine.admit(3, in: p0) == .deliver)
    }

    @Test func anIncrementalAssignmentAddsPartitionsAndKeepsTheOthersPositions() {
        var machine = running(assigned: [p0])
        _ = machine.admit(10, in: p0)
        machine.assigned([p1], incrementally: true)
        #expect(machine.assignment == [p0, p1])
        #expect(machine.admit(5, in: p0) == .seekBack(to: 11))
        #expect(machine.rewindsUndone == 1)
    }

    @Test func aRevocationForgetsThePartitionsPausesAndPositions() {
        var machine = running(assigned: [p0, p1])
        _ = machine.requestPause([p0], paused: true)
        _ = changes(&machine)
        _ = machine.admit(10, in: p0)
        machine.revoked([p0])
        #expect(machine.assignment == [p1])
        #expect(machine.pausedInLibrary.isEmpty)
        #expect(machine.hasJoinedGroup, "a revocation is not leaving the group")
        // Assigned again, it is neither paused by the application nor positioned.
        machine.assigned([p0], incrementally: true)
        let next7 = changes(&machine)
        #expect(next7?.pause == [])
        #expect(machine.admit(0, in: p0) == .deliver)
    }

    @Test func aFailedRebalanceDropsTheWholeAssignment() {
        var machine = running(assigned: [p0, p1])
        _ = changes(&machine, bufferIsFull: true)
        _ = machine.admit(10, in: p1)
        machine.rebalanceFailed()
        #expect(machine.assignment.isEmpty)
        #expect(machine.pausedInLibrary.isEmpty)
        machine.assigned([p1], incrementally: true)
        #expect(machine.admit(0, in: p1) == .deliver)
    }

    @Test func onlyDroppedRepeatsCountAsRewindsUndone() {
        var machine = running(assigned: [p0])
        _ = machine.admit(10, in: p0)
        for _ in 0..<PartitionPositions.maxSeeksBack {
            #expect(machine.admit(0, in: p0) == .seekBack(to: 11))
        }
        #expect(machine.admit(0, in: p0) == .acceptRewind(from: 11))
        #expect(machine.rewindsUndone == PartitionPositions.maxSeeksBack)
    }
}
