import Synchronization

/// The bounded hand-off between the consumer's poll thread and the application's async reader.
///
/// The poll thread pushes; when the buffer reaches its capacity it asks the consumer to pause fetching
/// (the poll thread keeps polling, so group membership stays alive); once the reader has drained it below
/// half, fetching resumes. So a reader that stops reading never makes memory grow beyond the bound.
final class KafkaMessageBuffer: Sendable {
    private struct State {
        var queue = MessageQueue()
        var waiters: [(id: UInt64, continuation: CheckedContinuation<KafkaMessage?, Never>)] = []
        var nextWaiterID: UInt64 = 0
        var finished = false
        var fetchingPaused = false
    }

    let capacity: Int
    private let state = Mutex(State())
    private let onResumeNeeded: @Sendable () -> Void

    /// - Parameter onResumeNeeded: called (outside the lock) when the reader drained a paused buffer below half.
    init(capacity: Int, onResumeNeeded: @escaping @Sendable () -> Void) {
        precondition(capacity > 0, "the consumer's buffer capacity must be positive")
        self.capacity = capacity
        self.onResumeNeeded = onResumeNeeded
    }

    /// The number of messages waiting to be read.
    var count: Int { state.withLock { $0.queue.count } }

    /// Whether fetching stays paused because the buffer is full: once the reader drained a paused buffer below
    /// half, the pause is lifted here and the answer is `false`.
    func keepsFetchingPaused() -> Bool {
        state.withLock { state in
            if state.fetchingPaused, state.queue.count < capacity / 2 {
                state.fetchingPaused = false
            }
            return state.fetchingPaused
        }
    }

    /// Adds a message from the poll thread; returns a waiting reader for the caller to resume with it. A full
    /// buffer marks fetching paused (see ``keepsFetchingPaused()``).
    func push(_ message: KafkaMessage) -> CheckedContinuation<KafkaMessage?, Never>? {
        state.withLock { state in
            if !state.waiters.isEmpty {
                return state.waiters.removeFirst().continuation
            }
            state.queue.append(message)
            if state.queue.count >= capacity {
                state.fetchingPaused = true
            }
            return nil
        }
    }

    /// Drops buffered messages of `partitions` (revoked: another member will read them from the commit).
    func purge(_ partitions: Set<KafkaTopicPartition>) -> Int {
        state.withLock { $0.queue.removeAll { partitions.contains($0.topicPartition) } }
    }

    /// Ends the sequence: readers get `nil` once the buffer is empty.
    func finish() {
        let waiters = state.withLock { state in
            state.finished = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters {
            waiter.continuation.resume(returning: nil)
        }
    }

    /// The next message, waiting for one; `nil` once finished and drained, or when the task is cancelled.
    func next() async -> KafkaMessage? {
        switch takeIfAvailable() {
        case .message(let message): return message
        case .finished: return nil
        case .empty: break
        }
        let waiterID = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let outcome = state.withLock { state -> KafkaMessage?? in
                    if let message = state.queue.popFirst() {
                        return .some(message)
                    }
                    if state.finished || Task.isCancelled {
                        return .some(nil)
                    }
                    state.waiters.append((waiterID, continuation))
                    return .none
                }
                if case .some(let message) = outcome {
                    continuation.resume(returning: message)
                }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == waiterID }.map { state.waiters.remove(at: $0).continuation }
            }
            waiter?.resume(returning: nil)
        }
    }

    private enum Immediate {
        case message(KafkaMessage)
        case finished
        case empty
    }

    private func takeIfAvailable() -> Immediate {
        let (result, resume) = state.withLock { state -> (Immediate, Bool) in
            guard let message = state.queue.popFirst() else {
                return (state.finished ? .finished : .empty, false)
            }
            return (.message(message), state.fetchingPaused && state.queue.count < capacity / 2)
        }
        if resume {
            onResumeNeeded()
        }
        return result
    }
}

/// A FIFO queue with amortised O(1) operations and no dependency beyond the standard library.
struct MessageQueue {
    private var storage: [KafkaMessage] = []
    private var head = 0

    var count: Int { storage.count - head }

    mutating func append(_ message: KafkaMessage) {
        storage.append(message)
    }

    mutating func popFirst() -> KafkaMessage? {
        guard head < storage.count else { return nil }
        let message = storage[head]
        head += 1
        if head >= 1024, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return message
    }

    /// Removes the messages matching `shouldRemove`; returns how many.
    mutating func removeAll(where shouldRemove: (KafkaMessage) -> Bool) -> Int {
        let before = count
        storage = Array(storage[head...].filter { !shouldRemove($0) })
        head = 0
        return before - count
    }
}
