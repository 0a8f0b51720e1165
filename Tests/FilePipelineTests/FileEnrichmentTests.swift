import FilePipeline
import Pipeline
import PipelineMioBridge
import PipelineTestSupport
import Foundation
import Logging
import Mio
import MioSimulator
import MioTokens
import Testing

/// The Mio simulator over HTTP, a `MioClient` for it, users connected through the real code exchange into an
/// in-memory token store, and a temporary directory for the files.
struct FileHarness: Sendable {
    let stack: MioStack
    let directory: URL
    let logger: Logger
    let simulatorConfiguration: MioSimulator.Configuration

    var simulator: MioSimulator { stack.simulator }
    var mio: MioClient { stack.mio }
    var store: InMemoryTokenStore { stack.store }
    var tokens: TokenProvider { stack.tokens }

    static func with<T: Sendable>(
        users: [String],
        faults: MioSimulator.Faults = MioSimulator.Faults(),
        _ body: (FileHarness) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "file-enrichment-tests")
        // The write-failure test fails deliveries on purpose; the engine logs those at error.
        logger.logLevel = .critical
        var faults = faults
        faults.targets = [.context, .summary]
        let configuration = MioSimulator.Configuration(faults: faults, seed: 11)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("enrich-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await MioStack.with(configuration, logger: logger, maxConnections: 256) { stack in
            try await stack.connect(users)
            return try await body(
                FileHarness(stack: stack, directory: directory, logger: logger, simulatorConfiguration: configuration)
            )
        }
    }

    func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    /// One enrichment run over `input` into `output`, as `mioctx enrich` does it.
    func enrich(
        input: String,
        output: String,
        rejects: String? = nil,
        maxInFlight: Int = 64,
        maxInFlightPerUser: Int = 4,
        maxLineBytes: Int = JSONLJobReader.defaultMaxLineBytes,
        delivery: RetryPolicy = ProcessingEngine.Configuration().delivery
    ) async throws -> FileEnrichment.Summary {
        let existing = try await JSONLResultSink.scanOutput(at: output)
        let sink = try JSONLResultSink(outputPath: output, rejectsPath: rejects, existing: existing)
        let enrichment = FileEnrichment(
            handler: JobHandler(api: MioContextAPI(mio), tokens: MioTokenSource(tokens), logger: logger),
            sink: sink,
            configuration: FileEnrichment.Configuration(
                engine: ProcessingEngine.Configuration(
                    scheduling: SchedulingConfiguration(maxInFlight: maxInFlight, maxInFlightPerUser: maxInFlightPerUser),
                    delivery: delivery
                )
            ),
            logger: logger
        )
        let summary = await enrichment.run(try JSONLJobReader(path: input, maxLineBytes: maxLineBytes), skipping: existing.jobIDs)
        try await sink.finish()
        return summary
    }
}

