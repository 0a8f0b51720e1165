import Coordination
import Foundation
import Kafka
import MioctxTestSupport
import Testing

/// Issue 14 §1: the process-level scenarios. `mioctx mock-kafka` (3 brokers, 6 partitions), `mioctx sim` (3 ms
/// latency) and 2–3 `mioctx run` processes of the debug build in one group (`session.timeout.ms=6000`,
/// `heartbeat.interval.ms=500`, in-flight 64, commit interval 500 ms); the output topic is read independently
/// (``OutputTopicCount``: a fresh group from the beginning, counted by job id). Each prints its jobs, results,
/// repeats and bound.
@Suite("mioctx run processes: kills and rolling restarts (issue 14)", .serialized)
struct ProcessFaultTests {
    static let maxInFlight = 64
    static let commitInterval: Duration = .milliseconds(500)
    static let users = 300

    /// The group's result rate over `window` once `progress` has `from` distinct results, in results per second.
    /// A window of time, not of results: the reader takes results in batches, and a window of results could open
    /// and close within one batch (a rate of 0 was printed that way).
    static func rate(of progress: ResultProgress, from: Int, window: Duration = .seconds(2)) async throws -> Double {
        try await waitUntil("\(from) results") { progress.unique >= from }
        let (start, startResults) = (ContinuousClock.now, progress.results)
        try await Task.sleep(for: window)
        return Double(progress.results - startResults) / (ContinuousClock.now - start).timeInterval
    }

    /// (a) Two workers; one gets SIGKILL after 30% of the results and is started again 1 s later. No job is lost,
    /// and the repeats stay within the killed worker's in-flight limit plus one commit interval of its
    /// throughput (half the group's rate just before the kill: it owns three of the six partitions).
    @Test func aKilledAndRestartedWorkerRepeatsWithinTheBound() async throws {
        try await ProcessGroupSetup.with(
            name: "kill", users: Self.users, latencyMs: 3, maxInFlight: Self.maxInFlight, commitInterval: Self.commitInterval
        ) { setup in
            let jobs = try await setup.produceJobs(prefix: "kill", count: 10_000, users: Self.users)
            let progress = try ResultProgress(kafka: setup.kafka, topic: ProcessGroupSetup.outputTopic, logger: setup.logger)
            let first = try setup.startWorker(name: "killed")
            let survivor = try setup.startWorker(name: "survivor")
            try await waitUntil("both workers to be assigned") { first.hasBeenAssigned && survivor.hasBeenAssigned }
            var killed = first
            let groupRate = try await Self.rate(of: progress, from: 2_000)
            let resultsAtTheKill = progress.results
            #expect(await killed.process.stop(signal: SIGKILL) == SIGKILL)
            try await Task.sleep(for: .seconds(1))
            killed = try setup.startWorker(name: "killed")
            try await waitUntil("every job to have a result") { progress.unique >= jobs.count }
            #expect(await killed.process.stop() == 0, "graceful stop exits 0")
            #expect(await survivor.process.stop() == 0, "graceful stop exits 0")
            try await progress.stop()

            let count = try await OutputTopicCount.read(
                kafka: setup.kafka, topic: ProcessGroupSetup.outputTopic, partitions: ProcessGroupSetup.partitions, logger: setup.logger
            )
            let bound = RepeatBound(maxInFlight: Self.maxInFlight, commitInterval: Self.commitInterval, throughput: groupRate / 2)
            print(
                "process scenario kill+restart: \(jobs.count) jobs, killed at \(resultsAtTheKill) results, \(count), "
                    + "bound \(bound) (group \(Int(groupRate)) results/s before the kill)"
            )
            #expect(count.lost(of: jobs.map(\.id)) == [], "no job is lost")
            #expect(count.repeats <= bound.value, "repeats within the bound")
            #expect(survivor.lostLines == [], "the survivor keeps its membership and partitions")
        }
    }

