import Foundation
import JSON
public import Pipeline
import Synchronization

/// Writes results to a JSON Lines file (appending, never truncating) and invalid input lines to a rejects file.
///
/// - One line per result, ``JobResult/encoded()`` followed by `\n`, written with one `write(2)` on a file opened
///   with `O_APPEND`; writes from concurrent jobs are serialised, so lines never interleave.
/// - At most one result per job id: ids already in the output (``scanOutput(at:)``) and ids written by this sink
///   are not written again.
/// - If the output ends with a cut line (a run killed mid-write), a `\n` is written first so the cut line stays on
///   its own, unparseable, line and the next result starts on a fresh one; the cut job's id does not count as
///   done and the job is redone.
/// - ``publish(_:for:)`` returns once the line is written to the operating system; ``finish()`` flushes both files
///   to stable storage (`fsync`).
public final class JSONLResultSink: ResultSink {
    /// An input line that is not a valid job, as recorded in the rejects file and shown to the operator.
    public struct Rejection: Sendable, Hashable {
        /// The line number, from 1.
        public var line: Int64
        /// Why the line is not a valid job.
        public var reason: InvalidJob
        /// The line's bytes (its first `maxLineBytes` bytes when it was too long).
        public var raw: [UInt8]

        /// Creates a rejection.
        /// - Parameters:
        ///   - line: The line number.
        ///   - reason: Why the line is not a valid job.
        ///   - raw: The line's bytes.
        public init(line: Int64, reason: InvalidJob, raw: [UInt8]) {
            self.line = line
            self.reason = reason
            self.raw = raw
        }

        /// The rejects-file line (without `\n`):
        /// `{"line":17,"code":"missing_field","field":"userId","message":"...","raw":"..."}`. `field` is omitted
        /// when the reason concerns the whole line; `raw` is the line as a JSON string when it is valid UTF-8,
        /// otherwise `rawBase64` holds its bytes in base64.
        public func encoded() -> [UInt8] {
            var writer = JSONWriter(capacity: 96 + raw.count)
            writer.beginObject()
            writer.key("line")
            writer.integer(line)
            writer.key("code")
            writer.string(reason.code.description)
            if let field = reason.field {
                writer.key("field")
                writer.string(field)
            }
            writer.key("message")
            writer.string(reason.message)
            if let text = String(validating: raw, as: UTF8.self) {
                writer.key("raw")
                writer.string(text)
            } else {
                writer.key("rawBase64")
                writer.string(Data(raw).base64EncodedString())
            }
            writer.endObject()
            return writer.bytes
        }
    }

    /// What an existing output file holds, for resuming.
    public struct OutputScan: Sendable, Hashable {
        /// Job ids with a result line.
        public var jobIDs: Set<String>
        /// Lines read.
        public var lines: Int
        /// Non-blank lines that are not a result (no string `id`), such as a line cut by a crash.
        public var unreadableLines: Int
        /// Whether the file is non-empty and does not end with `\n` (its last line was cut).
        public var endsMidLine: Bool

        /// Nothing: a missing or empty output.
        public static let empty = OutputScan(jobIDs: [], lines: 0, unreadableLines: 0, endsMidLine: false)
    }

    /// Counts of what the sink wrote.
    public struct Statistics: Sendable, Hashable {
        /// Result lines written, by status.
        public var resultsByStatus: [JobResult.Status: Int] = [:]
        /// Results not written because their job id already had one.
        public var duplicatesSkipped = 0
        /// Lines written to the rejects file (or reported, without one).
        public var rejections = 0

        /// Result lines written.
        public var results: Int { resultsByStatus.values.reduce(0, +) }
    }

    private struct State {
        var written: Set<String>
        var statistics = Statistics()
    }

    /// The output path, or `-` for standard output.
    public var outputPath: String { output.path }
    private let output: BlockingDescriptor
    private let rejects: BlockingDescriptor?
    private let onRejection: @Sendable (Rejection) -> Void
    private let state: Mutex<State>

