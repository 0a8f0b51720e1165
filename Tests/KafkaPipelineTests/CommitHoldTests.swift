import Kafka
import KafkaPipeline
import Logging
import MioSimulator
import MioctxTestSupport
import Pipeline
import Testing

/// Issue 14: finished work that cannot be committed (librdkafka commits nothing while the group rebalances, and a
/// coordinator may refuse commits) is work a crash repeats. Past `maxUncommittedTime` the worker takes no new job
/// until a commit succeeds, so the repeats stay within that much work plus the jobs in flight, however long the
/// commits fail. The bound is off by default (docs/kafka.md); this test sets it.
@Suite("Kafka worker: no new jobs while the finished ones cannot be committed (issue 14)", .serialized)
struct CommitHoldTests {
    static let maxInFlight = 32

    @Test func failingCommitsStopNewJobsUntilACommitSucceeds() async throws {
        let capture = LogCapture()
        let logger = capture.logger(label: "commit-hold", level: .info)
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 2))
        try await WorkerHarness.with(partitions: 6, simulatorConfiguration: simulator, logger: logger) { harness in
            _ = try await harness.connectAndProduce(prefix: "hold", users: 30, jobs: 10_000)
            var configuration = harness.workerConfiguration(group: "hold", maxInFlight: Self.maxInFlight)
            configuration.commitInterval = .milliseconds(200)
            configuration.maxUncommittedTime = .milliseconds(600)
            let worker = try harness.startWorker(configuration)
            try await waitUntil("some jobs committed") { worker.committedTotal >= 500 }

            // Every commit now fails (as while a coordinator refuses them in a rebalance).
            harness.cluster.pushRequestErrors(.offsetCommit, Array(repeating: .requestTimedOut, count: 100_000))
            // The last successful commit was at most one commit interval ago: 1.5 s is past the bound of 600 ms.
            try await Task.sleep(for: .milliseconds(1500))
            let committedDuringHold = worker.committedTotal
            let answeredAtHold = Self.answered(harness)
            try await Task.sleep(for: .seconds(2))
            let answeredInTwoSeconds = Self.answered(harness) - answeredAtHold
            print("commit hold: \(answeredInTwoSeconds) answers in the 2 s after the hold began (in-flight limit \(Self.maxInFlight))")
            #expect(
                answeredInTwoSeconds <= Self.maxInFlight,
                "while commits fail only the jobs in flight finish: \(answeredInTwoSeconds) answers"
            )
            #expect(worker.committedTotal == committedDuringHold, "the commits did fail meanwhile")
            #expect(worker.worker.isReady, "the worker stays in its group, ready")
            #expect(
                capture.all.contains { $0.message.hasPrefix("not taking new jobs until the finished ones are committed") },
                "the hold is logged"
            )

            harness.cluster.clearRequestErrors(.offsetCommit)
            try await waitUntil("the worker to commit and take jobs again") {
                worker.committedTotal >= committedDuringHold + 1_000
            }
            #expect(capture.all.contains { $0.message.hasPrefix("taking jobs again") }, "the worker resumed by itself")
            try await worker.stop()

            let count = try await OutputTopicCount.read(
                kafka: harness.kafka, topic: WorkerHarness.outputTopic, partitions: 6, logger: harness.logger
            )
            #expect(count.repeats == 0, "nothing repeated: the worker never crashed or lost a partition")
        }
    }

    /// getContext calls the simulator answered 200 so far.
    static func answered(_ harness: WorkerHarness) -> Int {
        harness.simulator.stats().count("POST /v1/context", status: 200)
    }
}
