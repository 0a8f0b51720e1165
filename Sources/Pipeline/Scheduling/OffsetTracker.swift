import DequeModule

/// Which offsets of each partition may be committed, when jobs finish out of order.
///
/// Record every offset as it is received, mark it done when its result (or dead-letter copy) is acknowledged,
/// and commit ``committableOffset(for:)``: one past the highest offset such that it and every offset received
/// before it in its partition are done. Offsets need not be contiguous (compaction, transaction markers): only
/// received offsets count. A pure value; wrap it in a lock to share it.
public struct OffsetTracker: Sendable {
    private struct Entry {
        var offset: Int64
        var isDone: Bool
    }

    private struct PartitionState {
        /// Received offsets not yet below the committable mark, ascending.
        var pending: Deque<Entry> = []
        var committable: Int64?
    }

    private var states: [PartitionID: PartitionState] = [:]

    /// An empty tracker.
    public init() {}

    /// Records that a message was received (call in the order messages arrive, before its job can finish).
    /// - Parameters:
    ///   - offset: The message's offset.
    ///   - partition: Its partition.
    /// - Returns: `false` if the offset was already being tracked (a duplicate delivery), which is ignored.
    @discardableResult
    public mutating func received(_ offset: Int64, in partition: PartitionID) -> Bool {
        // Mutate in place through the dictionary subscript: copying the state out would copy its deque.
        Self.received(offset, into: &states[partition, default: PartitionState()])
    }

    private static func received(_ offset: Int64, into state: inout PartitionState) -> Bool {
        if let last = state.pending.last, offset <= last.offset {
            // Rare: a rewind or a duplicate. Keep the deque ascending.
            let index = lowerBound(offset, in: state.pending)
            if index < state.pending.count, state.pending[index].offset == offset { return false }
            state.pending.insert(Entry(offset: offset, isDone: false), at: index)
            return true
        }
        state.pending.append(Entry(offset: offset, isDone: false))
        return true
    }

    /// Marks a received offset as done.
    /// - Parameters:
    ///   - offset: The offset whose job finished.
    ///   - partition: Its partition.
    /// - Returns: Whether ``committableOffset(for:)`` advanced. Unknown offsets and partitions (e.g. revoked
    ///   and forgotten) are ignored and return `false`.
    @discardableResult
    public mutating func markDone(_ offset: Int64, in partition: PartitionID) -> Bool {
        guard states[partition] != nil else { return false }
        return Self.markDone(offset, in: &states[partition]!)
    }

    private static func markDone(_ offset: Int64, in state: inout PartitionState) -> Bool {
        let index = lowerBound(offset, in: state.pending)
        guard index < state.pending.count, state.pending[index].offset == offset else { return false }
        state.pending[index].isDone = true
        var advanced = false
        while let first = state.pending.first, first.isDone {
            state.pending.removeFirst()
            if first.offset + 1 > (state.committable ?? Int64.min) {
                state.committable = first.offset + 1
                advanced = true
            }
        }
        return advanced
    }

    /// The offset to commit for a partition (the next offset to consume), or `nil` if nothing is committable yet.
    /// - Parameter partition: The partition.
    /// - Returns: One past the highest offset such that it and every earlier received offset are done.
    public func committableOffset(for partition: PartitionID) -> Int64? {
        states[partition]?.committable
    }

    /// Committable offsets of every tracked partition that has one.
    public var committableOffsets: [PartitionID: Int64] {
        var offsets: [PartitionID: Int64] = [:]
        for (partition, state) in states {
            if let committable = state.committable { offsets[partition] = committable }
        }
        return offsets
    }

    /// How many received offsets of a partition are not yet below its committable mark.
    /// - Parameter partition: The partition.
    /// - Returns: The number of offsets still pending or done but blocked by an unfinished earlier one.
    public func pendingCount(in partition: PartitionID) -> Int {
        states[partition]?.pending.count ?? 0
    }

    /// The lowest received offset of a partition whose job is not done: where its committable mark stops.
    /// - Parameter partition: The partition.
    /// - Returns: That offset, or `nil` when every received offset of the partition is done.
    public func lowestUnfinishedOffset(in partition: PartitionID) -> Int64? {
        // Done entries at the front are removed as soon as they are done, so the first one is unfinished.
        states[partition]?.pending.first?.offset
    }

    /// The partitions being tracked.
    public var partitions: [PartitionID] { Array(states.keys) }

    /// Stops tracking a partition (after it was revoked); later calls about it are ignored until it is received
    /// again.
    /// - Parameter partition: The partition.
    public mutating func forget(_ partition: PartitionID) {
        states[partition] = nil
    }

    private static func lowerBound(_ offset: Int64, in entries: Deque<Entry>) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].offset < offset { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
