import Pipeline
import Testing

@Suite struct JobSchedulerTests {
    typealias Scheduler = JobScheduler<Int>

    let partition0 = PartitionID(topic: "jobs", partition: 0)
    let partition1 = PartitionID(topic: "jobs", partition: 1)

    @Test func globalLimitHoldsBackJobsBeyondMaxInFlight() {
        var harness = Harness(.init(maxInFlight: 3, maxInFlightPerUser: 4))
        for job in 0 ..< 5 { harness.submit(job, user: "u\(job)", partition: partition0) }
        #expect(harness.started == [0, 1, 2])
        #expect(harness.scheduler.pendingCount == 5)
        #expect(harness.scheduler.admittedCount == 3)
        harness.complete(0)
        #expect(harness.started == [0, 1, 2, 3])
        #expect(harness.scheduler.runningCount == 3)
    }

    @Test func perUserLimitDoesNotBlockOtherUsers() {
        var harness = Harness(.init(maxInFlight: 10, maxInFlightPerUser: 2))
        for job in 0 ..< 4 { harness.submit(job, user: "alice") }
        harness.submit(10, user: "bob")
        #expect(harness.started == [0, 1, 10])
        #expect(harness.scheduler.runningCount == 3)
        #expect(harness.scheduler.admittedCount == 5)
        harness.complete(1)
        #expect(harness.started == [0, 1, 10, 2])
    }

    @Test func jobsWaitingForTheirUserCountAgainstTheGlobalLimit() {
        var harness = Harness(.init(maxInFlight: 4, maxInFlightPerUser: 1))
        for job in 0 ..< 4 { harness.submit(job, user: "alice") }
        harness.submit(10, user: "bob")
        #expect(harness.started == [0])
        #expect(harness.scheduler.admittedCount == 4)
        #expect(harness.scheduler.pendingCount == 5)
        harness.complete(0)
        #expect(harness.started.sorted() == [0, 1, 10])
    }

    @Test func inputPausesAtTheLimitAndResumesBelowIt() {
        var harness = Harness(.init(maxInFlight: 2, maxInFlightPerUser: 4))
        harness.submit(0, user: "a")
        #expect(harness.lastActions?.backpressure == nil)
        harness.submit(1, user: "b")
        #expect(harness.lastActions?.backpressure == .pauseInput)
        #expect(harness.scheduler.isInputPaused)
        harness.submit(2, user: "c")
        #expect(harness.lastActions?.backpressure == nil)
        harness.complete(0)
        #expect(harness.lastActions?.backpressure == nil)
        harness.complete(1)
        #expect(harness.lastActions?.backpressure == .resumeInput)
        #expect(!harness.scheduler.isInputPaused)
    }

    @Test func readaheadBuffersJobsBeforePausingAndResumesHalfwayDown() {
        var harness = Harness(.init(maxInFlight: 2, maxInFlightPerUser: 4, readahead: 4))
        var pausedAt: Int?
        for job in 0 ..< 6 {
            harness.submit(job, user: "u\(job)")
            if harness.lastActions?.backpressure == .pauseInput { pausedAt = job }
        }
        #expect(pausedAt == 5)
        #expect(harness.scheduler.runningCount == 2)
        harness.complete(0)
        #expect(harness.lastActions?.backpressure == nil)
        harness.complete(1)
        #expect(harness.lastActions?.backpressure == nil)
        harness.complete(2)
        #expect(harness.lastActions?.backpressure == .resumeInput)
        #expect(harness.scheduler.pendingCount == 3)
    }

    @Test func droppingARevokedPartitionRemovesOnlyItsQueuedJobs() {
        var harness = Harness(.init(maxInFlight: 3, maxInFlightPerUser: 1))
        harness.submit(0, user: "a", partition: partition0)
        harness.submit(1, user: "a", partition: partition0)
        harness.submit(2, user: "b", partition: partition1)
        harness.submit(3, user: "c", partition: partition0)
        harness.submit(4, user: "d", partition: partition1)
        #expect(harness.started == [0, 2])
        #expect(harness.scheduler.pendingCount(in: partition0) == 3)
        #expect(harness.drop(partition0) == [1, 3])
        #expect(harness.started == [0, 2, 4])
        #expect(harness.scheduler.pendingCount(in: partition0) == 1)
        #expect(harness.scheduler.pendingCount == 3)
        harness.complete(0)
        #expect(harness.scheduler.pendingCount(in: partition0) == 0)
    }

    @Test func droppingAJobThatHeldItsKeyLetsTheKeyMoveOn() {
        var harness = Harness(.init(maxInFlight: 10, maxInFlightPerUser: 1, ordering: .key))
        harness.submit(0, user: "a", key: "k1", partition: partition1)
        harness.submit(1, user: "a", key: "k2", partition: partition0)
        harness.submit(2, user: "b", key: "k2", partition: partition1)
        #expect(harness.started == [0])
        #expect(harness.drop(partition0) == [1])
        #expect(harness.started == [0, 2])
    }

