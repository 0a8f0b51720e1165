import Coordination

/// The bounded hand-off between the consumer's poll thread and the application's async reader.
///
/// The poll thread pushes; when the buffer reaches its capacity, in messages or in bytes, it asks the consumer to
/// pause fetching (the poll thread keeps polling, so group membership stays alive); once the reader has drained it
/// below half of both, fetching resumes. So a reader that stops reading never makes memory grow beyond the bound
/// (by more than the message that crossed it).
///
/// A reader waiting for a message waits on the buffer's `WaitableState`; a push hands the message straight to
/// the oldest waiting reader.
final class KafkaMessageBuffer: Sendable {
    private struct State: Sendable {
        var queue = MessageQueue()
        /// ``KafkaMessage/heldBytes`` of the queued messages.
        var bytes = 0
        var finished = false
        var fetchingPaused = false
    }

    /// What one read took.
    struct Read: Sendable {
        /// The message, or `nil` once the buffer is finished and drained (or the reading task was cancelled).
        var message: KafkaMessage?
        /// Whether this read drained a buffer that had fetching paused below half: the poll thread should be
        /// woken to resume fetching.
        var resumeFetching = false
    }

    let capacity: Int
    /// The bound in bytes (``KafkaMessage/heldBytes`` of the queued messages).
    let maxBytes: Int
    private let state: WaitableState<State, KafkaMessage?>

    init(capacity: Int, maxBytes: Int = .max) {
        precondition(capacity > 0, "the consumer's buffer capacity must be positive")
        precondition(maxBytes > 0, "the consumer's buffer byte bound must be positive")
        self.capacity = capacity
        self.maxBytes = maxBytes
        self.state = WaitableState(State())
    }

    /// The number of messages waiting to be read.
    var count: Int { state.withLock { state, _ in state.queue.count } }

    /// The bytes of the messages waiting to be read.
    var byteCount: Int { state.withLock { state, _ in state.bytes } }

    private func isBelowHalf(_ state: State) -> Bool {
        state.queue.count < capacity / 2 && state.bytes < maxBytes / 2
    }

    /// Whether fetching stays paused because the buffer is full: once the reader drained a paused buffer below
    /// half, the pause is lifted here and the answer is `false`.
    func keepsFetchingPaused() -> Bool {
        state.withLock { state, _ in
            if state.fetchingPaused, isBelowHalf(state) {
                state.fetchingPaused = false
            }
            return state.fetchingPaused
        }
    }

    /// Adds a message from the poll thread, or hands it to the oldest waiting reader. A full buffer marks fetching
    /// paused (see ``keepsFetchingPaused()``).
    func push(_ message: KafkaMessage) {
        state.withLock { state, readers in
            guard !readers.wakeFirst(with: message) else { return }
            state.queue.append(message)
            state.bytes += message.heldBytes
            if state.queue.count >= capacity || state.bytes >= maxBytes {
                state.fetchingPaused = true
            }
        }
    }

    /// Drops buffered messages of `partitions` (revoked: another member will read them from the commit).
    ///
    /// - Returns: how many were dropped.
    func purge(_ partitions: Set<KafkaTopicPartition>) -> Int {
        state.withLock { state, _ in
            let removed = state.queue.removeAll { partitions.contains($0.topicPartition) }
            state.bytes = state.queue.heldBytes
            return removed
        }
    }

    /// Ends the sequence: readers get `nil` once the buffer is empty.
    func finish() {
        state.withLock { state, readers in
            state.finished = true
            readers.wakeAll(with: nil)
        }
    }

    /// The next message, waiting for one; `nil` once finished and drained, or when the task is cancelled.
    func next() async -> Read {
        var resumeFetching = false
        let message = await state.wait(cancelled: nil) { state -> KafkaMessage?? in
            guard let message = state.queue.popFirst() else {
                return state.finished ? .some(nil) : nil
            }
            state.bytes -= message.heldBytes
            resumeFetching = state.fetchingPaused && isBelowHalf(state)
            return .some(message)
        }
        return Read(message: message, resumeFetching: resumeFetching)
    }
}

/// A FIFO queue with amortised O(1) operations and no dependency beyond the standard library.
struct MessageQueue: Sendable {
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

    /// The bytes the queued messages hold.
    var heldBytes: Int { storage[head...].reduce(0) { $0 + $1.heldBytes } }

    /// Removes the messages matching `shouldRemove`; returns how many.
    mutating func removeAll(where shouldRemove: (KafkaMessage) -> Bool) -> Int {
        let before = count
        storage = Array(storage[head...].filter { !shouldRemove($0) })
        head = 0
        return before - count
    }
}
