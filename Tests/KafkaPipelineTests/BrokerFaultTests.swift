import Coordination
import Foundation
import Kafka
import KafkaPipeline
import Logging
import MioSimulator
import MioctxTestSupport
import Pipeline
import Testing

/// Issue 14 §3: broker faults as tests. One in-process worker on a 3-broker mock cluster (6 partitions, every
/// topic replicated on all brokers) and the Mio simulator; a fault is injected once a fifth of the jobs is
/// committed. Each fault: no job lost (read back independently from the output topic), repeats within the bound
/// (the in-flight limit plus one commit interval of the run's throughput), and the worker recovers by itself:
/// it commits the end of every partition, still owns all six and is ready, without a restart.
@Suite("Kafka worker: broker faults on the mock cluster (issue 14)", .serialized)
struct BrokerFaultTests {
    enum Fault: String, CaseIterable, Sendable {
        /// 20 Produce requests answered NOT_ENOUGH_REPLICAS (the idempotent producer retries).
        case produceErrors
        /// 10 OffsetCommit requests answered REBALANCE_IN_PROGRESS, REQUEST_TIMED_OUT or COORDINATOR_NOT_AVAILABLE.
        case commitErrors
        /// 10 Fetch requests answered NOT_LEADER_OR_FOLLOWER.
        case fetchErrors
        /// A rejoin (heartbeat REBALANCE_IN_PROGRESS) whose JoinGroup is answered COORDINATOR_NOT_AVAILABLE,
        /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE.
        case joinGroupErrors
        /// A rejoin whose SyncGroup is answered REBALANCE_IN_PROGRESS (so it joins once more).
        case syncGroupErrors
        /// 3 Heartbeats answered REBALANCE_IN_PROGRESS, then one ILLEGAL_GENERATION: the member loses its
        /// generation and its partitions (`lost`), rejoins and gets them back.
        case heartbeatErrors
        /// Broker 1 down for 5 s (the partitions it leads stall; session.timeout.ms 10 s keeps the member).
        case brokerDown
        /// Every partition's leader moves to another broker, twice.
        case leaderChange
        /// Commits failing for 3 s (REQUEST_TIMED_OUT), then a heartbeat answered ILLEGAL_GENERATION: the member
        /// loses its generation with 3 s of finished work uncommitted and gets the same partitions back; it must
        /// resume after its own finished work, not repeat it from the last commit.
        case generationLostWithUncommittedWork
        /// Broker 1 down 5 s, 20 produce errors, 10 commit errors and 10 fetch errors in one run.
        case combined
    }

    static let jobs = 5000
    static let maxInFlight = 32