    @Test func sameKeyRunsOneAtATimeInSubmissionOrder() {
        var harness = Harness(.init(maxInFlight: 10, maxInFlightPerUser: 4, ordering: .key))
        harness.submit(0, user: "a", key: "k")
        harness.submit(1, user: "b", key: "k")
        harness.submit(2, user: "c", key: "other")
        #expect(harness.started == [0, 2])
        harness.complete(2)
        #expect(harness.started == [0, 2])
        harness.complete(0)
        #expect(harness.started == [0, 2, 1])
    }

    @Test func unorderedSchedulingIgnoresKeys() {
        var harness = Harness(.init(maxInFlight: 10, maxInFlightPerUser: 4, ordering: .unordered))
        harness.submit(0, user: "a", key: "k")
        harness.submit(1, user: "b", key: "k")
        #expect(harness.started == [0, 1])
    }

    /// Random workload, random completion order: the limits hold at every step, jobs with the same key run one
    /// at a time in submission order, and every job runs exactly once.
    @Test(arguments: [SchedulingConfiguration.Ordering.unordered, .key])
    func limitsAndKeyOrderHoldUnderRandomCompletionOrder(ordering: SchedulingConfiguration.Ordering) {
        var generator = SplitMix64(seed: ordering == .key ? 7 : 8)
        let configuration = SchedulingConfiguration(maxInFlight: 16, maxInFlightPerUser: 3, ordering: ordering)
        var scheduler = Scheduler(configuration: configuration)
        let jobCount = 3000
        var userOf: [Int: String] = [:]
        var keyOf: [Int: String] = [:]
        var running: [Scheduler.Entry] = []
        var startOrder: [Int] = []
        var runningPerUser: [String: Int] = [:]
        var runningPerKey: [String: Int] = [:]
        var submitted = 0

        func started(_ actions: Scheduler.Actions) {
            for entry in actions.start {
                running.append(entry)
                startOrder.append(entry.payload)
                runningPerUser[entry.userID!, default: 0] += 1
                #expect(runningPerUser[entry.userID!]! <= configuration.maxInFlightPerUser)
                if ordering == .key {
                    runningPerKey[keyOf[entry.payload]!, default: 0] += 1
                    #expect(runningPerKey[keyOf[entry.payload]!]! == 1)
                }
            }
            #expect(running.count <= configuration.maxInFlight)
            #expect(scheduler.admittedCount <= configuration.maxInFlight)
        }

        while submitted < jobCount || !running.isEmpty {
            if submitted < jobCount && (running.isEmpty || Bool.random(using: &generator)) {
                let job = submitted
                submitted += 1
                userOf[job] = "user\(Int.random(in: 0 ..< 12, using: &generator))"
                keyOf[job] = "key\(Int.random(in: 0 ..< 20, using: &generator))"
                started(scheduler.submit(job, userID: userOf[job], orderingKey: keyOf[job], partition: partition0))
            } else {
                let finished = running.remove(at: Int.random(in: 0 ..< running.count, using: &generator))
                runningPerUser[finished.userID!]! -= 1
                if ordering == .key { runningPerKey[keyOf[finished.payload]!]! -= 1 }
                started(scheduler.complete(finished))
            }
        }
        #expect(startOrder.sorted() == Array(0 ..< jobCount))
        #expect(scheduler.pendingCount == 0)
        #expect(scheduler.pendingCount(in: partition0) == 0)
        if ordering == .key {
            var lastStarted: [String: Int] = [:]
            for job in startOrder {
                if let previous = lastStarted[keyOf[job]!] { #expect(previous < job) }
                lastStarted[keyOf[job]!] = job
            }
        }
    }
}

/// Submits jobs and completes them by number, keeping the entries the scheduler handed out.
struct Harness {
    var scheduler: JobScheduler<Int>
    var started: [Int] = []
    var entries: [Int: JobScheduler<Int>.Entry] = [:]
    var lastActions: JobScheduler<Int>.Actions?

    init(_ configuration: SchedulingConfiguration) {
        scheduler = JobScheduler(configuration: configuration)
    }

    mutating func submit(_ job: Int, user: String?, key: String? = nil, partition: PartitionID? = nil) {
        record(scheduler.submit(job, userID: user, orderingKey: key, partition: partition))
    }

    mutating func complete(_ job: Int) {
        record(scheduler.complete(entries.removeValue(forKey: job)!))
    }

    mutating func drop(_ partition: PartitionID) -> [Int] {
        let (dropped, actions) = scheduler.dropQueued(partition: partition)
        record(actions)
        return dropped.map(\.payload).sorted()
    }

    private mutating func record(_ actions: JobScheduler<Int>.Actions) {
        lastActions = actions
        for entry in actions.start {
            started.append(entry.payload)
            entries[entry.payload] = entry
        }
    }
}
