import KafkaPipeline
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import Foundation
import Kafka
import MioSimulator
import MioctxTestSupport
import Testing

@Suite("Kafka worker end to end (mock cluster, simulator over HTTP)")
struct KafkaWorkerTests {
    @Test func everyJobGetsExactlyOneMatchingResultAndOffsetsReachTheEnd() async throws {
        try await WorkerHarness.with { harness in
            let users = (0..<50).map { "user-\($0)" }
            try await harness.connect(users)
            let jobs = (0..<5000).map { index in
                (id: "job-\(index)", userID: users[index % users.count], query: "query \(index)")
            }
            let ends = try await harness.produceJobs(jobs)
            #expect(ends.count == 6)

            let worker = try harness.startWorker()
            let results = try await harness.read(topic: WorkerHarness.outputTopic) { read in read.count >= 5000 }
            let decoded = try results.map(ResultMessage.init)
            #expect(Set(decoded.map(\.id)).count == 5000)
            let expected = Dictionary(uniqueKeysWithValues: jobs.map { ($0.id, $0) })
            for result in decoded {
                let job = try #require(expected[result.id])
                #expect(result.status == "ok")
                #expect(result.userID == job.userID)
                #expect(result.context == MioSimulator.expectedContent(userID: job.userID, query: job.query))
                #expect(result.message.key == Array(job.userID.utf8))
                #expect(result.message.header("mioctx-job-id")?.stringValue == job.id)
            }
            let completions = decoded.compactMap { ($0.json["completedAt"] as? String).flatMap(ResultTimestamp.parse) }.sorted()
            if let first = completions.first, let last = completions.last, last > first {
                print("5,000-job test: \(Int(Double(completions.count - 1) / (last - first))) jobs/s between the first and the last result")
            }
            try await worker.waitUntilCommitted(ends)
            try await worker.stop()
        }
    }
}