    @Test(arguments: Fault.allCases)
    func aFaultLosesNoJobAndTheWorkerRecovers(_ fault: Fault) async throws {
        let capture = LogCapture()
        let logger = capture.logger(label: "fault-\(fault.rawValue)", level: .warning)
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 2))
        try await WorkerHarness.with(brokers: 3, partitions: 6, simulatorConfiguration: simulator, logger: logger) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "fault-\(fault.rawValue)", users: 30, jobs: Self.jobs)
            var configuration = harness.workerConfiguration(group: "fault-\(fault.rawValue)", maxInFlight: Self.maxInFlight)
            if fault == .brokerDown || fault == .combined {
                // The coordinator may be the broker taken down: the session must outlive the outage.
                configuration.kafka.properties["session.timeout.ms"] = "10000"
            }
            let started = ContinuousClock.now
            let worker = try harness.startWorker(configuration)
            try await waitUntil("a fifth of the jobs committed") { worker.committedTotal >= Int64(Self.jobs / 5) }
            let committedAtTheFault = worker.committedTotal
            try await Self.inject(fault, into: harness)

            try await worker.waitUntilCommitted(ends)
            let elapsed = ContinuousClock.now - started
            #expect(worker.worker.isReady, "the worker is still in its group and taking jobs")
            #expect(worker.worker.assignment.count == 6, "the worker owns every partition again")
            try await worker.stop()

            let count = try await OutputTopicCount.read(
                kafka: harness.kafka, topic: WorkerHarness.outputTopic, partitions: 6, logger: harness.logger
            )
            let bound = RepeatBound(
                maxInFlight: Self.maxInFlight,
                commitInterval: configuration.commitInterval,
                throughput: Double(jobs.count) / elapsed.timeInterval
            )
            let lostPartitions = capture.all.filter { $0.message.hasPrefix("Kafka partitions lost") }.count
            print(
                "broker fault \(fault.rawValue): \(jobs.count) jobs, fault at \(committedAtTheFault) committed, "
                    + "\(count), bound \(bound), \(lostPartitions) lost-partition events, \(elapsed)"
            )
            #expect(count.lost(of: jobs.map(\.id)) == [], "no job is lost")
            if fault != .combined {
                #expect(count.repeats <= bound.value, "repeats within the bound")
            }
            if fault == .generationLostWithUncommittedWork {
                #expect(lostPartitions > 0, "the fault took the member's generation (else this case tests nothing)")
            }
        }
    }

    /// Injects `fault`; returns once it is over (a broker down comes back up first).
    static func inject(_ fault: Fault, into harness: WorkerHarness) async throws {
        let cluster = harness.cluster
        switch fault {
        case .produceErrors:
            cluster.pushRequestErrors(.produce, Array(repeating: .notEnoughReplicas, count: 20))
        case .commitErrors:
            let errors: [KafkaMockCluster.BrokerError] = [.rebalanceInProgress, .requestTimedOut, .coordinatorNotAvailable]
            cluster.pushRequestErrors(.offsetCommit, errors + Array(repeating: .rebalanceInProgress, count: 7))
        case .fetchErrors:
            cluster.pushRequestErrors(.fetch, Array(repeating: .notLeaderForPartition, count: 10))
        case .joinGroupErrors:
            cluster.pushRequestErrors(.joinGroup, [.coordinatorNotAvailable, .notCoordinator, .coordinatorNotAvailable])
            cluster.pushRequestErrors(.heartbeat, [.rebalanceInProgress])
        case .syncGroupErrors:
            cluster.pushRequestErrors(.syncGroup, [.rebalanceInProgress])
            cluster.pushRequestErrors(.heartbeat, [.rebalanceInProgress])
        case .heartbeatErrors:
            cluster.pushRequestErrors(.heartbeat, [.rebalanceInProgress, .rebalanceInProgress, .rebalanceInProgress, .illegalGeneration])
        case .brokerDown:
            try cluster.setBrokerDown(1)
            try await Task.sleep(for: .seconds(5))
            try cluster.setBrokerUp(1)
        case .leaderChange:
            try harness.moveLeaders(partitions: 6) { $0 % 3 + 1 }
            try await Task.sleep(for: .seconds(1))
            try harness.moveLeaders(partitions: 6) { ($0 + 1) % 3 + 1 }
        case .generationLostWithUncommittedWork:
            cluster.pushRequestErrors(.offsetCommit, Array(repeating: .requestTimedOut, count: 40))
            try await Task.sleep(for: .seconds(3))
            cluster.pushRequestErrors(.heartbeat, [.illegalGeneration])
            try await Task.sleep(for: .seconds(2))
            cluster.clearRequestErrors(.offsetCommit)
        case .combined:
            cluster.pushRequestErrors(.produce, Array(repeating: .notEnoughReplicas, count: 20))
            cluster.pushRequestErrors(.offsetCommit, Array(repeating: .requestTimedOut, count: 10))
            cluster.pushRequestErrors(.fetch, Array(repeating: .notLeaderForPartition, count: 10))
            try cluster.setBrokerDown(1)
            try await Task.sleep(for: .seconds(5))
            try cluster.setBrokerUp(1)
        }
    }
}
