import ArgumentParser
import FilePipeline
import Pipeline
import Foundation
import Logging
import Mio
import MioTokens
import Settings
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


            """ + SettingsReference.flagsHelp
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
        var settings = try await CommandSettings.load(requiring: .worker)
        // Retry and refresh notices would tear the progress bar: warnings and worse, unless a level is configured.
        let logger = makeStandardErrorLogger(
            label: "mioctx.enrich", level: LogSetup(settings, quietLevel: .warning).level
        )
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
            if let exposure = settings.keyFileExposure { display.message("mioctx enrich: warning: \(exposure)") }
            keyring = try settings.takeKeyring()
            location = try settings.tokenStoreLocation()
        } catch {
            display.message("mioctx enrich: \(error)")
            throw CommandSettings.invalidConfigurationExitCode
        }

        let summary = try await location.withStore(keyring: keyring, logger: logger) { store in
            let (mio, _, handler) = try WorkerAssembly.makeHandler(settings: settings, store: store, logger: logger)
            let enrichment = FileEnrichment(
                handler: handler,
                sink: sink,
                configuration: FileEnrichment.Configuration(
                    engine: WorkerAssembly.engineConfiguration(settings),
                    gracePeriod: settings[\.processing.shutdownGracePeriod]
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
