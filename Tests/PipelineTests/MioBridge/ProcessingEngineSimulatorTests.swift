import Pipeline
import PipelineMioBridge
import Foundation
import Mio
import MioSimulator
import Testing

/// The whole engine against the Mio simulator over HTTP: decode, schedule, handle, deliver.
@Suite struct ProcessingEngineSimulatorTests {
    @Test func fiveThousandJobsGetExactlyOneResultEachWithinTheLimits() async throws {
        let faults = MioSimulator.Faults(latencyMs: 1, jitterMs: 4, rate503: 0.02, retryAfterSeconds: 0)
        try await withSimulatorHarness(faults: faults) { harness in
            let users = (0 ..< 50).map { "user-\($0)" }
            for user in users { try await harness.tokens.connect(user) }
            for user in users.prefix(5) { harness.tokens.makeAccessTokenStale(user) }
            try await harness.simulator.resetStatsOverHTTP(baseURL: harness.baseURL)

            let meter = PerUserMeter(MioContextAPI(harness.client))
            let handler = JobHandler(
                api: meter,
                tokens: harness.tokens,
                configuration: .init(retry: RetryPolicy(maxAttempts: 8, initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(50))),
                logger: quietLogger
            )
            let sink = MemorySink()
            let events = EventLog()
            let limits = SchedulingConfiguration(maxInFlight: 64, maxInFlightPerUser: 4, readahead: 16)
            let engine = ProcessingEngine(
                handler: handler,
                sink: sink,
                configuration: .init(scheduling: limits),
                logger: quietLogger
            ) { events.record($0) }

            let jobCount = 5000
            let items = (0 ..< jobCount).map { index in
                jobItem(index, user: users[index % users.count], op: index % 25 == 0 ? "summary" : "context")
            }
            async let running: Void = engine.run()
            try await engine.submitAll(AsyncStreamOf(items))
            #expect(await engine.drain(timeout: .seconds(600)))
            await running

            let results = sink.results
            #expect(results.count == jobCount)
            #expect(Set(results.map(\.jobID)).count == jobCount)
            #expect(events.done.count == jobCount)
            #expect(events.deliveryFailed.isEmpty)
            #expect(events.cancelled.isEmpty)
            for result in results {
                let index = Int(result.jobID.dropFirst(4))!
                let user = users[index % users.count]
                #expect(result.status == .ok, "\(result.jobID): \(result.failure?.message ?? "")")
                if index % 25 == 0 {
                    #expect(result.payload == .summary(MioSimulator.expectedSummary(userID: user)))
                } else {
                    #expect(result.payload == .context(MioSimulator.expectedContent(userID: user, query: "q\(index)")))
                }
            }
            let stats = try await harness.stats()
            #expect(stats.concurrency.peak <= limits.maxInFlight)
            #expect(stats.concurrency.peak > limits.maxInFlightPerUser, "jobs of different users ran together")
            #expect(meter.peakPerUser <= limits.maxInFlightPerUser)
            #expect(stats.faultsInjected["503", default: 0] > 0, "some jobs were retried")
            #expect(stats.refreshesByUser.count == 5)
            #expect(stats.refreshesByUser.values.allSatisfy { $0 == 1 })
            #expect(stats.reuseDetections == 0)
        }
    }
}

extension MioSimulator {
    /// `POST /sim/stats/reset`.
    func resetStatsOverHTTP(baseURL: String) async throws {
        let (status, _) = try await SimControl(baseURL: baseURL).post("/sim/stats/reset", "{}")
        guard status == 200 || status == 204 else { throw SimControl.Failure(status: status) }
    }
}
