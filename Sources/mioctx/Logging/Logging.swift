#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HTTPEndpoints
import Logging
import Settings

/// How a command logs: the level and format of the settings, or a command's own quieter level when the
/// settings leave the level at its default.
struct LogSetup: Sendable {
    var level: Logger.Level
    /// nil: JSON, or text when standard error is a terminal.
    var format: LogFormat?

    /// The log settings; `quietLevel` stands in for the default level (a command whose output would be torn by
    /// notices, such as `enrich`, or the demo).
    init(_ settings: EffectiveSettings, quietLevel: Logger.Level? = nil) {
        let levelIsDefault = settings.source(of: \.log.level) == .default
        self.level = levelIsDefault ? (quietLevel ?? settings[\.log.level]) : settings[\.log.level]
        self.format = settings[\.log.format]
    }

    /// The format in force: the configured one, else JSON, or text when standard error is a terminal.
    var effectiveFormat: LogFormat {
        if let format { return format }
        return isatty(STDERR_FILENO) != 0 ? .text : .json
    }

    /// A log handler for `label` in this format and level, writing to standard error. A line logged inside an
    /// exported span carries its `trace_id` and `span_id`.
    func makeHandler(label: String) -> any LogHandler {
        var handler: any LogHandler
        switch effectiveFormat {
        case .json:
            handler = JSONLogHandler.standardError(label: label, metadataProvider: TracingExport.logMetadataProvider)
        case .text:
            handler = StreamLogHandler.standardError(label: label, metadataProvider: TracingExport.logMetadataProvider)
        }
        handler.logLevel = level
        return handler
    }

    /// A logger for `label` in this format and level, writing to standard error.
    func makeLogger(label: String) -> Logger {
        var logger = Logger(label: label) { makeHandler(label: $0) }
        logger.logLevel = level
        return logger
    }

    /// Makes every `Logger(label:)` created from now on (the libraries' too) use this format and level.
    /// `LoggingSystem.bootstrap` may run once per process: call this once, first thing in a command's `run()`.
    func bootstrap() {
        LoggingSystem.bootstrap { makeHandler(label: $0) }
    }
}
