import Foundation
import Kafka
import KafkaPipeline
import Logging
import MioSimulator
import MioctxTestSupport
import Pipeline
import Testing

/// Issue 14 §1 (a rolling restart repeats nothing): a member stopped while its group cannot commit (the mock
/// coordinator refuses commits through each join of a rolling restart, and those joins can follow each other for
/// 15 s and more) waits, within its shutdown grace period, for its finished work to be committed before it
/// leaves. The close's own revocation commit would be sent into the same refusals and give up after half a
/// second, leaving the work to be repeated by the partitions' next owner.
@Suite("Kafka worker: a graceful stop commits what it finished (issue 14)", .serialized)
struct GracefulStopCommitTests {
    @Test func aStopWaitsWithinItsGracePeriodForCommitsToSucceedAgain() async throws {
        let capture = LogCapture()
        let logger = capture.logger(label: "stop-commit", level: .info)
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 2))
        try await withObservedHarness(partitions: 6, simulatorConfiguration: simulator, logger: logger) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "stop", users: 30, jobs: 4000)
            var configuration = harness.workerConfiguration(group: "stop-commit", maxInFlight: 32)
            configuration.commitInterval = .milliseconds(200)
            configuration.shutdownGracePeriod = .seconds(30)
            let first = try harness.startWorker(configuration, name: "first")
            try await waitUntil("some jobs committed") { first.committedTotal >= 300 }

            // Commits fail for 14 s: longer than the least wait (two commit intervals + 10 s), within the grace period.
            harness.cluster.pushRequestErrors(.offsetCommit, Array(repeating: .requestTimedOut, count: 100_000))
            let refusals = Task {
                try await Task.sleep(for: .seconds(14))
                harness.cluster.clearRequestErrors(.offsetCommit)
            }
            let stopping = ContinuousClock.now
            try await first.stop()
            let stopTook = ContinuousClock.now - stopping
            try await refusals.value
            #expect(stopTook >= .seconds(13), "the stop waited for the commits to succeed again: \(stopTook)")
            #expect(stopTook < .seconds(30), "within the grace period: \(stopTook)")
            #expect(
                !capture.all.contains { $0.message.hasPrefix("the final marks were not committed") },
                "the final marks were committed before the close"
            )

            // A new member of the group finishes the run from the committed offsets.
            let second = try harness.startWorker(configuration, name: "second")
            try await waitUntil("the group's committed offsets to reach the end of every partition") {
                try await harness.groupCommittedOffsets(group: "stop-commit", partitions: 6) == ends
            }
            try await second.stop()
            let count = try await OutputTopicCount.read(
                kafka: harness.kafka, topic: WorkerHarness.outputTopic, partitions: 6, logger: harness.logger
            )
            print("graceful stop while commits fail: \(jobs.count) jobs, stop took \(stopTook), \(count)")
            #expect(count.lost(of: jobs.map(\.id)) == [], "no job is lost")
            #expect(count.repeats == 0, "the second member repeats none of the first one's work")
        }
    }
}
