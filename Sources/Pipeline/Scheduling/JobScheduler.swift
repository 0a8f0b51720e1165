import DequeModule

/// Decides when jobs start: a global limit of jobs in flight, a per-user limit, optional per-key ordering, and
/// when to pause and resume the input.
///
/// A pure state machine (the nio pattern): its owner keeps it under a lock, calls a mutating method and carries
/// out the returned ``Actions`` after releasing the lock. It never awaits and never calls out.
///
/// - A job is *pending* from ``submit(_:userID:orderingKey:partition:)`` to ``complete(_:)`` (or
///   ``dropQueued(partition:)``). At most ``SchedulingConfiguration/maxInFlight`` pending jobs are *admitted*; the rest
///   wait in a FIFO backlog. Admitted jobs count against the limit while they wait for their user or key.
/// - At most ``SchedulingConfiguration/maxInFlightPerUser`` jobs of one user run at once; a user's further jobs wait in
///   that user's FIFO queue without holding up other users.
/// - With ``SchedulingConfiguration/Ordering/key``, jobs with the same ordering key run one at a time in submission order
///   (so they also complete in submission order).
/// - ``Actions/backpressure`` says `pauseInput` when pending jobs reach `maxInFlight + readahead`, and
///   `resumeInput` when they fall below `maxInFlight + readahead / 2` (with the default `readahead` of 0: at the
///   limit, and as soon as one finishes).
public struct JobScheduler<Payload: Sendable>: Sendable {
    /// Limits and ordering (shared by every payload type).
    public typealias Configuration = SchedulingConfiguration

    /// A pending job as the scheduler sees it. Pass it back to ``complete(_:)`` when it finishes.
    public struct Entry: Sendable {
        /// The caller's job.
        public var payload: Payload
        /// The user it counts against, or `nil` for no per-user limit.
        public var userID: String?
        /// Its ordering key (only used with ``SchedulingConfiguration/Ordering/key``), or `nil` for none.
        public var orderingKey: String?
        /// The partition it came from, for ``dropQueued(partition:)``.
        public var partition: PartitionID?
    }

    /// A request to pause or resume the input.
    public enum Backpressure: Sendable, Hashable {
        /// Pending jobs reached the pause threshold: stop fetching (keep polling).
        case pauseInput
        /// Pending jobs fell below the resume threshold: fetch again.
        case resumeInput
    }

    /// What the owner must do after a call, outside its lock.
    public struct Actions: Sendable {
        /// Jobs to start now, in order.
        public var start: [Entry] = []
        /// A change of input state, if any.
        public var backpressure: Backpressure?
    }

    private struct UserState {
        var running = 0
        var waiting: Deque<Entry> = []
    }

    private struct KeyState {
        var waiting: Deque<Entry> = []
    }

    /// The limits.
    public let configuration: Configuration
    private var backlog: Deque<Entry> = []
    private var users: [String: UserState] = [:]
    /// Keys with a job admitted past the key stage (waiting for its user or running); their later jobs wait here.
    private var busyKeys: [String: KeyState] = [:]
    private var pendingByPartition: [PartitionID: Int] = [:]
    /// Jobs admitted and not finished.
    public private(set) var admittedCount = 0
    /// Jobs running (started and not finished).
    public private(set) var runningCount = 0
    /// Jobs whose work is done and whose result is being delivered (see ``handled(_:)``).
    public private(set) var deliveringCount = 0
    /// Whether the input was last told to pause.
    public private(set) var isInputPaused = false

    /// A scheduler with nothing pending.
    /// - Parameter configuration: Limits and ordering.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Jobs submitted and not finished (admitted, delivering, and backlog).
    public var pendingCount: Int { admittedCount + backlog.count + deliveringCount }

    /// Jobs of a partition submitted and not finished.
    /// - Parameter partition: The partition.
    /// - Returns: Its pending jobs.
    public func pendingCount(in partition: PartitionID) -> Int {
        pendingByPartition[partition] ?? 0
    }

    /// The scheduler's counts and the users with jobs running or waiting, for diagnostics.
    public var summary: String {
        let busyUsers = users.filter { $0.value.running > 0 || !$0.value.waiting.isEmpty }
            .map { "\($0.key): \($0.value.running) running, \($0.value.waiting.count) waiting" }.sorted()
        return "admitted \(admittedCount), running \(runningCount), delivering \(deliveringCount), backlog \(backlog.count), "
            + "busy keys \(busyKeys.count), input paused \(isInputPaused), users [\(busyUsers.joined(separator: "; "))]"
    }

