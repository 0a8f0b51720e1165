import ArgumentParser
import FilePipeline
import Pipeline
import Foundation
import Logging
import Mio
import MioTokens
import Synchronization
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `mioctx enrich`: the pipeline over a JSON Lines file instead of Kafka.
struct EnrichCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enrich",
        abstract: "Process a JSON Lines file of jobs into a JSON Lines file of results.",
        discussion: """
            Runs every job of --input through the same pipeline as `mioctx run` (limits, retries, token refresh, \
            configured the same way) and appends one result line per job to --output. Job ids that already have a \
            result in --output are skipped, so running the same command again after an interruption resumes it. \
            Invalid lines are listed on standard error and, with --rejects, in that file (one JSON object per line: \
            line, code, field, message, raw). Progress goes to standard error: a bar on a terminal, a line every \
            --progress-interval seconds otherwise. `-` is standard input (--input) or standard output (--output).

            Exit status: 0 every job has its result; 1 the same, but some lines were rejected; 3 a file could not \
            be read or written (the results written so far stay: rerun to resume); 4 interrupted by SIGINT or \
            SIGTERM (rerun to resume); 64 invalid arguments; 78 invalid configuration. See docs/operations.md.
            """
    )

    /// The exit statuses, documented in docs/operations.md.
    enum Status {
        static let rejectedLines = ExitCode(1)
        static let ioFailure = ExitCode(3)
        static let interrupted = ExitCode(4)
        static let usage = ExitCode.validationFailure
    }

    enum ProgressMode: String, ExpressibleByArgument, CaseIterable {
        case auto
        case bar
        case lines
        case none
    }

    @Option(help: ArgumentHelp("The jobs, one JSON object per line (- for standard input).", valueName: "path"))
    var input: String

    @Option(help: ArgumentHelp("The results file, appended to (- for standard output).", valueName: "path"))
    var output: String

    @Option(help: ArgumentHelp("Write invalid lines here (replaced on every run).", valueName: "path"))
    var rejects: String?

    @Option(help: "Progress on standard error: auto (a bar on a terminal, else lines), bar, lines or none.")
    var progress: ProgressMode = .auto

    @Option(help: ArgumentHelp("Seconds between progress lines (not the bar).", valueName: "seconds"))
    var progressInterval: Double = 10

    @OptionGroup var settings: SettingsOptions

    func validate() throws {
        guard progressInterval > 0 else {
            throw ValidationError("--progress-interval must be positive, got \(progressInterval)")
        }
        if rejects == JSONLJobReader.standardStream {
            throw ValidationError("--rejects must be a file, not standard output")
        }
        var files: [(option: String, path: String)] = []
        for (option, path) in [("--input", input), ("--output", output), ("--rejects", rejects ?? "-")]
        where path != JSONLJobReader.standardStream {
            let canonical = Self.canonical(path)
            if let earlier = files.first(where: { $0.path == canonical }) {
                throw ValidationError("\(earlier.option) and \(option) name the same file")
            }
            files.append((option, canonical))
        }
    }

    private static func canonical(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }

    func run() async throws {
        let effective = try await settings.loadOrExit()
        let settings = effective.settings
        // Retry and refresh notices would tear the progress bar: warnings and worse, unless a level is configured.
        let levelIsDefault = (effective.sources["log.level"] ?? .default) == .default
        let logger = makeStandardErrorLogger(label: "mioctx.enrich", level: levelIsDefault ? .warning : settings.log.level)
        let display = ProgressDisplay(mode: resolvedProgressMode, interval: .milliseconds(Int64(progressInterval * 1000)))

        let reader: JSONLJobReader
        let sink: JSONLResultSink
        let existing: JSONLResultSink.OutputScan
        do {
            reader = try JSONLJobReader(path: input)
        } catch {
            display.message("mioctx enrich: \(error)")
            throw Status.usage
        }
        do {
            existing = try await JSONLResultSink.scanOutput(at: output)
            sink = try JSONLResultSink(outputPath: output, rejectsPath: rejects, existing: existing) { rejection in
                display.rejected(rejection)
            }
        } catch {
            display.message("mioctx enrich: \(error)")
            throw Status.ioFailure
        }
        if !existing.jobIDs.isEmpty || existing.unreadableLines > 0 {
            var note = "mioctx enrich: resuming: \(existing.jobIDs.count) job(s) already have a result in \(output)"
            if existing.unreadableLines > 0 { note += "; \(existing.unreadableLines) line(s) there are not results" }
            display.message(note)
        }
        // Read the input once more for the progress total only when progress is shown.
        let totalLines = resolvedProgressMode == .none ? nil : try? await reader.countLines()

        let keyring: TokenKeyring
        let location: TokenStoreLocation
        do {
            keyring = try settings.tokens.keyring()
            location = try TokenStoreLocation(parsing: settings.tokens.store)
        } catch {
            display.message("mioctx enrich: \(error)")
            throw SettingsOptions.invalidConfigurationExitCode
        }

        let summary = try await location.withStore(keyring: keyring, logger: logger) { store in
            let (mio, _, handler) = WorkerAssembly.makeHandler(settings: settings, store: store, logger: logger)
            let enrichment = FileEnrichment(
                handler: handler,
                sink: sink,
                configuration: FileEnrichment.Configuration(
                    engine: WorkerAssembly.engineConfiguration(settings.processing),
                    gracePeriod: settings.processing.shutdownGracePeriod
                ),
                logger: logger
            )
            let summary = await withTaskGroup(of: Void.self) { group in
                group.addTask { await display.run(enrichment, totalLines: totalLines) }
                group.addTask { await Self.interruptOnSignal(enrichment, display: display) }
                let summary = await enrichment.run(reader, skipping: existing.jobIDs)
                group.cancelAll()
                return summary
            }
            try? await mio.shutdown()
            return summary
        }
        do {
            try await sink.finish()
        } catch {
            display.message("mioctx enrich: \(error)")
            display.finish(summary, totalLines: totalLines)
            throw Status.ioFailure
        }
        display.finish(summary, totalLines: totalLines)
        switch summary.outcome {
        case .completed:
            if summary.progress.rejected > 0 { throw Status.rejectedLines }
        case .interrupted:
            throw Status.interrupted
        case .inputFailed(let error):
            display.message("mioctx enrich: \(error)")
            throw Status.ioFailure
        case .writeFailed(let error):
            display.message("mioctx enrich: \(error)")
            throw Status.ioFailure
        }
    }

    private var resolvedProgressMode: ProgressMode {
        guard progress == .auto else { return progress }
        return isatty(STDERR_FILENO) == 1 ? .bar : .lines
    }

    /// SIGINT or SIGTERM: a graceful stop; a second one: exit at once.
    private static func interruptOnSignal(_ enrichment: FileEnrichment, display: ProgressDisplay) async {
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        var count = 0
        for await signal in signals {
            count += 1
            if count == 1 {
                display.message("mioctx enrich: \(signal): finishing the jobs in flight (again to stop at once)")
                enrichment.interrupt()
            } else {
                Self.exit(withError: Status.interrupted)
            }
        }
    }
}

