import Foundation
import MioctxTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `process.coreDumps`: a core dump would hold the tokens and keys a process has in memory, so every command sets
/// its core file size limit to 0 unless the setting allows them.
@Suite struct CoreDumpTests {
    /// The "Max core file size" soft and hard limits of a running process, as /proc/PID/limits writes them.
    static func coreLimits(of pid: pid_t) throws -> String {
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
        return line.dropFirst("Max core file size".count).split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// Starts `mioctx sim` (it loads the settings like every command) and returns its core limits.
    static func simulatorCoreLimits(environment: [String: String]) async throws -> String {
        let child = try Subprocess(try mioctxExecutable().path, ["sim", "--port", "0"], environment: environment)
        defer { child.send(SIGTERM) }
        let url = child.readLine()
        #expect(url?.hasPrefix("http://") == true, "the simulator printed no URL")
        return try coreLimits(of: child.processIdentifier)
    }

    @Test func coreDumpsAreOffByDefault() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["MIOCTX_PROCESS_CORE_DUMPS"] = nil
        #expect(try await Self.simulatorCoreLimits(environment: environment) == "0 0")
    }

    @Test func theSettingLeavesTheLimitAsItWas() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["MIOCTX_PROCESS_CORE_DUMPS"] = "true"
        let inherited = try Self.coreLimits(of: getpid())
        #expect(try await Self.simulatorCoreLimits(environment: environment) == inherited)
    }
}
