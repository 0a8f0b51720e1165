import Foundation
import Kafka
import KafkaPipeline
import MioSimulator
import MioctxTestSupport
import Pipeline
import PipelineTestSupport
import Testing

/// Issue 14 §2: one oversized result, a result Kafka refuses, or an oversized input message never stalls a
/// partition nor stops the worker; the worker stops only when nothing can be delivered at all.
@Suite("Kafka worker: oversized results and input, refused deliveries")
struct OversizeTests {
    /// One user's Mio answer is 2 MiB (the Mio client reads up to 8 MiB; the producer's message.max.bytes is
    /// 1,000,000): its jobs get a small `too_large` result, every other job its answer, and the worker goes on.
    @Test func aTwoMebibyteAnswerGivesTooLargeResultsAndTheWorkerNeverStops() async throws {
        var faults = MioSimulator.Faults()
        faults.answerBytes = ["big-user": 2 * 1024 * 1024]
        try await WorkerHarness.with(simulatorConfiguration: MioSimulator.Configuration(faults: faults)) { harness in
            let users = (0..<20).map { "user-\($0)" }
            try await harness.connect(users + ["big-user"])
            var jobs: [TestJob] = (0..<2000).map { (id: "job-\($0)", userID: users[$0 % users.count], query: "q\($0)") }
            for index in 0..<5 {
                // Spread among the others, so that ordinary jobs of the same partitions come after them.
                jobs.insert((id: "big-\(index)", userID: "big-user", query: "big \(index)"), at: 100 + index * 380)
            }
            let ends = try await harness.produceJobs(jobs)
            let worker = try harness.startWorker()
            let results = try await harness.readResults(forJobs: jobs.count).map(ResultMessage.init)
            try await worker.waitUntilCommitted(ends)
            try await worker.stop()

            var byID: [String: ResultMessage] = [:]
            for result in results { byID[result.id] = result }
            #expect(byID.count == 2005, "every job answered")
            let tooLarge = byID.values.filter { $0.status == "too_large" }
            #expect(Set(tooLarge.map(\.id)) == Set((0..<5).map { "big-\($0)" }))
            #expect(byID.values.filter { $0.status == "ok" }.count == 2000)
            for result in tooLarge {
                let error = try #require(result.json["error"] as? [String: Any])
                let message = try #require(error["message"] as? String)
                #expect(error["code"] as? String == "too_large")
                #expect(message.contains("900000"), "names the limit: \(message)")
                let size = message.split(separator: " ").drop { $0 != "be" }.dropFirst().first.flatMap { Int($0) } ?? 0
                #expect(size > 2 * 1024 * 1024, "names the size of the result it would have been: \(message)")
                #expect(result.context == nil)
                #expect((result.message.value?.count ?? 0) < 2000, "the result is small")
            }
        }
    }

    /// Kafka refuses a result for what it is (`MSG_SIZE_TOO_LARGE`, then `INVALID_RECORD`, injected on the
    /// mock cluster's Produce): the job goes to the dead-letter topic with the reason in its headers, its offset is
    /// committed, and the worker goes on with the next jobs.
    @Test(arguments: [(KafkaMockCluster.BrokerError.messageSizeTooLarge, "msg_size_too_large"), (KafkaMockCluster.BrokerError(code: 87), "invalid_record")])
    func aResultKafkaRefusesForWhatItIsIsDeadLetteredAndTheWorkerGoesOn(
        _ error: KafkaMockCluster.BrokerError, _ reason: String
    ) async throws {
        try await WorkerHarness.with(partitions: 1) { harness in
            try await harness.connect(["alice"])
            try await harness.produceJobs([(id: "refused-0", userID: "alice", query: "q0")])
            // The cluster's next produce request, the worker's first result, is refused; the dead-letter copy that
            // follows goes through.
            harness.cluster.pushRequestErrors(.produce, [error])
            let worker = try harness.startWorker(harness.workerConfiguration(maxInFlight: 1))
            let dead = try await harness.read(topic: WorkerHarness.deadLetterTopic) { $0.count >= 1 }
            let jobs: [TestJob] = (1...20).map { (id: "after-\($0)", userID: "alice", query: "q\($0)") }
            let ends = try await harness.produceJobs(jobs)
            let results = try await harness.readResults(forJobs: jobs.count).map(ResultMessage.init)
            try await worker.waitUntilCommitted(ends)
            try await worker.stop()

            let copy = try #require(dead.first)
            #expect(copy.header(KafkaResultSink.DeadLetterHeader.reason)?.stringValue == "result_refused")
            let message = copy.header(KafkaResultSink.DeadLetterHeader.message)?.stringValue ?? ""
            #expect(message.contains(reason), "the reason says what Kafka refused: \(message)")
            #expect(copy.header(KafkaResultSink.DeadLetterHeader.sourceOffset)?.stringValue == "0")
            #expect(copy.value.map { String(decoding: $0, as: UTF8.self) }?.contains("refused-0") == true, "the job itself")
            #expect(Set(results.map(\.id)).isSuperset(of: jobs.map(\.id)), "the worker went on")
            #expect(!results.contains { $0.id == "refused-0" })
        }
    }

