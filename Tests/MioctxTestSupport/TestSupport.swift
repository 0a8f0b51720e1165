public import Foundation
import Synchronization

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
public final class ChildProcess: Sendable {
    private let child: Subprocess
    private let name: String
    private let errorsInPipe: Bool

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - environment: the whole environment of the child (nil: inherit this process's).
    ///   - standardError: a file for the child's standard error, created empty (nil: a pipe, see ``standardError()``).
    public init(
        _ executable: URL,
        _ arguments: [String],
        environment: [String: String]? = nil,
        standardError: URL? = nil
    ) throws {
        name = executable.lastPathComponent
        errorsInPipe = standardError == nil
        child = try Subprocess(
            executable.path,
            arguments,
            environment: environment,
            standardError: standardError.map { .file($0.path) } ?? .pipe
        )
    }

    /// Reads standard output up to the first newline.
    /// The child's process id (for /proc/PID/status, say).
    public var processIdentifier: pid_t { child.processIdentifier }

    public func firstLine() throws -> String {
        guard let line = child.readLine() else {
            throw TestTimeout(what: "a first line from \(name): \(standardError())")
        }
        return line
    }

    /// What the child wrote to standard error (when it goes to a pipe), read to its end: call it once the child
    /// has ended.
    public func standardError() -> String {
        guard errorsInPipe else { return "" }
        return String(decoding: child.readToEnd(from: .standardError), as: UTF8.self)
    }

    /// Sends `signal` (SIGTERM by default) and waits for the exit status.
    @discardableResult
    public func terminate(signal: Int32 = SIGTERM) -> Int32 {
        child.send(signal)
        return wait()
    }

    /// Sends `signal` (SIGTERM by default) and waits for the exit status on a thread of its own, so that a child
    /// that takes its time to stop (a worker draining) never holds a thread of the cooperative pool.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) async -> Int32 {
        child.send(signal)
        return await child.exit().status
    }

    /// Waits for the child to exit; returns its status (the signal number when killed by one).
    public func wait() -> Int32 {
        child.waitForExit().status
    }

    /// Whether the child was ended by a signal rather than exiting.
    public var wasKilledBySignal: Bool {
        if case .signal = child.waitForExit() { return true }
        return false
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
    let child = try Subprocess(executable.path, arguments, environment: environment, standardInput: .pipe)
    if let input {
        child.writeToStandardInput(input.utf8)
    }
    child.closeStandardInput()
    let (out, err) = child.readBothToEnd()
    return CommandResult(
        status: child.waitForExit().status,
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
public final class CapturedProcess: Sendable {
    private let executable: URL
    private let arguments: [String]
    private let environment: [String: String]
    private let directory: URL
    private let standardInput: String?
    private let outputURL: URL
    private let errorURL: URL
    /// The child, once started.
    private let child = Mutex<Subprocess?>(nil)

    /// Prepares the child; ``run(whileRunning:)`` or ``runToEnd()`` starts it.
    /// - Parameter standardInput: a file to read standard input from (nil: `/dev/null`).
    public init(
        _ executable: URL,
        _ arguments: [String],
        environment: [String: String],
        in directory: URL,
        standardInput: String? = nil
    ) throws {
        let name = UUID().uuidString
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.directory = directory
        self.standardInput = standardInput
        outputURL = directory.appendingPathComponent("\(name).stdout")
        errorURL = directory.appendingPathComponent("\(name).stderr")
    }

    /// What the child wrote to standard error so far.
    public var standardErrorSoFar: String {
        (try? String(contentsOf: errorURL, encoding: .utf8)) ?? ""
    }

    /// Whether the child has been started and is still running.
    public var isRunning: Bool {
        child.withLock { $0 }?.isRunning ?? false
    }

    /// Sends SIGINT to the child, as Ctrl-C would.
    public func interrupt() {
        child.withLock { $0 }?.send(SIGINT)
    }

    /// Starts the child and waits for its end without blocking a thread of the cooperative pool (a server this
    /// test process hosts keeps answering the child).
    /// - Parameter whileRunning: started in a task of its own once the child runs (to watch or signal it).
    public func run(whileRunning: (@Sendable (CapturedProcess) async -> Void)? = nil) async throws -> ProcessOutput {
        let started = try start()
        let watcher = whileRunning.map { body in Task { await body(self) } }
        let termination = await started.exit()
        await watcher?.value
        return try output(status: termination.status)
    }

    /// Runs the child to its end, blocking this thread (for synchronous tests that host no server).
    public func runToEnd() throws -> ProcessOutput {
        let termination = try start().waitForExit()
        return try output(status: termination.status)
    }

    private func start() throws -> Subprocess {
        let started = try Subprocess(
            executable.path,
            arguments,
            environment: environment,
            directory: directory.path,
            standardInput: standardInput.map { .file($0) } ?? .nullDevice,
            standardOutput: .file(outputURL.path),
            standardError: .file(errorURL.path)
        )
        child.withLock { $0 = started }
        return started
    }

    /// Reads the files, once the child exited with `status`.
    private func output(status: Int32) throws -> ProcessOutput {
        ProcessOutput(
            status: status,
            standardOutput: try String(contentsOf: outputURL, encoding: .utf8),
            standardError: try String(contentsOf: errorURL, encoding: .utf8)
        )
    }
}