    /// Accepts a job.
    /// - Parameters:
    ///   - payload: The caller's job.
    ///   - userID: The user it counts against, or `nil` for none.
    ///   - orderingKey: Its ordering key; ignored unless the ordering is ``SchedulingConfiguration/Ordering/key``.
    ///   - partition: Its partition, for ``dropQueued(partition:)`` and ``pendingCount(in:)``.
    /// - Returns: The job to start if it can start now, and whether to pause the input.
    public mutating func submit(_ payload: Payload, userID: String?, orderingKey: String?, partition: PartitionID?)
        -> Actions
    {
        let entry = Entry(
            payload: payload,
            userID: userID,
            orderingKey: configuration.ordering == .key ? orderingKey : nil,
            partition: partition
        )
        if let partition { pendingByPartition[partition, default: 0] += 1 }
        var actions = Actions()
        if admittedCount < configuration.maxInFlight && backlog.isEmpty {
            admit(entry, into: &actions)
        } else {
            backlog.append(entry)
        }
        updateBackpressure(&actions)
        return actions
    }

    /// Records that a started job's work is done and only the delivery of its result remains: its slot (global
    /// and per user) goes to the next job, so delivery latency does not cut throughput. The job stays pending (for
    /// ``pendingCount(in:)`` and backpressure) until ``complete(_:handled:)``. Jobs with an ordering key keep
    /// their slot until delivered, so that their results are delivered in order.
    /// - Parameter entry: The entry that was started.
    /// - Returns: Jobs that can start now.
    public mutating func handled(_ entry: Entry) -> Actions {
        var actions = Actions()
        guard entry.orderingKey == nil else { return actions }
        runningCount -= 1
        admittedCount -= 1
        deliveringCount += 1
        if let userID = entry.userID {
            users[userID, default: UserState()].running -= 1
            startWaiting(ofUser: userID, into: &actions)
        }
        admitFromBacklog(into: &actions)
        updateBackpressure(&actions)
        return actions
    }

    /// Records that a started job finished (whatever its outcome).
    /// - Parameters:
    ///   - entry: The entry that was started.
    ///   - handled: Whether ``handled(_:)`` was called for it.
    /// - Returns: Jobs that can start now, and whether to resume the input.
    public mutating func complete(_ entry: Entry, handled: Bool = false) -> Actions {
        var actions = Actions()
        if handled && entry.orderingKey == nil {
            deliveringCount -= 1
            decrementPartition(entry.partition)
            updateBackpressure(&actions)
            return actions
        }
        runningCount -= 1
        admittedCount -= 1
        decrementPartition(entry.partition)
        if let userID = entry.userID {
            users[userID, default: UserState()].running -= 1
            startWaiting(ofUser: userID, into: &actions)
        }
        if let key = entry.orderingKey {
            releaseKey(key, into: &actions)
        }
        admitFromBacklog(into: &actions)
        updateBackpressure(&actions)
        return actions
    }

    /// Removes the jobs of a partition that have not started (after the partition was revoked).
    /// - Parameter partition: The partition.
    /// - Returns: The removed entries (in no particular order) and what to do now (other jobs may start).
    public mutating func dropQueued(partition: PartitionID) -> (dropped: [Entry], actions: Actions) {
        var dropped: [Entry] = []
        var actions = Actions()
        backlog.removeAll { entry in
            guard entry.partition == partition else { return false }
            dropped.append(entry)
            return true
        }
        var admittedDropped: [Entry] = []
        for key in busyKeys.keys {
            busyKeys[key]!.waiting.removeAll { entry in
                guard entry.partition == partition else { return false }
                admittedDropped.append(entry)
                return true
            }
        }
        var releasedKeys: [String] = []
        for userID in users.keys {
            users[userID]!.waiting.removeAll { entry in
                guard entry.partition == partition else { return false }
                admittedDropped.append(entry)
                // An entry waiting for its user holds its key.
                if let key = entry.orderingKey { releasedKeys.append(key) }
                return true
            }
        }
        admittedCount -= admittedDropped.count
        dropped += admittedDropped
        for entry in dropped { decrementPartition(entry.partition) }
        for key in releasedKeys { releaseKey(key, into: &actions) }
        for userID in Set(admittedDropped.compactMap(\.userID)) { removeUserIfIdle(userID) }
        admitFromBacklog(into: &actions)
        updateBackpressure(&actions)
        return (dropped, actions)
    }

    // MARK: - Stages

