import Foundation
import KafkaPipeline
import MioSimulator
import MioTokens
import MioctxTestSupport
import Pipeline
import PipelineTestSupport
import Testing

/// What a test that waits in vain prints must name where the work stopped (issue 14's intermittent stall): here
/// every Mio call hangs at the simulator, and the printout is read while the jobs wait.
@Suite("Kafka worker: what a stalled run prints")
struct StallDiagnosticsTests {
    @Test func jobsHangingInAMioCallAreNamedInEveryPartOfThePrintout() async throws {
        var faults = MioSimulator.Faults()
        faults.hangRate = 1
        faults.hangMs = 3_000
        faults.targets = [.context]
        try await WorkerHarness.with(simulatorConfiguration: MioSimulator.Configuration(faults: faults)) { harness in
            let (jobs, ends) = try await harness.connectAndProduce(prefix: "stall", users: 4, jobs: 40)
            let worker = try harness.startWorker()
            try await waitUntil("the simulator to hold the worker's Mio calls") {
                harness.simulator.stats().concurrency.current >= 16
            }
            try await Task.sleep(for: .milliseconds(1200))
            let spans = harness.openSpans.summary(openFor: .seconds(1))
            let stall = await harness.stallSummary(threads: false)
            let diagnostics = worker.worker.diagnostics
            print(diagnostics, stall, separator: "\n")

            // Four users at four jobs each: sixteen Mio calls open, none of them a second old only.
            #expect(spans.contains("mioctx.mio.call: 16,"), "the handlers' open spans name the Mio call: \(spans)")
            #expect(stall.contains("in progress 16"), "the simulator is answering them: \(stall)")
            let loops = stall.split(separator: "\n").filter { $0.hasPrefix("loop ") }
            #expect(!loops.isEmpty && loops.allSatisfy { !$0.contains("blocked") }, "every event loop answers: \(loops)")
            let busy = loops.compactMap { line in line.firstRange(of: "busy ").map { Int(line[$0.upperBound...].prefix { $0.isNumber }) ?? 0 } }
            #expect(busy.reduce(0, +) == 16, "the pool's busy connections carry them: \(loops)")
            #expect(stall.contains("past their deadline 0"), "no deadline is overdue: \(loops)")
            #expect(diagnostics.contains("poll thread polling for"), "the poll thread is polling: \(diagnostics)")
            #expect(diagnostics.contains("storing marks sleeping for"), "the storing loop is turning: \(diagnostics)")
            let record = try #require(await harness.store.get(userID: "stall-0"))
            #expect(!stall.contains(record.accessToken) && !stall.contains(record.refreshToken), "no token in the printout")

            try harness.simulator.setFaults(MioSimulator.Faults())
            _ = try await harness.expectEveryJobDone(jobs, ends: ends, by: worker)
            try await worker.stop()
        }
    }

    /// The thread dump reads another process here (it stops the process it reads, and this one runs other tests):
    /// a `sleep` has one thread, idle.
    @Test func theThreadDumpReadsEveryThreadAndLeavesTheIdleOnesOut() async throws {
        let sleeper = try Subprocess("/bin/sleep", ["30"], standardOutput: .file("/dev/null"), standardError: .file("/dev/null"))
        defer { sleeper.send(SIGKILL) }
        let dump = ThreadDump.busyThreads(of: sleeper.processIdentifier)
        #expect(dump.hasPrefix("threads (0 busy of 1):"), "\(dump)")
    }
}
