import Foundation
import Logging

/// A logger that writes to standard error, keeping standard output for what scripts read.
func makeStandardErrorLogger(label: String, level: Logger.Level) -> Logger {
    var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = level
    return logger
}

/// Prints `line` to standard output and flushes it at once, so a parent process reading the first line
/// (a bootstrap address, a base URL) gets it while this process keeps running.
func printFirstLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