    /// Key stage, then user stage.
    private mutating func admit(_ entry: Entry, into actions: inout Actions) {
        admittedCount += 1
        if let key = entry.orderingKey {
            if busyKeys[key] != nil {
                busyKeys[key]!.waiting.append(entry)
                return
            }
            busyKeys[key] = KeyState()
        }
        enterUserStage(entry, into: &actions)
    }

    private mutating func enterUserStage(_ entry: Entry, into actions: inout Actions) {
        guard let userID = entry.userID else {
            start(entry, into: &actions)
            return
        }
        let limit = configuration.maxInFlightPerUser
        let canStart = modifyUser(userID) { user in
            if user.running < limit {
                user.running += 1
                return true
            }
            user.waiting.append(entry)
            return false
        }
        if canStart { start(entry, into: &actions) }
    }

    private mutating func start(_ entry: Entry, into actions: inout Actions) {
        runningCount += 1
        actions.start.append(entry)
    }

    private mutating func startWaiting(ofUser userID: String, into actions: inout Actions) {
        let limit = configuration.maxInFlightPerUser
        let next = modifyUser(userID) { user -> Entry? in
            guard user.running < limit, let next = user.waiting.popFirst() else { return nil }
            user.running += 1
            return next
        }
        if let next {
            start(next, into: &actions)
        } else {
            removeUserIfIdle(userID)
        }
    }

    private mutating func releaseKey(_ key: String, into actions: inout Actions) {
        guard busyKeys[key] != nil else { return }
        if let next = busyKeys[key]!.waiting.popFirst() {
            enterUserStage(next, into: &actions)
        } else {
            busyKeys[key] = nil
        }
    }

    private mutating func admitFromBacklog(into actions: inout Actions) {
        while admittedCount < configuration.maxInFlight, let next = backlog.popFirst() {
            admit(next, into: &actions)
        }
    }

    private mutating func updateBackpressure(_ actions: inout Actions) {
        if !isInputPaused && pendingCount >= configuration.pauseThreshold {
            isInputPaused = true
            actions.backpressure = .pauseInput
        } else if isInputPaused && pendingCount < configuration.resumeThreshold {
            isInputPaused = false
            actions.backpressure = .resumeInput
        }
    }

    private mutating func decrementPartition(_ partition: PartitionID?) {
        guard let partition else { return }
        let remaining = pendingByPartition[partition, default: 0] - 1
        pendingByPartition[partition] = remaining > 0 ? remaining : nil
    }

    /// Mutates a user's state in place (copying it out would copy its queue).
    private mutating func modifyUser<R>(_ userID: String, _ body: (inout UserState) -> R) -> R {
        body(&users[userID, default: UserState()])
    }

    private mutating func removeUserIfIdle(_ userID: String) {
        if let user = users[userID], user.running == 0, user.waiting.isEmpty {
            users[userID] = nil
        }
    }
}

/// Limits and ordering of the ``JobScheduler``.
public struct SchedulingConfiguration: Sendable, Hashable {
    /// How jobs are ordered.
    public enum Ordering: String, Sendable, Hashable, CaseIterable {
        /// No ordering: jobs start as soon as the limits allow (default).
        case unordered
        /// Jobs with the same key (the Kafka key, or the user id when there is none) start and complete in
        /// submission order, one at a time.
        case key
    }

    /// Most jobs admitted and not finished, including those waiting for a user or key (default 256).
    public var maxInFlight: Int
    /// Most jobs of one user running at once (default 4).
    public var maxInFlightPerUser: Int
    /// Ordering of jobs.
    public var ordering: Ordering
    /// Jobs received beyond `maxInFlight` (waiting to be admitted) before the input is paused (default 0).
    /// A few dozen keep the limit saturated while the input resumes fetching.
    public var readahead: Int

    /// Creates a configuration; the defaults are the issue's.
    /// - Parameters:
    ///   - maxInFlight: Most jobs in flight (at least 1).
    ///   - maxInFlightPerUser: Most running jobs per user (at least 1).
    ///   - ordering: Ordering of jobs.
    ///   - readahead: Extra received jobs before the input is paused (at least 0).
    public init(maxInFlight: Int = 256, maxInFlightPerUser: Int = 4, ordering: Ordering = .unordered, readahead: Int = 0) {
        self.maxInFlight = max(1, maxInFlight)
        self.maxInFlightPerUser = max(1, maxInFlightPerUser)
        self.ordering = ordering
        self.readahead = max(0, readahead)
    }

    /// Pending jobs at which the input is paused.
    public var pauseThreshold: Int { maxInFlight + readahead }
    /// Pending jobs below which a paused input is resumed.
    public var resumeThreshold: Int { maxInFlight + readahead / 2 }
}
