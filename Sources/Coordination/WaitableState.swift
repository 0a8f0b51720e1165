public import Synchronization

/// State under one lock that tasks can wait on: the one way in this package to suspend a task until another
/// part changes some state (a message arrives, a slot frees up, a turn comes, virtual time moves on).
///
/// Everything happens under the lock except resuming: a ``withLock(_:)`` body wakes waiters through the
/// ``Waiters`` it is handed, and they are resumed after the lock is released, so no continuation ever runs
/// code under the lock. A waiting task that is cancelled is resumed with the value given to
/// ``wait(cancelled:_:)``, exactly once.
public final class WaitableState<State: Sendable, Value: Sendable>: Sendable {
    // Inlinable (with what it touches): the engine's state, the consumer's and the message buffer take this lock
    // for every job, and an unspecialized generic call across the module boundary cost measurable CPU per job.
    @usableFromInline
    struct Storage {
        @usableFromInline var state: State
        @usableFromInline var waiters = Waiters<Value>()

        @inlinable
        init(state: State) {
            self.state = state
        }
    }

    @usableFromInline
    let storage: Mutex<Storage>

    /// Creates the state.
    /// - Parameter state: The initial state.
    public init(_ state: State) {
        storage = Mutex(Storage(state: state))
    }

    /// Reads or changes the state; waiters woken by `body` are resumed once the lock is released.
    /// - Parameter body: Runs under the lock with the state and the waiters.
    /// - Returns: What `body` returns.
    @inlinable
    public func withLock<Result>(_ body: (inout State, inout Waiters<Value>) throws -> Result) rethrows -> Result {
        var woken = Waiters<Value>.Woken()
        let result = try storage.withLock { storage in
            defer { woken = storage.waiters.takeWoken() }
            return try body(&storage.state, &storage.waiters)
        }
        woken.resume()
        return result
    }

    /// Returns at once when `decide` gives a value, or else waits until a ``withLock(_:)`` body wakes this task.
    /// - Parameters:
    ///   - cancelled: The value returned when the task is (or gets) cancelled while waiting.
    ///   - decide: Runs under the lock: a value to return now, or `nil` to wait (in the order of arrival).
    /// - Returns: The value decided, the value a waker gave, or `cancelled`.
    @inlinable
    public func wait(cancelled: Value, _ decide: (inout State) -> Value?) async -> Value {
        // One lock to decide or take a ticket; the continuation decides again, as the state may change between.
        let decided: (value: Value?, ticket: Waiters<Value>.Ticket?) = storage.withLock { storage in
            if let value = decide(&storage.state) {
                return (value, nil)
            }
            return (nil, storage.waiters.makeTicket())
        }
        guard let ticket = decided.ticket else { return decided.value! }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Value, Never>) in
                let now: Value? = storage.withLock { storage in
                    if let value = decide(&storage.state) {
                        return value
                    }
                    if Task.isCancelled {
                        return cancelled
                    }
                    storage.waiters.enqueue(continuation, ticket: ticket)
                    return nil
                }
                if let now {
                    continuation.resume(returning: now)
                }
            }
        } onCancel: {
            let continuation = storage.withLock { $0.waiters.remove(ticket) }
            continuation?.resume(returning: cancelled)
        }
    }
}

/// The tasks waiting on a ``WaitableState``, oldest first. A body of ``WaitableState/withLock(_:)`` wakes them;
/// they are resumed after the lock is released.
public struct Waiters<Value: Sendable>: Sendable {
    /// Identifies one waiting task, so that its cancellation removes exactly it.
    @usableFromInline
    struct Ticket: Hashable, Sendable {
        @usableFromInline let id: UInt64

        @inlinable
        init(id: UInt64) {
            self.id = id
        }
    }

    @usableFromInline
    struct Wakeup: Sendable {
        @usableFromInline let continuation: UnsafeContinuation<Value, Never>
        @usableFromInline let value: Value

        @inlinable
        init(continuation: UnsafeContinuation<Value, Never>, value: Value) {
            self.continuation = continuation
            self.value = value
        }
    }

    /// The tasks woken under the lock, to resume after it. The first is kept apart so that the common case, one
    /// task woken at a time (a message for a waiting reader, a freed slot), allocates nothing.
    @usableFromInline
    struct Woken: Sendable {
        @usableFromInline var first: Wakeup?
        @usableFromInline var more: [Wakeup] = []

        @inlinable
        init() {}

        @inlinable
        func resume() {
            guard let first else { return }
            first.continuation.resume(returning: first.value)
            for wakeup in more {
                wakeup.continuation.resume(returning: wakeup.value)
            }
        }
    }

    @usableFromInline var entries: [(ticket: Ticket, continuation: UnsafeContinuation<Value, Never>)] = []
    @usableFromInline var head = 0
    @usableFromInline var nextTicket: UInt64 = 0
    @usableFromInline var woken = Woken()

    @inlinable
    init() {}

    /// The number of tasks waiting.
    @inlinable
    public var count: Int { entries.count - head }

    /// Whether no task is waiting.
    @inlinable
    public var isEmpty: Bool { count == 0 }

    /// Wakes the oldest waiting task with `value`.
    /// - Parameter value: What its `wait` returns.
    /// - Returns: Whether a task was waiting.
    @inlinable
    @discardableResult
    public mutating func wakeFirst(with value: Value) -> Bool {
        guard head < entries.count else { return false }
        append(Wakeup(continuation: entries[head].continuation, value: value))
        head += 1
        compact()
        return true
    }

    /// Wakes every waiting task with `value`.
    /// - Parameter value: What their `wait` returns.
    /// - Returns: How many tasks were waiting.
    @inlinable
    @discardableResult
    public mutating func wakeAll(with value: Value) -> Int {
        let count = self.count
        for entry in entries[head...] {
            append(Wakeup(continuation: entry.continuation, value: value))
        }
        entries.removeAll(keepingCapacity: true)
        head = 0
        return count
    }

    @inlinable
    mutating func makeTicket() -> Ticket {
        defer { nextTicket += 1 }
        return Ticket(id: nextTicket)
    }

    @inlinable
    mutating func enqueue(_ continuation: UnsafeContinuation<Value, Never>, ticket: Ticket) {
        entries.append((ticket, continuation))
    }

    @inlinable
    mutating func remove(_ ticket: Ticket) -> UnsafeContinuation<Value, Never>? {
        guard let index = entries[head...].firstIndex(where: { $0.ticket == ticket }) else { return nil }
        return entries.remove(at: index).continuation
    }

    @inlinable
    mutating func takeWoken() -> Woken {
        guard woken.first != nil else { return Woken() }
        defer { woken = Woken() }
        return woken
    }

    @inlinable
    mutating func append(_ wakeup: Wakeup) {
        if woken.first == nil {
            woken.first = wakeup
        } else {
            woken.more.append(wakeup)
        }
    }

    @inlinable
    mutating func compact() {
        if head >= 64, head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }
}
