import Foundation

/// The stacks of this process's threads, for a test that waits in vain: a thread blocked in a call (a lock, a
/// librdkafka call that waits for another thread) shows there, where a suspended task would not.
public enum ThreadDump {
    /// The threads that run our code or wait for a lock, as gdb prints them (demangled); the idle ones (event loops
    /// in `epoll_wait`, librdkafka's threads in their queues, the pools' workers without a task) are left out.
    /// Needs `gdb` (scripts/install-deps.sh installs it); says why when it cannot. gdb stops the process while
    /// it reads the stacks (seconds, with the hundreds of threads of a full test run): only for a run that failed.
    /// - Parameters:
    ///   - pid: the process (nil: this one).
    ///   - framesPerThread: the innermost frames printed of each thread.
    public static func busyThreads(of pid: Int32? = nil, framesPerThread: Int = 24) -> String {
        let pid = pid ?? ProcessInfo.processInfo.processIdentifier
        guard let gdb = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first(where: FileManager.default.isExecutableFile) else {
            return "threads: no gdb to print them"
        }
        // gdb stops the process while it reads it: its output goes to a file, not a pipe this process would have to
        // drain (a full pipe would block gdb, and the stopped reader with it), and `timeout` ends it from outside.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("threads-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let arguments = [
            "-s", "KILL", "120", gdb, "-p", "\(pid)", "-batch", "-nx",
            "-ex", "set pagination off", "-ex", "thread apply all bt \(framesPerThread)",
        ]
        guard let dumper = try? Subprocess("/usr/bin/timeout", arguments, standardOutput: .file(file), standardError: .file("/dev/null"))
        else { return "threads: gdb could not be run" }
        dumper.waitForExit()
        guard let output = try? String(contentsOfFile: file, encoding: .utf8) else { return "threads: gdb wrote nothing" }
        let threads = output.components(separatedBy: "\nThread ").dropFirst().map { "Thread " + $0 }
        let busy = threads.filter(isBusy)
        let text = busy.isEmpty ? "(none of \(threads.count) threads is busy)" : busy.joined(separator: "\n")
        return "threads (\(busy.count) busy of \(threads.count)):\n\(text)"
    }

    /// Whether a thread's stack runs our code (a frame in the package's `Sources/`, as gdb names it from the debug
    /// build's line tables; not a dependency's) or waits for a lock or for another librdkafka thread.
    static func isBusy(_ stack: String) -> Bool {
        let marks = [ourSources, "__lll_lock_wait", "pthread_mutex_lock", "rd_kafka_q_wait_result"]
        return marks.contains { stack.contains($0) }
    }

    /// The package's `Sources/` directory, from this file's path (`<package>/Tests/MioctxTestSupport/ThreadDump.swift`).
    private static let ourSources: String = {
        let testSupport = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return testSupport.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources").path + "/"
    }()
}
