import Coordination
import Synchronization

/// Lets ``KafkaProducer/send(topic:partition:key:value:headers:)`` wait while librdkafka's local queue is full,
/// until a delivery report makes room or the producer shuts down.
///
/// Each delivery report (success or failure, including the purge at shutdown) takes one message out of the
/// queue. A sender reads ``deliveries`` before it enqueues; when librdkafka refuses the message because the
/// queue is full, it waits until the count moves past what it read, so a report that lands between the refusal
/// and the wait is not missed. Counting is lock-free on the hot path: the lock is taken only while a sender
/// waits.
final class ProducerQueueRoom: Sendable {
    /// Why a wait ended.
    enum Wake: Sendable, Equatable {
        /// A delivery report made room: try again.
        case room
        /// The producer stopped accepting messages.
        case closed
        /// The waiting task was cancelled.
        case cancelled
    }

    private let deliveryCount = Atomic<UInt64>(0)
    private let waiting = Atomic<Int>(0)
    /// Whether the producer is closed; the waiters are senders waiting for room.
    private let state = WaitableState<Bool, Wake>(false)

    /// Delivery reports served so far; read it before enqueueing a message.
    var deliveries: UInt64 { deliveryCount.load(ordering: .sequentiallyConsistent) }

    /// Records a delivery report and wakes the waiting senders (on the producer's poll thread).
    func delivered() {
        deliveryCount.add(1, ordering: .sequentiallyConsistent)
        // A sender counts itself in `waiting` before it looks at `deliveryCount` under the lock: if this load
        // sees no sender, the sender's look sees this report.
        if waiting.load(ordering: .sequentiallyConsistent) > 0 {
            state.withLock { _, waiters in
                waiters.wakeAll(with: .room)
                return
            }
        }
    }

    /// Wakes every waiting sender for good: the producer stopped accepting messages.
    func close() {
        state.withLock { closed, waiters in
            closed = true
            waiters.wakeAll(with: .closed)
        }
    }

    /// Waits until a delivery report came after `deliveries` was `seen`, the producer closes, or the task is cancelled.
    ///
    /// - Parameter seen: ``deliveries`` as read before the refused enqueue.
    /// - Returns: why the wait ended.
    func waitForRoom(after seen: UInt64) async -> Wake {
        waiting.add(1, ordering: .sequentiallyConsistent)
        defer { waiting.subtract(1, ordering: .sequentiallyConsistent) }
        return await state.wait(cancelled: .cancelled) { closed in
            if closed { return .closed }
            return deliveryCount.load(ordering: .sequentiallyConsistent) > seen ? .room : nil
        }
    }
}