/// A job line.
func jobLine(id: String, userID: String, query: String) -> String {
    let object: [String: Any] = ["id": id, "userId": userID, "query": query]
    return String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// `count` jobs over `users`, as lines; the query names the job so every content differs.
func jobLines(_ count: Int, users: [String], prefix: String = "job") -> [TestJob] {
    (0..<count).map { index in
        (id: "\(prefix)-\(index)", userID: users[index % users.count], query: "what is \(prefix) \(index) about?")
    }
}

func writeLines(_ lines: [String], to path: String, finalNewline: Bool = true) throws {
    let text = lines.joined(separator: "\n") + (finalNewline ? "\n" : "")
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// The lines of a file that parse as JSON objects, and the number of those that do not.
func readObjects(_ path: String) throws -> (objects: [[String: Any]], unparseable: Int) {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var objects: [[String: Any]] = []
    var unparseable = 0
    for line in data.split(separator: UInt8(ascii: "\n")) {
        if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] {
            objects.append(object)
        } else {
            unparseable += 1
        }
    }
    return (objects, unparseable)
}

func isCompleted(_ outcome: FileEnrichment.Outcome) -> Bool {
    if case .completed = outcome { return true }
    return false
}

@Suite("File enrichment against the Mio simulator")
struct FileEnrichmentTests {
    static let users = (0..<12).map { String(format: "file-user-%02d", $0) }

    @Test func everyJobGetsOneResultWithItsOwnContent() async throws {
        try await FileHarness.with(users: Self.users) { harness in
            let jobs = jobLines(400, users: Self.users)
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            try writeLines(jobs.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }, to: input)

            let summary = try await harness.enrich(input: input, output: output)

            #expect(isCompleted(summary.outcome))
            #expect(summary.progress.linesRead == 400)
            #expect(summary.progress.written.resultsByStatus == [.ok: 400])
            let (objects, unparseable) = try readObjects(output)
            #expect(unparseable == 0)
            #expect(objects.count == 400)
            let byID = Dictionary(grouping: objects) { $0["id"] as? String ?? "" }
            for job in jobs {
                let results = byID[job.id] ?? []
                #expect(results.count == 1, "job \(job.id)")
                #expect(results.first?["status"] as? String == "ok")
                #expect(results.first?["userId"] as? String == job.userID)
                #expect(results.first?["context"] as? String == MioSimulator.expectedContent(userID: job.userID, query: job.query))
            }
        }
    }

    @Test func invalidLinesAreRejectedWithTheirLineNumbersAndTheRestProcessed() async throws {
        try await FileHarness.with(users: Self.users) { harness in
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            let rejects = harness.path("rejects.jsonl")
            var lines: [String] = []
            var valid: [String] = []
            for index in 0..<60 {
                let id = "mixed-\(index)"
                lines.append(jobLine(id: id, userID: Self.users[index % Self.users.count], query: "q \(index)"))
                valid.append(id)
            }
            let oversized = jobLine(id: "huge", userID: Self.users[0], query: String(repeating: "x", count: 3000))
            // Line numbers are 1-based positions: insert from the back so each lands where it says.
            let invalid: [(line: Int, text: String, code: String)] = [
                (3, "this is not JSON", "not_json"),
                (10, #"{"id": "no-user", "query": "q"}"#, "missing_field"),
                (20, #"["an", "array"]"#, "not_object"),
                (30, #"{"id": 42, "userId": "u", "query": "q"}"#, "wrong_type"),
                (40, oversized, "field_too_large"),
            ]
            for entry in invalid {
                lines.insert(entry.text, at: entry.line - 1)
            }
            lines.insert("   ", at: 49)  // a blank line 50: skipped, not rejected
            try writeLines(lines, to: input)

            let summary = try await harness.enrich(input: input, output: output, rejects: rejects, maxLineBytes: 2048)

            #expect(isCompleted(summary.outcome))
            #expect(summary.progress.rejected == invalid.count)
            #expect(summary.progress.blankLines == 1)
            let (results, _) = try readObjects(output)
            #expect(Set(results.compactMap { $0["id"] as? String }) == Set(valid))
            #expect(results.count == valid.count)
            let (rejected, unparseable) = try readObjects(rejects)
            #expect(unparseable == 0)
            let byLine = Dictionary(uniqueKeysWithValues: rejected.map { (($0["line"] as? Int) ?? -1, $0) })
            #expect(byLine.keys.sorted() == invalid.map(\.line))
            for entry in invalid {
                let record = byLine[entry.line]
                #expect(record?["code"] as? String == entry.code, "line \(entry.line)")
                #expect((record?["message"] as? String)?.isEmpty == false)
                if entry.code != "field_too_large" {
                    #expect(record?["raw"] as? String == entry.text, "line \(entry.line)")
                }
            }
            #expect((byLine[40]?["message"] as? String)?.contains("\(oversized.utf8.count) bytes") == true)
            #expect((byLine[40]?["raw"] as? String)?.utf8.count == 2048)
        }
    }

    @Test func aResumedRunWritesEveryJobIDExactlyOnce() async throws {
        try await FileHarness.with(users: Self.users) { harness in
            let jobs = jobLines(300, users: Self.users)
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            try writeLines(jobs.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }, to: input)
            let first = try await harness.enrich(input: input, output: output)
            #expect(first.progress.written.results == 300)

            // An interruption: only the first 120 lines made it, and the 121st was cut mid-write.
            let written = try Data(contentsOf: URL(fileURLWithPath: output)).split(separator: UInt8(ascii: "\n"))
            var kept = Data(written.prefix(120).joined(separator: [UInt8(ascii: "\n")]))
            kept.append(UInt8(ascii: "\n"))
            kept.append(written[120].prefix(25))
            try kept.write(to: URL(fileURLWithPath: output))
            let keptIDs = Set(try readObjects(output).objects.compactMap { $0["id"] as? String })
            harness.simulator.resetStats()

            let second = try await harness.enrich(input: input, output: output)

            #expect(isCompleted(second.outcome))
            #expect(second.progress.alreadyDone == 120)
            #expect(second.progress.written.results == 180)
            #expect(harness.simulator.stats().count("POST /v1/context", status: 200) == 180)
            let (objects, unparseable) = try readObjects(output)
            #expect(unparseable == 1)  // the cut line stays on its own line; the output is never truncated
            let ids = objects.compactMap { $0["id"] as? String }
            #expect(ids.count == 300)
            #expect(Set(ids) == Set(jobs.map(\.id)))
            #expect(keptIDs.isSubset(of: Set(ids.prefix(120))))

            let third = try await harness.enrich(input: input, output: output)
            #expect(third.progress.alreadyDone == 300)
            #expect(third.progress.written.results == 0)
        }
    }

    @Test func aJobIDRepeatedInTheInputGetsOneResult() async throws {
        try await FileHarness.with(users: Self.users) { harness in
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            try writeLines(
                [
                    jobLine(id: "same", userID: Self.users[0], query: "first"),
                    jobLine(id: "other", userID: Self.users[1], query: "other"),
                    jobLine(id: "same", userID: Self.users[2], query: "second"),
                ],
                to: input,
                finalNewline: false
            )
            let summary = try await harness.enrich(input: input, output: output)
            #expect(summary.progress.duplicates == 1)
            let ids = try readObjects(output).objects.compactMap { $0["id"] as? String }
            #expect(ids.sorted() == ["other", "same"])
        }
    }

    @Test func concurrencyStaysWithinMaxInFlight() async throws {
        var faults = MioSimulator.Faults()
        faults.latencyMs = 15
        try await FileHarness.with(users: Self.users, faults: faults) { harness in
            let jobs = jobLines(240, users: Self.users)
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            try writeLines(jobs.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }, to: input)
            harness.simulator.resetStats()

            let summary = try await harness.enrich(input: input, output: output, maxInFlight: 6, maxInFlightPerUser: 1)

            #expect(summary.progress.written.resultsByStatus == [.ok: 240])
            let peak = harness.simulator.stats().concurrency.peak
            #expect(peak <= 6)
            #expect(peak >= 2)  // the limit, not a serial loop, is what bounds it
        }
    }

    @Test func resultsHoldNoTokensAndUnknownUsersAreClassified() async throws {
        try await FileHarness.with(users: Self.users) { harness in
            let input = harness.path("jobs.jsonl")
            let output = harness.path("results.jsonl")
            try writeLines(
                [
                    jobLine(id: "known", userID: Self.users[0], query: "q"),
                    jobLine(id: "stranger", userID: "nobody", query: "q"),
                ],
                to: input
            )
            let summary = try await harness.enrich(input: input, output: output)
            #expect(summary.progress.written.resultsByStatus == [.ok: 1, .noTokens: 1])
            let text = try String(contentsOfFile: output, encoding: .utf8)
            let record = try #require(await harness.store.get(userID: Self.users[0]))
            #expect(!text.contains(record.accessToken))
            #expect(!text.contains(record.refreshToken))
        }
    }

    @Test func aResultThatCannotBeWrittenStopsTheRunWithTheReason() async throws {
        try await FileHarness.with(users: Self.users) { harness in
            let jobs = jobLines(200, users: Self.users)
            let input = harness.path("jobs.jsonl")
            try writeLines(jobs.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }, to: input)
            // /dev/full accepts the open and refuses every write with ENOSPC.
            let summary = try await harness.enrich(
                input: input,
                output: "/dev/full",
                maxInFlight: 4,
                delivery: RetryPolicy(
                    maxAttempts: 2,
                    maxTimePerJob: .seconds(10),
                    initialBackoff: .milliseconds(1),
                    maxBackoff: .milliseconds(5)
                )
            )
            guard case .writeFailed(let error) = summary.outcome else {
                Issue.record("expected a write failure, got \(summary.outcome)")
                return
            }
            #expect(error.kind == .result)
            #expect(String(describing: error).contains("cannot write /dev/full"))
            #expect(summary.progress.written.results == 0)
            #expect(summary.progress.linesRead < 200)  // it stopped reading
        }
    }

    @Test func aReaderKeepsLineNumbersAcrossChunksAndCutsLongLines() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reader-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("lines.jsonl").path
        // Lines of varying length straddle the reader's 64 KiB chunks; one is far over the limit.
        var lines = (0..<3000).map { String(repeating: "a", count: $0 % 97) + "-\($0)" }
        lines[1500] = String(repeating: "b", count: 300_000)
        let text = "\u{FEFF}" + lines.joined(separator: "\r\n") + "\r\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))

        let reader = try JSONLJobReader(path: path, maxLineBytes: 1000)
        #expect(try await reader.countLines() == 3000)
        var seen: [JSONLJobReader.Line] = []
        for try await line in reader { seen.append(line) }

        #expect(seen.count == 3000)
        #expect(seen.map(\.number) == (1...3000).map(Int64.init))
        #expect(seen[1500].isCut && seen[1500].length == 300_000 && seen[1500].bytes.count == 1000)
        for index in [0, 1, 2, 999, 1499, 1501, 2999] {
            #expect(String(decoding: seen[index].bytes, as: UTF8.self) == lines[index], "line \(index + 1)")
        }
    }
}