    /// (b) Three workers; each in turn gets SIGTERM, exits 0 once drained, and is started again; the next one goes
    /// once the restarted one has its assignment. A graceful leave commits everything it published: 0 repeats.
    @Test func aRollingRestartOfThreeWorkersLosesAndRepeatsNothing() async throws {
        try await ProcessGroupSetup.with(
            name: "rolling", users: Self.users, latencyMs: 3, maxInFlight: Self.maxInFlight, commitInterval: Self.commitInterval
        ) { setup in
            let jobs = try await setup.produceJobs(prefix: "rolling", count: 10_000, users: Self.users)
            let progress = try ResultProgress(kafka: setup.kafka, topic: ProcessGroupSetup.outputTopic, logger: setup.logger)
            // A rate cap per worker keeps the run long enough for three restarts.
            let started = try (0..<3).map { try setup.startWorker(name: "w\($0)", requestsPerSecond: 150) }
            try await waitUntil("every worker to be assigned and 500 results") {
                started.allSatisfy(\.hasBeenAssigned) && progress.unique >= 500
            }
            var workers = started
            var stopped: [WorkerProcess] = []
            var steps: [String] = []
            for index in workers.indices {
                let results = progress.results
                #expect(await workers[index].process.stop() == 0, "SIGTERM: drained, exit 0")
                stopped.append(workers[index])
                workers[index] = try setup.startWorker(name: "w\(index)", requestsPerSecond: 150)
                let restarted = workers[index]
                try await waitUntil("the restarted worker to be assigned") { restarted.hasBeenAssigned }
                steps.append("w\(index) stopped at \(results) results")
            }
            try await waitUntil("every job to have a result") { progress.unique >= jobs.count }
            for worker in workers {
                #expect(await worker.process.stop() == 0)
            }
            try await progress.stop()

            let count = try await OutputTopicCount.read(
                kafka: setup.kafka, topic: ProcessGroupSetup.outputTopic, partitions: ProcessGroupSetup.partitions, logger: setup.logger
            )
            let everyWorker = stopped + workers
            print(
                "process scenario rolling restart: \(jobs.count) jobs, \(steps.joined(separator: ", ")); \(count), bound 0; "
                    + "\(everyWorker.flatMap(\.refusedCommitLines).count) commits refused in a rebalance"
            )
            if count.repeats != 0 {
                setup.keepLogs()
                for worker in everyWorker {
                    for line in worker.membershipLines { print("rolling restart \(worker.log.lastPathComponent): \(line.prefix(400))") }
                }
            }
            #expect(count.lost(of: jobs.map(\.id)) == [], "no job is lost")
            // The mock's SyncGroup race (docs/kafka.md) can refuse the commit of a member's revoked partitions right
            // after a sync; the next owner then repeats that member's last uncommitted work. Only then is it known.
            let syncRace = everyWorker.contains { !$0.refusedRevocationCommitLines.isEmpty }
            withKnownIssue("the mock refused a revocation commit (its SyncGroup race)", isIntermittent: true) {
                #expect(count.repeats == 0, "a rolling restart repeats nothing")
            } when: {
                syncRace
            }
            #expect(workers.flatMap(\.lostLines) == [], "no member loses its partitions")
        }
    }

