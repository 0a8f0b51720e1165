import FilePipeline
import Foundation
import MioSimulator
import Pipeline
import Testing

/// `enrich` applies the same result limit as `run`: a 2 MiB answer gives a small `too_large` result line.
@Suite("File enrichment: oversized answers")
struct OversizedResultFileTests {
    @Test func aTwoMebibyteAnswerGivesATooLargeResultLineAndTheRunCompletes() async throws {
        var faults = MioSimulator.Faults()
        faults.answerBytes = ["big-file-user": 2 * 1024 * 1024]
        let users = ["file-user-a", "file-user-b"]
        try await FileHarness.with(users: users + ["big-file-user"], faults: faults) { harness in
            var jobs = jobLines(100, users: users)
            jobs.insert((id: "big-0", userID: "big-file-user", query: "big 0"), at: 10)
            jobs.insert((id: "big-1", userID: "big-file-user", query: "big 1"), at: 60)
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            try writeLines(jobs.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }, to: input)

            let summary = try await harness.enrich(input: input, output: output)

            #expect(isCompleted(summary.outcome))
            #expect(summary.progress.written.resultsByStatus == [.ok: 100, .tooLarge: 2])
            let (objects, unparseable) = try readObjects(output)
            #expect(unparseable == 0)
            #expect(objects.count == 102)
            let tooLarge = objects.filter { $0["status"] as? String == "too_large" }
            #expect(Set(tooLarge.compactMap { $0["id"] as? String }) == ["big-0", "big-1"])
            for result in tooLarge {
                #expect(result["context"] == nil)
                let error = result["error"] as? [String: Any]
                #expect(error?["code"] as? String == "too_large")
                #expect((error?["message"] as? String)?.contains("\(ProcessingEngine.Configuration.defaultMaxResultBytes)") == true)
            }
            let size = try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int ?? 0
            #expect(size < 1_000_000, "no 2 MiB line was written")
        }
    }
}