    /// Opens the output for appending (creating it) and the rejects file for writing (replacing it).
    ///
    /// The rejects file is rewritten by every run: it lists the invalid lines of the input, which a resumed run
    /// finds again.
    /// - Parameters:
    ///   - outputPath: The results file, or `-` for standard output.
    ///   - rejectsPath: The rejects file, or `nil` for none (rejections then only reach `onRejection`).
    ///   - existing: What the output already holds (``scanOutput(at:)``); its ids are never written again.
    ///   - onRejection: Called after each rejection is written (to show it to the operator); keep it quick.
    /// - Throws: ``JSONLFileError`` if a file cannot be opened.
    public init(
        outputPath: String,
        rejectsPath: String?,
        existing: OutputScan = .empty,
        onRejection: @escaping @Sendable (Rejection) -> Void = { _ in }
    ) throws(JSONLFileError) {
        self.output = try BlockingDescriptor.openForAppending(outputPath)
        self.rejects = try rejectsPath.map { path throws(JSONLFileError) in try BlockingDescriptor.openForReplacing(path) }
        self.onRejection = onRejection
        self.state = Mutex(State(written: existing.jobIDs))
        if existing.endsMidLine {
            // The last line was cut by an interruption: end it here, before any result is appended (a result
            // written first would be glued to the fragment and lost).
            try output.writeBeforeUse([0x0A])
        }
    }

    /// Reads an existing output file: the ids of the jobs that have a result, and whether its last line was cut.
    /// - Parameter path: The results file; `-` (standard output) or a missing file holds nothing.
    /// - Returns: What the file holds.
    /// - Throws: ``JSONLFileError`` if the file exists but cannot be read.
    public static func scanOutput(at path: String) async throws -> OutputScan {
        guard path != JSONLJobReader.standardStream, FileManager.default.fileExists(atPath: path) else { return .empty }
        // Results can be far longer than jobs (Mio's content): keep whole lines up to 64 MiB.
        let reader = try JSONLJobReader(path: path, maxLineBytes: 64 << 20)
        guard reader.isRegularFile else { return .empty }
        var scan = OutputScan.empty
        let decoder = JSONDecoder()
        for try await line in reader {
            scan.lines += 1
            scan.endsMidLine = !line.isTerminated
            if line.isBlank { continue }
            if let id = try? decoder.decode(ResultID.self, from: Data(line.bytes)).id {
                scan.jobIDs.insert(id)
            } else {
                scan.unreadableLines += 1
            }
        }
        return scan
    }

    private struct ResultID: Decodable {
        var id: String
    }

    /// What the sink wrote so far.
    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Appends the result's line, unless its job id already has one.
    /// - Parameters:
    ///   - result: The result.
    ///   - item: The input item (unused: a file result has no key or headers).
    /// - Throws: ``JSONLFileError`` if the write failed (the id then counts as not written).
    public func publish(_ result: JobResult, for item: InputItem) async throws {
        let isNew = state.withLock { state -> Bool in
            guard state.written.insert(result.jobID).inserted else {
                state.statistics.duplicatesSkipped += 1
                return false
            }
            return true
        }
        guard isNew else { return }
        var line = result.encoded()
        line.append(0x0A)
        do {
            try await output.write(line)
        } catch {
            _ = state.withLock { $0.written.remove(result.jobID) }
            throw error
        }
        state.withLock { $0.statistics.resultsByStatus[result.status, default: 0] += 1 }
    }

    /// Records an invalid input line in the rejects file, then reports it to `onRejection`.
    /// - Parameters:
    ///   - item: The line as an input item (its source offset is the line number).
    ///   - reason: Why it is not a valid job.
    /// - Throws: ``JSONLFileError`` if the rejects file could not be written.
    public func deadLetter(_ item: InputItem, reason: InvalidJob) async throws {
        let rejection = Rejection(line: item.source.offset, reason: reason, raw: item.value)
        if let rejects {
            var line = rejection.encoded()
            line.append(0x0A)
            try await rejects.write(line)
        }
        state.withLock { $0.statistics.rejections += 1 }
        onRejection(rejection)
    }

    /// Flushes the output and the rejects file to stable storage (nothing for standard output or a pipe).
    /// - Throws: ``JSONLFileError`` if `fsync` failed.
    public func finish() async throws {
        try await output.synchronize()
        try await rejects?.synchronize()
    }
}
