#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HTTPEndpoints
import Logging

/// The log format in force: the one the settings name, else JSON, or text when standard error is a terminal.
func effectiveLogFormat(_ settings: MioctxSettings.LogSettings) -> MioctxSettings.LogSettings.Format {
    if let format = settings.format { return format }
    return isatty(STDERR_FILENO) != 0 ? .text : .json
}

/// A log handler for `label` in the format and at the level of `settings`, writing to standard error.
func makeLogHandler(settings: MioctxSettings.LogSettings, label: String) -> any LogHandler {
    var handler: any LogHandler
    switch effectiveLogFormat(settings) {
    case .json:
        handler = JSONLogHandler.standardError(label: label)
    case .text:
        handler = StreamLogHandler.standardError(label: label)
    }
    handler.logLevel = settings.level
    return handler
}

/// A logger for `label` in the format and at the level of `settings`, writing to standard error.
func makeLogger(settings: MioctxSettings.LogSettings, label: String) -> Logger {
    var logger = Logger(label: label) { makeLogHandler(settings: settings, label: $0) }
    logger.logLevel = settings.level
    return logger
}

/// Makes every `Logger(label:)` created from now on (the libraries' too) use the format and level of `settings`.
/// `LoggingSystem.bootstrap` may run once per process: call this once, first thing in a command's `run()`.
func bootstrapLogging(settings: MioctxSettings.LogSettings) {
    LoggingSystem.bootstrap { makeLogHandler(settings: settings, label: $0) }
}
