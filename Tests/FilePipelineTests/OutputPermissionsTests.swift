import FilePipeline
import Foundation
import Testing

/// Results and rejects hold users' personal context: the files `enrich` creates are readable by their owner only.
@Suite struct OutputPermissionsTests {
    @Test func enrichCreatesItsOutputAndRejectsWithMode0600() async throws {
        let users = ["perm-user-1", "perm-user-2"]
        try await FileHarness.with(users: users) { harness in
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            let rejects = harness.path("rejects.jsonl")
            try writeLines(
                [jobLine(id: "p1", userID: users[0], query: "q"), "not json", jobLine(id: "p2", userID: users[1], query: "q")],
                to: input
            )
            let previous = umask(0o022)
            defer { umask(previous) }
            _ = try await harness.enrich(input: input, output: output, rejects: rejects)
            for path in [output, rejects] {
                let attributes = try FileManager.default.attributesOfItem(atPath: path)
                let mode = try #require((attributes[.posixPermissions] as? NSNumber)?.uint16Value)
                #expect(mode & 0o777 == 0o600, "\(path): \(String(mode, radix: 8))")
            }
        }
    }
}
