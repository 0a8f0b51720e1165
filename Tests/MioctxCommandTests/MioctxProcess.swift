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
}
