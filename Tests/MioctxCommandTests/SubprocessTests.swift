import Foundation
import MioctxTestSupport
import Testing

/// The test suites' way of starting programs (`Subprocess`, instead of Foundation's `Process`).
@Suite("Subprocess: children started with posix_spawn")
struct SubprocessTests {
    @Test func standardInputReachesTheChildAndItsOutputsAndExitStatusComeBack() throws {
        let result = try runCommand(
            URL(fileURLWithPath: "/bin/sh"),
            ["-c", "cat; echo 'to stderr' >&2; exit 3"],
            input: "line one\nline two\n"
        )
        #expect(result.status == 3)
        #expect(result.output == "line one\nline two\n")
        #expect(result.error == "to stderr\n")
    }

    @Test func outputLargerThanAPipeOnBothStreamsIsReadWhole() throws {
        // 1 MiB on each stream: a reader of one pipe only would leave the child blocked on the other.
        let result = try runCommand(
            URL(fileURLWithPath: "/bin/sh"),
            ["-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"]
        )
        #expect(result.status == 0)
        #expect(result.output.utf8.count == 1_048_576)
        #expect(result.error.utf8.count == 1_048_576)
    }

    @Test func aSignalEndsTheChildAndIsReportedAsSuch() async throws {
        let child = try Subprocess("/bin/sleep", ["60"])
        #expect(child.isRunning)
        child.send(SIGTERM)
        let termination = await child.exit()
        #expect(termination == .signal(SIGTERM))
        #expect(termination.status == SIGTERM)
        #expect(!child.isRunning)
        // Waiting again returns the same ending; signalling a reaped child does nothing.
        child.send(SIGKILL)
        #expect(child.waitForExit() == .signal(SIGTERM))
    }

    @Test func theChildGetsItsStandardStreamsOnlyAndItsOwnDirectoryAndEnvironment() throws {
        // A descriptor of this process without close-on-exec: the child must not inherit it.
        // (F_DUPFD to a high number, clear of what the shell itself may open.)
        let null = open("/dev/null", O_RDONLY)
        try #require(null >= 0)
        let inheritable = fcntl(null, F_DUPFD, 700)
        close(null)
        try #require(inheritable >= 700)
        defer { close(inheritable) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("subprocess-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let child = try Subprocess(
            "/bin/sh",
            ["-c", "for f in /proc/$$/fd/*; do echo \"fd ${f##*/}\"; done; echo \"pwd $(pwd -P)\"; echo \"x $X\"; echo \"home ${HOME-unset}\""],
            environment: ["X": "from the test", "PATH": "/usr/bin:/bin"],
            directory: directory.path
        )
        let lines = String(decoding: child.readToEnd(), as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(child.waitForExit() == .exit(0))
        let descriptors = Set(lines.filter { $0.hasPrefix("fd ") }.map { $0.dropFirst(3) }.compactMap { Int32($0) })
        #expect(descriptors.isSuperset(of: [0, 1, 2]))
        #expect(!descriptors.contains(inheritable), "the child inherited descriptor \(inheritable): \(lines)")
        #expect(lines.contains("pwd \(directory.resolvingSymlinksInPath().path)"))
        #expect(lines.contains("x from the test"))
        #expect(lines.contains("home unset"), "the environment is exactly the one given: \(lines)")
    }

    @Test func aMissingExecutableIsAnErrorNamingIt() {
        let missing = "/nonexistent/mioctx-\(UUID().uuidString)"
        #expect {
            _ = try Subprocess(missing, [])
        } throws: { error in
            "\(error)".contains(missing) && "\(error)".contains("No such file")
        }
    }
}