/// Progress and messages on standard error: a bar redrawn in place on a terminal, or plain lines.
final class ProgressDisplay: Sendable {
    private struct State {
        var barShown = false
        var rejectionsShown = 0
    }

    /// Rejected lines shown one by one on standard error; the rest are only counted (and in the rejects file).
    static let rejectionsShownLimit = 100

    private let mode: EnrichCommand.ProgressMode
    private let interval: Duration
    private let state = Mutex(State())
    private let started = ContinuousClock.now

    init(mode: EnrichCommand.ProgressMode, interval: Duration) {
        self.mode = mode
        self.interval = interval
    }

    /// Redraws the bar (5 times a second) or prints a line every interval, until cancelled.
    func run(_ enrichment: FileEnrichment, totalLines: Int64?) async {
        let period: Duration
        switch mode {
        case .bar: period = .milliseconds(200)
        case .lines: period = interval
        case .none, .auto: return
        }
        while !Task.isCancelled {
            do { try await Task.sleep(for: period) } catch { return }
            let line = Self.describe(enrichment.progress, totalLines: totalLines, elapsed: ContinuousClock.now - started)
            if mode == .bar {
                let bar = Self.bar(enrichment.progress, totalLines: totalLines) + " " + line
                write("\r\u{1B}[2K" + bar, showsBar: true)
            } else {
                write("enrich: " + line + "\n", showsBar: false)
            }
        }
    }

