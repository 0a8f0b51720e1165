import DequeModule
import Synchronization

extension ProcessingEngine {
    /// The entries to start and the worker tasks that start them.
    ///
    /// Jobs run on long-lived worker tasks rather than on a task each: a task per job cost its creation, its task
    /// allocator's slabs and a hop through ``run()`` for every job. A worker is added when an entry finds no idle
    /// one, so there are as many as entries ever ran at once (handled or being delivered; the scheduler bounds
    /// those), as there were tasks before.
    ///
    /// This hand-off is kept specialized rather than built on `WaitableState`: it runs twice per job on the hot
    /// path, hands an entry to the worker that fell idle last (its stack and caches are warm; `WaitableState`
    /// wakes the oldest waiter first), and resumes with no allocation, where `WaitableState` gathers the tasks it
    /// wakes in an array to resume them after the lock (a `malloc` per wake).
    struct Workers {
        /// Entries no worker has taken yet, oldest first.
        var queue = Deque<Scheduler.Entry>()
        /// Workers waiting for an entry (`nil` tells them to end); the last to fall idle is woken first.
        var idle: [(id: UInt64, continuation: UnsafeContinuation<Scheduler.Entry?, Never>)] = []
        var nextIdleID: UInt64 = 0
        /// No entry will come any more: workers end once the queue is empty.
        var isFinished = false
    }

    // MARK: - Workers

    /// One worker task: starts entries until there are no more.
    func work() async {
        while let entry = await nextEntry() {
            await execute(entry)
        }
    }

    /// The oldest entry not yet taken, waiting for one if there is none; `nil` when the worker should end
    /// (the engine stopped, or the worker's task was cancelled).
    func nextEntry() async -> Scheduler.Entry? {
        if Task.isCancelled { return nil }
        enum Taken {
            case entry(Scheduler.Entry)
            case end
            case wait(UInt64)
        }
        let taken = workers.withLock { workers -> Taken in
            if let entry = workers.queue.popFirst() { return .entry(entry) }
            if workers.isFinished { return .end }
            workers.nextIdleID += 1
            return .wait(workers.nextIdleID)
        }
        switch taken {
        case .entry(let entry):
            return entry
        case .end:
            return nil
        case .wait(let id):
            return await withTaskCancellationHandler {
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Scheduler.Entry?, Never>) in
                    let now = workers.withLock { workers -> Scheduler.Entry?? in
                        // An entry or the end may have come between the two locks.
                        if let entry = workers.queue.popFirst() { return .some(entry) }
                        if workers.isFinished || Task.isCancelled { return .some(nil) }
                        workers.idle.append((id, continuation))
                        return .none
                    }
                    if let now { continuation.resume(returning: now) }
                }
            } onCancel: {
                let continuation = workers.withLock { workers in
                    workers.idle.firstIndex { $0.id == id }.map { workers.idle.remove(at: $0).continuation }
                }
                continuation?.resume(returning: nil)
            }
        }
    }

    /// Hands entries to idle workers, and queues the others with a new worker asked of ``run()`` for each.
    func start(_ entries: [Scheduler.Entry]) {
        for entry in entries {
            // One at a time: most calls start one entry, and this needs no array.
            let idle = workers.withLock { workers -> UnsafeContinuation<Scheduler.Entry?, Never>? in
                if let idle = workers.idle.popLast() { return idle.continuation }
                workers.queue.append(entry)
                return nil
            }
            if let idle {
                idle.resume(returning: entry)
            } else {
                commandContinuation.yield(.addWorker)
            }
        }
    }

    /// No entry will come: idle workers end now, busy ones once the queue is empty.
    func finishWorkers() {
        let idle = workers.withLock { workers in
            workers.isFinished = true
            let idle = workers.idle.map(\.continuation)
            workers.idle.removeAll()
            return idle
        }
        for continuation in idle { continuation.resume(returning: nil) }
    }
}
