import Coordination
import Synchronization

/// The engine's state under its one lock: the scheduler, whether items are accepted, and the tasks waiting for a
/// condition on them (capacity, a partition or everything idle).
extension ProcessingEngine {
    enum Condition {
        case idle(PartitionID?)
        case capacity
    }

    /// What wakes a task waiting for a ``Condition``.
    enum Wake: Sendable {
        /// The condition holds.
        case met
        /// The state changed in a way that may meet the condition: check it again.
        case recheck
        /// The waiting task was cancelled.
        case cancelled
    }

    struct State: Sendable {
        var scheduler: Scheduler
        var accepting = true
        var backpressureGeneration: UInt64 = 0

        func isMet(_ condition: Condition) -> Bool {
            switch condition {
            case .idle(nil): scheduler.pendingCount == 0
            case .idle(let partition?): scheduler.pendingCount(in: partition) == 0
            case .capacity: !scheduler.isInputPaused || !accepting
            }
        }

        /// Whether some waiter's condition may hold after a change that touched `partition`: the waiters then
        /// check their own condition again. Cheap, and false in the steady state where nobody needs waking.
        func mayMeetWaiters(touching partition: PartitionID?) -> Bool {
            isMet(.capacity) || scheduler.pendingCount == 0
                || partition.map { scheduler.pendingCount(in: $0) == 0 } ?? false
        }
    }

    struct Outcome {
        var start: [Scheduler.Entry]
        var backpressure: (Scheduler.Backpressure, UInt64)?
    }

    /// Refuses new items and wakes the waiters whose condition that meets.
    func stopAccepting() {
        state.withLock { state, waiters in
            state.accepting = false
            Self.wakeWaiters(&waiters, of: state, touching: nil)
        }
    }

    // MARK: - Carrying out actions

    static func outcome(
        of actions: Scheduler.Actions,
        in state: inout State,
        waiters: inout Waiters<Wake>,
        touching partition: PartitionID?
    ) -> Outcome {
        var backpressure: (Scheduler.Backpressure, UInt64)?
        if let change = actions.backpressure {
            state.backpressureGeneration += 1
            backpressure = (change, state.backpressureGeneration)
        }
        wakeWaiters(&waiters, of: state, touching: partition)
        return Outcome(start: actions.start, backpressure: backpressure)
    }

    private static func wakeWaiters(_ waiters: inout Waiters<Wake>, of state: State, touching partition: PartitionID?) {
        if !waiters.isEmpty, state.mayMeetWaiters(touching: partition) {
            waiters.wakeAll(with: .recheck)
        }
    }

    func perform(_ outcome: Outcome) {
        start(outcome.start)
        if let (change, generation) = outcome.backpressure {
            // Pause and resume are decided under the state lock but delivered after it; a generation number
            // keeps a stale change from overtaking a newer one.
            deliveredBackpressure.withLock { delivered in
                guard generation > delivered else { return }
                delivered = generation
                onEvent(change == .pauseInput ? .pauseInput : .resumeInput)
            }
        }
    }

    /// Returns once `condition` holds, or when the task is cancelled.
    func wait(for condition: Condition) async {
        while true {
            let wake = await state.wait(cancelled: .cancelled) { state in
                state.isMet(condition) ? .met : nil
            }
            switch wake {
            case .met, .cancelled: return
            case .recheck: continue
            }
        }
    }
}
