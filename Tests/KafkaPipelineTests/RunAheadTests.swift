import Coordination
import Foundation
import Kafka
import KafkaPipeline
import Logging
import MioSimulator
import MioctxTestSupport
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import Synchronization
import Testing

/// Issue 14 §1 ask 2: the work past a partition's committed mark is bounded. One stuck job holds its partition's
/// mark; later jobs of that partition may finish only up to `maxRunAhead` offsets past it, while the other
/// partitions keep flowing.
@Suite("Kafka worker: run-ahead cap (issue 14)")
struct RunAheadTests {
    /// The Mio API, except that the call for one query waits until ``release()``.
    final class StallingAPI: ContextAPI {
        private let base: any ContextAPI
        private let stalledQuery: String
        private let released = WaitableState<Bool, Void>(false)
        private let stalls = Atomic<Int>(0)

        init(_ base: any ContextAPI, stalling query: String) {
            self.base = base
            self.stalledQuery = query
        }

        /// How many calls are waiting now or waited.
        var stalled: Int { stalls.load(ordering: .relaxed) }

        func release() {
            released.withLock { released, waiters in
                released = true
                waiters.wakeAll(with: ())
            }
        }

        func getContext(query: String, accessToken: String) async throws -> String {
            if query == stalledQuery {
                stalls.add(1, ordering: .relaxed)
                await released.wait(cancelled: ()) { $0 ? () : nil }
            }
            return try await base.getContext(query: query, accessToken: accessToken)
        }

        func getContextSummary(accessToken: String) async throws -> String? {
            try await base.getContextSummary(accessToken: accessToken)
        }
    }

    @Test func aStuckJobHoldsItsPartitionWithinTheCapWhileTheOthersFlow() async throws {
        let simulator = MioSimulator.Configuration(faults: MioSimulator.Faults(latencyMs: 2))
        try await WorkerHarness.with(partitions: 3, simulatorConfiguration: simulator) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "ahead", users: 30, jobs: 3000)
            // Where each job is: the input topic read back.
            let input = try await harness.read(topic: WorkerHarness.inputTopic) { $0.count >= jobs.count }
            var place: [String: (partition: Int32, offset: Int64)] = [:]
            for message in input {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(message.value ?? [])) as? [String: Any])
                place[try #require(object["id"] as? String)] = (message.partition, message.offset)
            }
            let stuck = jobs[100]
            let (stuckPartition, stuckOffset) = try #require(place[stuck.id])

            let maxRunAhead = 40
            var configuration = harness.workerConfiguration(maxInFlight: 16)
            configuration.maxRunAhead = maxRunAhead
            let api = StallingAPI(MioContextAPI(harness.mio), stalling: stuck.query)
            let handler = JobHandler(api: api, tokens: MioTokenSource(harness.tokens), logger: harness.logger)
            let worker = RunningWorker(
                try KafkaWorker(configuration: configuration, handler: handler, logger: harness.logger),
                logger: harness.logger
            )
            let counter = try WorkerProcessTests.ResultCounter(harness)

            // Every job of the other partitions gets its result while the stuck job waits: no head-of-line block.
            let others = Set(jobs.map(\.id).filter { place[$0]?.partition != stuckPartition })
            try await waitUntil("every job of the other partitions to have a result") {
                others.isSubset(of: Set(counter.all))
            }
            #expect(api.stalled == 1, "the stuck job is still waiting")
            // Let the partition run into its cap, then check it stays there.
            try await Task.sleep(for: .seconds(2))
            let ahead = Set(counter.all).compactMap { id -> Int64? in
                guard let (partition, offset) = place[id], partition == stuckPartition, offset > stuckOffset else { return nil }
                return offset - stuckOffset
            }
            print(
                "run-ahead test: job at \(WorkerHarness.inputTopic)[\(stuckPartition)]@\(stuckOffset) stuck; "
                    + "\(ahead.count) later jobs of its partition finished, furthest \(ahead.max() ?? 0) past it; cap \(maxRunAhead)"
            )
            #expect(!ahead.isEmpty, "jobs after the stuck one ran")
            #expect((ahead.max() ?? 0) < Int64(maxRunAhead), "no job at or beyond the cap ran")

            api.release()
            try await worker.waitUntilCommitted(ends)
            try await worker.stop()
            try await counter.stop()
            let count = try await OutputTopicCount.read(
                kafka: harness.kafka, topic: WorkerHarness.outputTopic, partitions: 3, logger: harness.logger
            )
            print("run-ahead test: \(jobs.count) jobs, \(count)")
            #expect(count.lost(of: jobs.map(\.id)) == [], "no job is lost")
            #expect(count.repeats == 0, "nothing is repeated")
        }
    }
}