    /// (c) 20,000 jobs, two workers; at 10 random points one of them (at random) gets SIGKILL and is started again
    /// 1 s later. No job is lost, and the repeats that follow each kill (until the next one) stay within the
    /// bound: the in-flight limit plus one commit interval of the killed worker's throughput, which its rate cap
    /// (50 jobs/s) bounds.
    ///
    /// Each kill waits (up to 12 s) for the group to commit on every partition again after the previous one (a kill
    /// point already passed then comes at once), so that the repeats a kill causes are counted before the next kill.
    /// While a group rebalances librdkafka commits nothing (on the mock, until the dead member's session expires),
    /// so a kill then used to repeat everything finished since the rebalance began (1,050 once, before this wait;
    /// 198 and 141 against 89 with it). The worker now takes no new job while finished ones wait longer than
    /// `processing.maxUncommittedTime` (here one commit interval) for their commit, so each kill stays within the
    /// bound wherever it comes.
    @Test func tenRandomKillsEachRepeatWithinTheBound() async throws {
        let seed = UInt64.random(in: 1...UInt64(UInt32.max))
        var random = SplitMix64(seed: seed)
        // 50 jobs/s per worker: the 20,000 jobs take over three minutes, room for ten kills with their recoveries
        // (1 s + the rejoin + up to 12 s each, about 1,400 results at most) inside the run: even if every kill
        // waits the whole 12 s, the tenth comes by about 15,400 results. At 200 jobs/s the last kills came after
        // the last job, and at 80 the tenth once did.
        let rateCap = 50
        try await ProcessGroupSetup.with(
            name: "kills", users: Self.users, latencyMs: 3, maxInFlight: Self.maxInFlight, commitInterval: Self.commitInterval
        ) { setup in
            let (jobs, ends) = try await setup.produceJobsWithEnds(prefix: "kills", count: 20_000, users: Self.users)
            let progress = try ResultProgress(kafka: setup.kafka, topic: ProcessGroupSetup.outputTopic, logger: setup.logger)
            let started = try (0..<2).map { try setup.startWorker(name: "w\($0)", requestsPerSecond: rateCap) }
            try await waitUntil("both workers to be assigned") { started.allSatisfy(\.hasBeenAssigned) }
            var workers = started
            let points = (0..<10).map { _ in Int(random.next() % 13_000) + 1_000 }.sorted()
            let bound = RepeatBound(maxInFlight: Self.maxInFlight, commitInterval: Self.commitInterval, throughput: Double(rateCap))
            var repeatsAtKill: [Int] = []
            var killsBeforeStable = 0
            var killedAt: [Int] = []
            for point in points {
                try await waitUntil("\(point) results") { progress.unique >= point }
                if !(try await setup.waitForCommitsOnEveryPartition(ends: ends, limit: .seconds(12))) {
                    killsBeforeStable += 1
                }
                let victim = Int(random.next() % 2)
                repeatsAtKill.append(progress.repeats)
                killedAt.append(progress.unique)
                #expect(await workers[victim].process.stop(signal: SIGKILL) == SIGKILL)
                try await Task.sleep(for: .seconds(1))
                workers[victim] = try setup.startWorker(name: "w\(victim)", requestsPerSecond: rateCap)
                let restarted = workers[victim]
                try await waitUntil("the restarted worker to be assigned") { restarted.hasBeenAssigned }
            }
            try await waitUntil("every job to have a result") { progress.unique >= jobs.count }
            for worker in workers {
                #expect(await worker.process.stop() == 0)
            }
            try await progress.stop()

            let count = try await OutputTopicCount.read(
                kafka: setup.kafka, topic: ProcessGroupSetup.outputTopic, partitions: ProcessGroupSetup.partitions, logger: setup.logger
            )
            let boundaries = repeatsAtKill + [count.repeats]
            let perKill = (0..<repeatsAtKill.count).map { boundaries[$0 + 1] - boundaries[$0] }
            print(
                "process scenario 10 kills (seed \(seed)): \(jobs.count) jobs, kills at \(killedAt) results; \(count); "
                    + "repeats per kill \(perKill), bound \(bound) each; \(killsBeforeStable) kills before the group "
                    + "committed on every partition again (12 s)"
            )
            #expect(count.lost(of: jobs.map(\.id)) == [], "no job is lost")
            #expect(repeatsAtKill.first == 0, "nothing repeated before the first kill")
            #expect(killedAt.allSatisfy { $0 < jobs.count }, "every kill came while jobs were still unanswered")
            #expect(perKill.allSatisfy { $0 <= bound.value }, "each kill's repeats within the bound: \(perKill)")
            #expect(count.repeats <= bound.value * points.count, "repeats within the bound per kill, in total")
        }
    }
}

/// A small seeded generator, so that a run's kill points can be reproduced from its printed seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
