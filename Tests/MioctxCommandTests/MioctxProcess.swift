import Foundation
import MioctxTestSupport
import Testing

/// Runs the real `mioctx` executable built next to the test bundle, with a controlled environment.
enum MioctxProcess {
    /// Runs `mioctx arguments...` with exactly `environment` (nothing inherited from the test process), in a
    /// directory of its own.
    static func run(_ arguments: [String], environment: [String: String]) throws -> ProcessOutput {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try CapturedProcess(try mioctxExecutable(), arguments, environment: environment, in: directory).runToEnd()
    }

    /// Runs a tool found on `PATH` (such as `kubectl`) with this process's environment.
    static func runTool(_ name: String, _ arguments: [String]) throws -> ProcessOutput {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { URL(fileURLWithPath: String($0)).appendingPathComponent(name) }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
        let executable = try #require(path, "\(name) is not installed (scripts/install-deps.sh installs it)")
        let directory = try TemporaryDirectory()
        return try CapturedProcess(
            executable, arguments, environment: ProcessInfo.processInfo.environment, in: directory.url
        ).runToEnd()
    }
}
