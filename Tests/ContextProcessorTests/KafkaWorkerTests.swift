import ContextProcessor
import Foundation
import Kafka
import MioSimulator
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

            let worker = RunningWorker(try harness.makeWorker(harness.workerConfiguration()), logger: harness.logger)
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
            try await waitUntil("committed offsets to reach the end of every partition") {
                let committed = worker.worker.committedOffsets
                return ends.allSatisfy { partition, end in
                    committed[KafkaTopicPartition(topic: WorkerHarness.inputTopic, partition: partition)] == end
                }
            }
            try await worker.stop()
        }
    }
}