@Suite("Kafka worker: bad input, ordering, group membership")
struct KafkaWorkerBehaviourTests {
    @Test func everyKindOfBadInputIsDeadLetteredWithItsReasonWhileGoodJobsAroundItAreProcessed() async throws {
        try await WorkerHarness.with(partitions: 1) { harness in
            try await harness.connect(["alice"])
            let good: (String) -> [UInt8] = { id in Array(#"{"id":"\#(id)","userId":"alice","query":"q \#(id)"}"#.utf8) }
            let bad: [(reason: String, value: [UInt8])] = [
                ("not_utf8", [0xFF, 0xFE, 0x7B]),
                ("not_json", Array("{not json".utf8)),
                ("not_object", Array("[1,2]".utf8)),
                ("missing_field", Array(#"{"id":"x","query":"q"}"#.utf8)),
                ("wrong_type", Array(#"{"id":7,"userId":"alice","query":"q"}"#.utf8)),
                ("empty_field", Array(#"{"id":"x","userId":"alice","query":""}"#.utf8)),
                ("field_too_large", Array(#"{"id":"\#(String(repeating: "i", count: 300))","userId":"alice","query":"q"}"#.utf8)),
                ("unknown_op", Array(#"{"id":"x","userId":"alice","op":"delete"}"#.utf8)),
            ]
            var messages: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = []
            for (index, entry) in bad.enumerated() {
                messages.append((key: "good-\(index)", value: good("good-\(index)"), headers: []))
                messages.append((key: "bad-\(index)", value: entry.value, headers: [KafkaHeader(key: "origin", value: "test")]))
            }
            messages.append((key: "good-last", value: good("good-last"), headers: []))
            let messageCount = messages.count
            // One partition and sequential sends keep the offsets in list order.
            for message in messages {
                try await harness.produce([message])
            }

            let worker = try harness.startWorker()
            let dead = try await harness.read(topic: WorkerHarness.deadLetterTopic) { $0.count >= bad.count }
            let results = try await harness.read(topic: WorkerHarness.outputTopic) { $0.count >= bad.count + 1 }
            try await waitUntil("the committed offset to pass every message") {
                worker.worker.committedOffsets[KafkaTopicPartition(topic: WorkerHarness.inputTopic, partition: 0)] == Int64(messageCount)
            }
            try await worker.stop()

            #expect(Set(try results.map { try ResultMessage($0).id }) == Set((0..<bad.count).map { "good-\($0)" } + ["good-last"]))
            for (index, entry) in bad.enumerated() {
                let message = try #require(dead.first { $0.key == Array("bad-\(index)".utf8) })
                #expect(message.value == entry.value, "the original bytes are kept")
                #expect(message.header("origin")?.stringValue == "test", "the original headers are kept")
                #expect(message.header(KafkaResultSink.DeadLetterHeader.reason)?.stringValue == entry.reason)
                #expect(message.header(KafkaResultSink.DeadLetterHeader.message)?.stringValue?.isEmpty == false)
                #expect(message.header(KafkaResultSink.DeadLetterHeader.sourceTopic)?.stringValue == WorkerHarness.inputTopic)
                #expect(message.header(KafkaResultSink.DeadLetterHeader.sourcePartition)?.stringValue == "0")
                #expect(message.header(KafkaResultSink.DeadLetterHeader.sourceOffset)?.stringValue == "\(index * 2 + 1)")
            }
        }
    }

    @Test func perKeyOrderingHoldsUnderRandomLatency() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 2, jitterMs: 40), seed: 11)
        try await WorkerHarness.with(partitions: 3, simulatorConfiguration: simulator) { harness in
            let users = (0..<8).map { "ordered-\($0)" }
            try await harness.connect(users)
            // Jobs of each user go to one partition (keyed by user), numbered in production order.
            var jobs: [TestJob] = []
            for sequence in 0..<40 {
                for user in users {
                    jobs.append((id: "\(user)#\(sequence)", userID: user, query: "q\(sequence)"))
                }
            }
            for chunk in stride(from: 0, to: jobs.count, by: users.count) {
                try await harness.produceJobs(Array(jobs[chunk..<min(chunk + users.count, jobs.count)]))
            }
            let worker = try harness.startWorker(harness.workerConfiguration(ordering: .key))
            let jobCount = jobs.count
            let results = try await harness.read(topic: WorkerHarness.outputTopic) { $0.count >= jobCount }
            try await worker.stop()
            for user in users {
                let sequence = try results.map(ResultMessage.init).filter { $0.userID == user }.map { result in
                    Int(result.id.split(separator: "#").last!)!
                }
                #expect(sequence == Array(0..<40), "results of \(user) out of order")
            }
        }
    }

    @Test func twoWorkersShareThePartitionsAndTheSurvivorFinishesEverything() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 5))
        try await WorkerHarness.with(partitions: 6, simulatorConfiguration: simulator) { harness in
            let users = (0..<20).map { "member-\($0)" }
            try await harness.connect(users)
            let first = try harness.startWorker(harness.workerConfiguration(maxInFlight: 16))
            let second = try harness.startWorker(harness.workerConfiguration(maxInFlight: 16))
            try await waitUntil("both workers to own partitions") {
                !first.worker.assignment.isEmpty && !second.worker.assignment.isEmpty
                    && first.worker.assignment.count + second.worker.assignment.count == 6
            }
            let jobs = (0..<3000).map { (id: "shared-\($0)", userID: users[$0 % users.count], query: "q\($0)") }
            try await harness.produceJobs(jobs)
            try await waitUntil("some results") { first.worker.committedOffsets.count + second.worker.committedOffsets.count > 0 }
            try await second.stop()
            try await waitUntil("the survivor to own every partition") { first.worker.assignment.count == 6 }
            let results = try await harness.readResults(forJobs: jobs.count)
            try await first.stop()
            let ids = try results.map { try ResultMessage($0).id }
            #expect(Set(ids) == Set(jobs.map(\.id)), "no job is lost")
        }
    }

    /// The cluster's only broker goes away in mid-run (a restart, a network cut) and comes back: the worker
    /// rides it out without stopping, every job gets its result and the commits catch up to the end.
    @Test func aBrokerOutageInMidRunLosesNothingAndTheWorkerCarriesOn() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 5))
        try await WorkerHarness.with(partitions: 3, simulatorConfiguration: simulator) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "outage", users: 20, jobs: 3000)
            let worker = try harness.startWorker(harness.workerConfiguration(maxInFlight: 32))
            try await waitUntil("a first commit") { !worker.worker.committedOffsets.isEmpty }

            try harness.cluster.setBrokerDown(1)
            try await Task.sleep(for: .seconds(3))
            let committedBeforeTheReturn = worker.committedTotal
            try harness.cluster.setBrokerUp(1)
            let back = ContinuousClock.now

            try await worker.waitUntilCommitted(ends)
            let caughtUp = ContinuousClock.now - back
            #expect(committedBeforeTheReturn < Int64(jobs.count), "the outage came before the end of the run")
            let repeats = try await harness.expectEveryJobDone(jobs, ends: ends, by: worker)
            print(
                "broker outage test: every offset committed \(caughtUp) after the broker came back; "
                    + "\(repeats) repeated results"
            )
            try await worker.stop()
        }
    }

    /// A rolling restart of a three-broker cluster in mid-run: each broker in turn hands its partitions' leadership
    /// to the next, goes down for a second and comes back. Whichever broker is the group's coordinator goes down
    /// too. Nothing is lost and the commits reach the end.
    @Test func aRollingRestartOfTheBrokersLosesNothing() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 20))
        try await WorkerHarness.with(brokers: 3, partitions: 3, simulatorConfiguration: simulator) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "rolling", users: 20, jobs: 6000)
            let worker = try harness.startWorker(harness.workerConfiguration(maxInFlight: 32))
            try await waitUntil("a first commit") { !worker.worker.committedOffsets.isEmpty }
            for broker in Int32(1)...3 {
                try harness.moveLeaders(partitions: 3) { _ in broker % 3 + 1 }
                try harness.cluster.setBrokerDown(broker)
                try await Task.sleep(for: .seconds(1))
                try harness.cluster.setBrokerUp(broker)
            }
            let committedDuringTheRestart = worker.committedTotal
            #expect(committedDuringTheRestart < Int64(jobs.count), "the restart came before the end of the run")
            let repeats = try await harness.expectEveryJobDone(jobs, ends: ends, by: worker)
            print(
                "rolling restart test: \(committedDuringTheRestart) of \(jobs.count) jobs committed when the last broker "
                    + "came back; \(repeats) repeated results"
            )
            try await worker.stop()
        }
    }

    /// Kafka refuses the results (an authorization error on every produce request for a while): the worker
    /// retries each delivery, then stops with an error rather than skip the job, and commits nothing past it.
    /// A worker started once Kafka accepts results again gives every job its result.
    @Test func aResultKafkaRefusesStopsTheWorkerAndARestartLosesNothing() async throws {
        try await WorkerHarness.with(partitions: 1) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "refused", users: 5, jobs: 50)
            var configuration = harness.workerConfiguration(maxInFlight: 8)
            configuration.engine.delivery = RetryPolicy(
                maxAttempts: 3,
                maxTimePerJob: .seconds(10),
                initialBackoff: .milliseconds(10),
                maxBackoff: .milliseconds(50)
            )
            harness.cluster.pushRequestErrors(.produce, Array(repeating: .topicAuthorizationFailed, count: 200))
            let refused = try harness.startWorker(configuration)
            let outcome = try await refused.stopped()
            let failure = try #require(throws: KafkaWorker.Failure.self) { try outcome.get() }
            #expect(failure.message.contains("TOPIC_AUTHORIZATION_FAILED"), "\(failure)")
            // The failure names the job's source, `context-requests[0]@OFFSET`: no commit may pass that offset.
            let failedOffset = try #require(
                failure.message.split(separator: "@").dropFirst().first.flatMap { Int64($0.prefix(while: \.isNumber)) }
            )
            let committed = refused.worker.committedOffsets[KafkaTopicPartition(topic: WorkerHarness.inputTopic, partition: 0)] ?? 0
            #expect(committed <= failedOffset, "nothing is committed past the job whose result was refused")

            harness.cluster.clearRequestErrors(.produce)
            let restarted = try harness.startWorker(configuration)
            _ = try await harness.expectEveryJobDone(jobs, ends: ends, by: restarted)
            print("refused results test: the first worker gave up on offset \(failedOffset) and had committed up to \(committed)")
            try await restarted.stop()
        }
    }

    /// On a three-broker cluster, the leaders of the input and output partitions move twice in mid-run (a rolling
    /// restart, a reassignment): the producer and the consumer follow the leaders, nothing is lost, the commits
    /// reach the end.
    @Test func partitionLeadersMovingInMidRunLoseNothing() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 5))
        try await WorkerHarness.with(brokers: 3, partitions: 3, simulatorConfiguration: simulator) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "leader", users: 20, jobs: 3000)
            let worker = try harness.startWorker(harness.workerConfiguration(maxInFlight: 32))
            for move in Int32(1)...2 {
                try await waitUntil("more commits before move \(move)") { worker.committedTotal >= Int64(move) * 500 }
                try harness.moveLeaders(partitions: 3) { partition in (partition + move) % 3 + 1 }
            }
            #expect(worker.committedTotal < Int64(jobs.count), "the leaders moved before the end of the run")
            let repeats = try await harness.expectEveryJobDone(jobs, ends: ends, by: worker)
            print("leader move test: \(repeats) repeated results")
            try await worker.stop()
        }
    }
}

/// Seconds since 1970 of a result's `completedAt` (RFC 3339 with fractional seconds).
enum ResultTimestamp {
    static func parse(_ text: String) -> Double? {
        (try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))?
            .timeIntervalSince1970
    }
}
