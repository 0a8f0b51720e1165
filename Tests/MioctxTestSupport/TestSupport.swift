public import Foundation

/// A generous safety net for waits: a test that needs it has a real bug; a slow machine does not reach it.
public let patience: Duration = .seconds(120)

/// A wait that ran out of ``patience``.
public struct TestTimeout: Error, CustomStringConvertible {
    /// What was awaited.
    public var what: String

    /// Creates the error.
    public init(what: String) {
        self.what = what
    }

    public var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` until it holds; throws ``TestTimeout`` after ``patience``.
public func waitUntil(_ what: String, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + patience
    while ContinuousClock.now < deadline {
        if try await condition() {
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestTimeout(what: what)
}

/// Runs `operation`, throwing ``TestTimeout`` after ``patience`` instead of hanging the suite.
public func withPatience<T: Sendable>(
    _ what: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: patience)
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw TestTimeout(what: what)
        }
        group.cancelAll()
        return value
    }
}

/// The `mioctx` executable built next to the test bundle.
public func mioctxExecutable() throws -> URL {
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = testBinary.deletingLastPathComponent()
    // The bundle may be a directory (…/mioctxPackageTests.xctest/…): walk up until the executable appears.
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("mioctx")
        if FileManager.default.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
        directory = directory.deletingLastPathComponent()
    }
    throw TestTimeout(what: "the mioctx executable next to \(testBinary.path) (build it with `swift build`)")
}

/// A child process whose standard output can be read line by line.
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: Process and Pipe are used from one test at a time; the test owns this object.
    private let process = Process()
    private let output = Pipe()
    private let errors: Pipe?

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - environment: the whole environment of the child (nil: inherit this process's).
    ///   - standardError: a file to append the child's standard error to (nil: a pipe, see ``standardError()``).
    public init(
        _ executable: URL,
        _ arguments: [String],
        environment: [String: String]? = nil,
        standardError: URL? = nil
    ) throws {
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = output
        if let standardError {
            _ = FileManager.default.createFile(atPath: standardError.path, contents: nil)
            let handle = try FileHandle(forWritingTo: standardError)
            handle.seekToEndOfFile()
            process.standardError = handle
            errors = nil
        } else {
            let pipe = Pipe()
            process.standardError = pipe
            errors = pipe
        }
        if let environment {
            process.environment = environment
        }
        try process.run()
    }

    /// The child's process id.
    public var processIdentifier: Int32 { process.processIdentifier }

    /// Whether the child is still running.
    public var isRunning: Bool { process.isRunning }

    /// Reads standard output up to the first newline.
    public func firstLine() throws -> String {
        var bytes: [UInt8] = []
        let handle = output.fileHandleForReading
        while true {
            let chunk = handle.readData(ofLength: 1)
            guard let byte = chunk.first else {
                throw TestTimeout(what: "a first line from \(process.executableURL?.lastPathComponent ?? "child"): \(standardError())")
            }
            if byte == UInt8(ascii: "\n") {
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.append(byte)
        }
    }

    /// What the child wrote to standard error so far (when it goes to a pipe).
    public func standardError() -> String {
        guard let errors else { return "" }
        return String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
    }

    /// Sends `signal` (SIGTERM by default) and waits for the exit status.
    @discardableResult
    public func terminate(signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, signal)
        }
        return wait()
    }

    /// Waits for the child to exit; returns its status (the signal number when killed by one).
    public func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Whether the child was ended by a signal rather than exiting.
    public var wasKilledBySignal: Bool {
        process.terminationReason == .uncaughtSignal
    }
}

/// What a finished command printed.
public struct CommandResult: Sendable {
    public var status: Int32
    public var output: String
    public var error: String
}

/// Runs `executable` to completion, feeding `input` on standard input.
public func runCommand(
    _ executable: URL,
    _ arguments: [String],
    input: String? = nil,
    environment: [String: String]? = nil
) throws -> CommandResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment {
        process.environment = environment
    }
    let stdout = Pipe()
    let stderr = Pipe()
    let stdin = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
    }
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    let err = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus,
        output: String(decoding: out, as: UTF8.self),
        error: String(decoding: err, as: UTF8.self)
    )
}

/// Debian's kcat, or a ``TestTimeout`` saying how to install it.
public func kcatExecutable() throws -> URL {
    guard let path = ["/usr/bin/kcat", "/usr/local/bin/kcat"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestTimeout(what: "kcat (install the Debian package: apt-get install kcat)")
    }
    return URL(fileURLWithPath: path)
}

/// What a finished child process printed, and how it ended.
public struct ProcessOutput: Sendable {
    /// The exit status (the signal number when a signal ended it).
    public var status: Int32
    public var standardOutput: String
    public var standardError: String

    /// Both streams, for checks that something appears nowhere.
    public var all: String { standardOutput + "\n" + standardError }
}

/// A child process whose standard output and error go to files in `directory` (a pipe could fill up and
/// block the child), started in that directory with exactly `environment`.
public final class CapturedProcess: @unchecked Sendable {
    // @unchecked: the Process and the handles belong to the one test that runs the child.
    /// The child.
    public let process = Process()
    private let outputURL: URL
    private let errorURL: URL
    private let outputHandle: FileHandle
    private let errorHandle: FileHandle

    /// Prepares the child; ``process``'s `run()` (or ``runToEnd()``) starts it.
    /// - Parameter standardInput: a file to read standard input from (nil: `/dev/null`).
    public init(
        _ executable: URL,
        _ arguments: [String],
        environment: [String: String],
        in directory: URL,
        standardInput: String? = nil
    ) throws {
        let name = UUID().uuidString
        outputURL = directory.appendingPathComponent("\(name).stdout")
        errorURL = directory.appendingPathComponent("\(name).stderr")
        try Data().write(to: outputURL)
        try Data().write(to: errorURL)
        outputHandle = try FileHandle(forWritingTo: outputURL)
        errorHandle = try FileHandle(forWritingTo: errorURL)
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        process.standardInput = standardInput.flatMap { FileHandle(forReadingAtPath: $0) } ?? FileHandle.nullDevice
    }

    /// What the child wrote to standard error so far.
    public var standardErrorSoFar: String {
        (try? String(contentsOf: errorURL, encoding: .utf8)) ?? ""
    }

    /// Closes the files and reads them, once the child exited with `status`.
    public func output(status: Int32) throws -> ProcessOutput {
        try outputHandle.close()
        try errorHandle.close()
        return ProcessOutput(
            status: status,
            standardOutput: try String(contentsOf: outputURL, encoding: .utf8),
            standardError: try String(contentsOf: errorURL, encoding: .utf8)
        )
    }

    /// Starts the child and waits for its end without blocking a thread (a server this test process hosts
    /// keeps answering the child).
    /// - Parameter whileRunning: started in a task of its own once the child runs (to watch or signal it).
    public func run(whileRunning: (@Sendable (CapturedProcess) async -> Void)? = nil) async throws -> ProcessOutput {
        let process = self.process
        let status = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            if let whileRunning {
                Task { await whileRunning(self) }
            }
        }
        return try output(status: status)
    }

    /// Runs the child to its end, blocking this thread (for synchronous tests that host no server).
    public func runToEnd() throws -> ProcessOutput {
        try process.run()
        process.waitUntilExit()
        return try output(status: process.terminationStatus)
    }
}