    /// A message above the job limit is dead-lettered without its value (the consumer never copies it), with the
    /// reason and its size in the headers; the jobs around it are processed and its offset committed.
    @Test func anInputMessageOverTheJobLimitIsDeadLetteredWithoutItsValue() async throws {
        try await WorkerHarness.with(partitions: 1) { harness in
            try await harness.connect(["alice"])
            let good: (String) -> [UInt8] = { id in Array(#"{"id":"\#(id)","userId":"alice","query":"q"}"#.utf8) }
            let huge = Array(#"{"id":"huge","userId":"alice","query":""#.utf8) + [UInt8](repeating: 0x71, count: 600_000)
                + Array(#""}"#.utf8)
            let messages: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = [
                (key: "a", value: good("before"), headers: []),
                (key: "b", value: huge, headers: [KafkaHeader(key: "origin", value: "test")]),
                (key: "c", value: good("after"), headers: []),
            ]
            for message in messages {
                try await harness.produce([message])
            }
            let worker = try harness.startWorker()
            let dead = try await harness.read(topic: WorkerHarness.deadLetterTopic) { $0.count >= 1 }
            let results = try await harness.readResults(forJobs: 2).map(ResultMessage.init)
            try await worker.waitUntilCommitted([0: 3])
            try await worker.stop()

            #expect(Set(results.map(\.id)) == ["before", "after"])
            let copy = try #require(dead.first)
            #expect(copy.value == nil, "the value is dropped")
            #expect(copy.key == Array("b".utf8))
            #expect(copy.header("origin")?.stringValue == "test")
            #expect(copy.header(KafkaResultSink.DeadLetterHeader.reason)?.stringValue == "message_too_large")
            let dropped = copy.header(KafkaResultSink.DeadLetterHeader.valueDropped)?.stringValue ?? ""
            #expect(dropped.contains("\(huge.count)") && dropped.contains("\(Job.maxMessageBytes)"), "\(dropped)")
            #expect(copy.header(KafkaResultSink.DeadLetterHeader.sourceOffset)?.stringValue == "1")
        }
    }

    /// No broker at all for longer than the outage limit: the worker stops, saying why in one line, and commits
    /// nothing it did not deliver.
    @Test func noBrokerForLongerThanTheOutageLimitStopsTheWorkerSayingWhy() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 1500))
        try await WorkerHarness.with(partitions: 1, simulatorConfiguration: simulator) { harness in
            try await harness.connect(["alice"])
            try await harness.produceJobs((0..<10).map { (id: "down-\($0)", userID: "alice", query: "q\($0)") })
            var configuration = harness.workerConfiguration(maxInFlight: 4)
            configuration.engine.maxOutage = .seconds(3)
            let worker = try harness.startWorker(configuration)
            try await waitUntil("jobs in flight") { worker.worker.pendingJobs > 0 }
            try harness.cluster.setBrokerDown(1)
            let outcome = try await worker.stopped()
            let failure = try #require(throws: KafkaWorker.Failure.self) { try outcome.get() }
            #expect(failure.message.contains("nothing could be delivered for"), "\(failure)")
            try harness.cluster.setBrokerUp(1)
        }
    }
}