    /// Shows a rejected line (the first ``rejectionsShownLimit`` of them).
    func rejected(_ rejection: JSONLResultSink.Rejection) {
        let shown = state.withLock { state -> Int in
            state.rejectionsShown += 1
            return state.rejectionsShown
        }
        if shown <= Self.rejectionsShownLimit {
            message("line \(rejection.line): \(rejection.reason.code): \(rejection.reason.message)")
        } else if shown == Self.rejectionsShownLimit + 1 {
            message("(further rejected lines are only counted here; --rejects lists them all)")
        }
    }

    /// Prints a line, above the bar if one is shown.
    func message(_ text: String) {
        write(text + "\n", showsBar: false)
    }

    /// Prints the closing summary line.
    func finish(_ summary: FileEnrichment.Summary, totalLines: Int64?) {
        let progress = summary.progress
        let seconds = Self.seconds(summary.elapsed)
        var statuses = progress.written.resultsByStatus.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { "\($0.key.rawValue) \($0.value)" }
        if statuses.isEmpty { statuses = ["none"] }
        var text = "enrich: \(Self.outcomeName(summary.outcome)) in \(String(format: "%.2f", seconds)) s: "
        text += "\(progress.linesRead) lines read, \(progress.written.results) results (\(statuses.joined(separator: ", "))), "
        text += "\(progress.rejected) rejected, \(progress.alreadyDone) already done, \(progress.duplicates) duplicate ids, "
        text += String(format: "%.0f jobs/s", Double(progress.written.results) / max(seconds, 0.001))
        write(text + "\n", showsBar: false)
    }

    private func write(_ text: String, showsBar: Bool) {
        state.withLock { state in
            var output = text
            if !showsBar && state.barShown {
                output = "\r\u{1B}[2K" + text
            }
            state.barShown = showsBar
            FileHandle.standardError.write(Data(output.utf8))
        }
    }

    private static func outcomeName(_ outcome: FileEnrichment.Outcome) -> String {
        switch outcome {
        case .completed: "done"
        case .interrupted: "interrupted"
        case .inputFailed: "stopped (read failure)"
        case .writeFailed: "stopped (write failure)"
        }
    }

    /// `5200/10000 lines (52%), 5100 results (5000 ok), 2 rejected, 812 jobs/s`.
    static func describe(_ progress: FileEnrichment.Progress, totalLines: Int64?, elapsed: Duration) -> String {
        let seconds = seconds(elapsed)
        var text = "\(progress.linesHandled)"
        if let totalLines, totalLines > 0 {
            let percent = min(100, Double(progress.linesHandled) * 100 / Double(totalLines))
            text += "/\(totalLines) lines (\(String(format: "%.0f", percent))%)"
        } else {
            text += " lines"
        }
        let ok = progress.written.resultsByStatus[.ok] ?? 0
        text += ", \(progress.written.results) results (\(ok) ok), \(progress.rejected) rejected"
        if progress.alreadyDone > 0 { text += ", \(progress.alreadyDone) already done" }
        text += String(format: ", %.0f jobs/s", Double(progress.written.results) / max(seconds, 0.001))
        return text
    }

    private static func bar(_ progress: FileEnrichment.Progress, totalLines: Int64?) -> String {
        let width = 30
        guard let totalLines, totalLines > 0 else { return "[" + String(repeating: "?", count: width) + "]" }
        let filled = min(width, Int(Double(progress.linesHandled) / Double(totalLines) * Double(width)))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
