import FilePipeline
import Coordination
import Foundation
import Pipeline
import Synchronization

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
    private let time: TimeSource
    private let started: Duration

    init(mode: EnrichCommand.ProgressMode, interval: Duration, time: TimeSource = .system) {
        self.mode = mode
        self.interval = interval
        self.time = time
        self.started = time.now()
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
            do { try await time.sleep(for: period) } catch { return }
            let line = Self.describe(enrichment.progress, totalLines: totalLines, elapsed: time.now() - started)
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
