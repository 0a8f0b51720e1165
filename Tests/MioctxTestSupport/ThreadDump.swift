import Foundation

/// The stacks of this process's threads, for a test that waits in vain: a thread blocked in a call (a lock, a
/// librdkafka call that waits for another thread) shows there, where a suspended task would not.
public enum ThreadDump {
    /// The threads that run our code or wait for a lock, with their frames demangled; the idle ones (event loops
    /// in `epoll_wait`, librdkafka's threads in their queues, the pools' workers without a task) are left out.
    /// Needs `gdb` (scripts/install-deps.sh installs it); says why when it cannot.
    public static func busyThreads(framesPerThread: Int = 24) -> String {
        guard let gdb = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first(where: FileManager.default.isExecutableFile) else {
            return "threads: no gdb to print them"
        }
        let output = run(gdb, [
            "-p", "\(ProcessInfo.processInfo.processIdentifier)", "-batch", "-nx",
            "-ex", "set pagination off", "-ex", "thread apply all bt \(framesPerThread)",
        ])
        guard let output else { return "threads: gdb could not be run" }
        let threads = output.components(separatedBy: "\nThread ").dropFirst().map { "Thread " + $0 }
        let busy = threads.filter(isBusy)
        let text = busy.isEmpty ? "(none of \(threads.count) threads is busy)" : busy.joined(separator: "\n")
        let demangled = swiftDemangle(text) ?? text
        return "threads (\(busy.count) busy of \(threads.count)):\n\(demangled)"
    }

    /// Whether a thread's stack runs our code or waits for a lock.
    static func isBusy(_ stack: String) -> Bool {
        let ours = ["5Kafka", "13KafkaPipeline", "12Coordination", "3Mio", "8Pipeline", "9MioTokens", "17PipelineMioBridge"]
        let lockWaits = ["__lll_lock_wait", "pthread_mutex_lock", "rd_kafka_q_wait_result"]
        return ours.contains { stack.contains("$s\($0)") } || lockWaits.contains { stack.contains($0) }
    }

    private static func swiftDemangle(_ text: String) -> String? {
        let candidates = ["/opt/swift/usr/bin/swift-demangle", "/usr/bin/swift-demangle"]
        guard let tool = candidates.first(where: FileManager.default.isExecutableFile) else { return nil }
        return run(tool, ["--simplified"], input: text)
    }

    /// Runs `tool` and returns its standard output, or nil when it could not be run or ran for over 60 s.
    private static func run(_ tool: String, _ arguments: [String], input: String? = nil) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        let standardInput = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = standardInput
        do {
            try process.run()
        } catch {
            return nil
        }
        let writer = Thread {
            if let input { standardInput.fileHandleForWriting.write(Data(input.utf8)) }
            try? standardInput.fileHandleForWriting.close()
        }
        writer.start()
        let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: killer)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        return String(decoding: data, as: UTF8.self)
    }
}
