public import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A child process started with `posix_spawn`, for tests that run `mioctx`, kcat or another program.
///
/// Not Foundation's `Process`: on Linux, swift-corelibs-foundation's `Process.run()` (Swift 6.3 included) scans
/// `/proc/self/fd` and copies 256 bytes of each directory entry's name, reading past the end of glibc's directory
/// buffer. When that buffer ends at an unmapped page, the whole test process crashes (SIGSEGV in `memmove`,
/// swiftlang/swift-corelibs-foundation#5472). It crashed this suite in CI once its tests held enough descriptors;
/// AddressSanitizer reports it as a heap-buffer-overflow in `findMaximumOpenFromProcSelfFD` on every run.
///
/// The child gets its own process group, default signal dispositions and an empty signal mask, and none of this
/// process's descriptors beyond its three standard streams.
public final class Subprocess: Sendable {
    /// Where the child's standard input comes from.
    public enum Input: Sendable {
        /// `/dev/null`.
        case nullDevice
        /// A pipe this process writes with ``writeToStandardInput(_:)``.
        case pipe
        /// A file, read from its start.
        case file(String)
    }

    /// Where one of the child's output streams goes.
    public enum Output: Sendable {
        /// A pipe this process reads (``readLine(from:)``, ``readToEnd(from:)``).
        case pipe
        /// A file, created empty (truncated when it exists).
        case file(String)
    }

    /// One of the child's output streams, for the read methods.
    public enum Stream: Sendable {
        /// The child's standard output.
        case standardOutput
        /// The child's standard error.
        case standardError
    }

    /// How the child ended.
    public enum Termination: Sendable, Equatable {
        /// It exited with this status.
        case exit(Int32)
        /// This signal ended it.
        case signal(Int32)

        /// The exit status, or the signal's number when a signal ended it.
        public var status: Int32 {
            switch self {
            case .exit(let status), .signal(let status): status
            }
        }
    }

    /// The child's process id.
    public let processIdentifier: pid_t
    /// This process's end of the standard input pipe, until ``closeStandardInput()``.
    private let standardInputPipe: Mutex<Int32?>
    private let standardOutputPipe: Int32?
    private let standardErrorPipe: Int32?
    /// Set once the child is reaped; the lock also orders reaping against signalling.
    private let termination = Mutex<Termination?>(nil)

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - environment: the whole environment of the child (nil: this process's).
    ///   - directory: the child's working directory (nil: this process's).
    /// - Throws: ``SubprocessError`` naming the call that failed and the executable.
    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        directory: String? = nil,
        standardInput: Input = .nullDevice,
        standardOutput: Output = .pipe,
        standardError: Output = .pipe
    ) throws {
        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        func closeAll(_ descriptors: [Int32]) {
            for descriptor in descriptors { close(descriptor) }
        }
        do {
            // The child's three descriptors, and the parent's pipe ends (nil: no pipe).
            let (inputChild, inputParent) = try Self.open(standardInput, executable: executable)
            childEnds.append(inputChild)
            parentEnds += [inputParent].compactMap { $0 }
            let (outputChild, outputParent) = try Self.open(standardOutput, executable: executable)
            childEnds.append(outputChild)
            parentEnds += [outputParent].compactMap { $0 }
            let (errorChild, errorParent) = try Self.open(standardError, executable: executable)
            childEnds.append(errorChild)
            parentEnds += [errorParent].compactMap { $0 }

            processIdentifier = try Self.spawn(
                executable, arguments, environment: environment, directory: directory,
                descriptors: (inputChild, outputChild, errorChild)
            )
            closeAll(childEnds)
            standardInputPipe = Mutex(inputParent)
            standardOutputPipe = outputParent
            standardErrorPipe = errorParent
        } catch {
            closeAll(childEnds + parentEnds)
            throw error
        }
    }

    deinit {
        closeStandardInput()
        for descriptor in [standardOutputPipe, standardErrorPipe].compactMap({ $0 }) {
            close(descriptor)
        }
    }

    /// Whether the child is still running (reaps it when it has ended).
    public var isRunning: Bool {
        termination.withLock { termination in
            guard termination == nil else { return false }
            var status: Int32 = 0
            guard waitpid(processIdentifier, &status, WNOHANG) == processIdentifier else { return true }
            termination = Self.termination(status)
            return false
        }
    }

    /// Sends `signal` to the child unless it has already been reaped.
    public func send(_ signal: Int32) {
        termination.withLock { termination in
            if termination == nil { _ = kill(processIdentifier, signal) }
        }
    }

    /// Blocks the calling thread until the child ends.
    @discardableResult
    public func waitForExit() -> Termination {
        if let ended = termination.withLock({ $0 }) { return ended }
        // Wait without reaping, so that `isRunning` and `send(_:)` never block behind this wait and the pid is
        // not reused while another thread may still signal it.
        var info = siginfo_t()
        while waitid(P_PID, id_t(processIdentifier), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        return termination.withLock { termination in
            if let termination { return termination }
            var status: Int32 = 0
            while waitpid(processIdentifier, &status, 0) == -1 && errno == EINTR {}
            let ended = Self.termination(status)
            termination = ended
            return ended
        }
    }

    /// Waits for the child's end on a thread of its own, never on the cooperative pool.
    public func exit() async -> Termination {
        await offPool { self.waitForExit() }
    }

    /// Writes `bytes` to the child's standard input (a pipe); what the child no longer reads is dropped.
    public func writeToStandardInput(_ bytes: some Collection<UInt8>) {
        standardInputPipe.withLock { descriptor in
            guard let descriptor else { preconditionFailure("standard input is not an open pipe") }
            var remaining = Array(bytes)[...]
            while !remaining.isEmpty {
                let written = remaining.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                remaining = remaining.dropFirst(written)
            }
        }
    }

    /// Closes the child's standard input (a pipe), so that it reads the end of the file.
    public func closeStandardInput() {
        standardInputPipe.withLock { descriptor in
            if let open = descriptor { close(open) }
            descriptor = nil
        }
    }

    /// Reads up to the next newline (excluded) from a piped stream; nil at the end of the stream.
    public func readLine(from stream: Stream = .standardOutput) -> String? {
        let descriptor = pipe(stream)
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = Glibc.read(descriptor, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            guard count == 1 else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }

    /// Reads exactly `count` bytes from a piped stream, fewer when it ends first.
    public func read(_ count: Int, from stream: Stream = .standardOutput) -> [UInt8] {
        let descriptor = pipe(stream)
        var bytes = [UInt8](repeating: 0, count: count)
        var total = 0
        while total < count {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + total, count - total) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { break }
            total += got
        }
        return Array(bytes.prefix(total))
    }

    /// Reads a piped stream to its end.
    public func readToEnd(from stream: Stream = .standardOutput) -> [UInt8] {
        let descriptor = pipe(stream)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let got = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return bytes }
            bytes += chunk.prefix(got)
        }
    }

    /// Reads both piped output streams to their ends. Standard error is read on a thread of its own: a child that
    /// fills one pipe while this process reads the other would otherwise wait forever.
    public func readBothToEnd() -> (output: [UInt8], error: [UInt8]) {
        final class Box: Sendable {
            let bytes = Mutex<[UInt8]>([])
            let done = DispatchSemaphore(value: 0)
        }
        let errors = Box()
        Thread.detachNewThread {
            let bytes = self.readToEnd(from: .standardError)
            errors.bytes.withLock { $0 = bytes }
            errors.done.signal()
        }
        let output = readToEnd(from: .standardOutput)
        errors.done.wait()
        return (output, errors.bytes.withLock { $0 })
    }

    private func pipe(_ stream: Stream) -> Int32 {
        let descriptor = stream == .standardOutput ? standardOutputPipe : standardErrorPipe
        guard let descriptor else { preconditionFailure("\(stream) is not a pipe") }
        return descriptor
    }

    private static func termination(_ status: Int32) -> Termination {
        // WIFSIGNALED / WTERMSIG / WEXITSTATUS, which Swift does not import.
        let signal = status & 0x7F
        return signal != 0 && signal != 0x7F ? .signal(signal) : .exit((status >> 8) & 0xFF)
    }

    /// The child's descriptor for a stream and, for a pipe, this process's end (close-on-exec).
    private static func open(_ input: Input, executable: String) throws -> (child: Int32, parent: Int32?) {
        switch input {
        case .nullDevice:
            return (try openFile("/dev/null", O_RDONLY, executable: executable), nil)
        case .file(let path):
            return (try openFile(path, O_RDONLY, executable: executable), nil)
        case .pipe:
            let ends = try makePipe(executable: executable)
            return (ends.read, ends.write)
        }
    }

    private static func open(_ output: Output, executable: String) throws -> (child: Int32, parent: Int32?) {
        switch output {
        case .file(let path):
            return (try openFile(path, O_WRONLY | O_CREAT | O_TRUNC, executable: executable), nil)
        case .pipe:
            let ends = try makePipe(executable: executable)
            return (ends.write, ends.read)
        }
    }

    private static func openFile(_ path: String, _ flags: Int32, executable: String) throws -> Int32 {
        let descriptor = Glibc.open(path, flags | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw SubprocessError(call: "open \(path)", executable: executable, errno: errno) }
        return descriptor
    }

    private static func makePipe(executable: String) throws -> (read: Int32, write: Int32) {
        // pipe2 needs _GNU_SOURCE too; a child spawned by another thread in between closes every descriptor
        // beyond its standard streams anyway.
        var ends: [Int32] = [-1, -1]
        guard Glibc.pipe(&ends) == 0 else { throw SubprocessError(call: "pipe", executable: executable, errno: errno) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return (ends[0], ends[1])
    }

    private static func spawn(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]?,
        directory: String?,
        descriptors: (Int32, Int32, Int32)
    ) throws -> pid_t {
        func check(_ result: Int32, _ call: String) throws {
            if result != 0 { throw SubprocessError(call: call, executable: executable, errno: result) }
        }
        var actions = posix_spawn_file_actions_t()
        try check(posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init")
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the copies 0, 1 and 2; every other descriptor is closed.
        try check(posix_spawn_file_actions_adddup2(&actions, descriptors.0, 0), "adddup2 stdin")
        try check(posix_spawn_file_actions_adddup2(&actions, descriptors.1, 1), "adddup2 stdout")
        try check(posix_spawn_file_actions_adddup2(&actions, descriptors.2, 2), "adddup2 stderr")
        try check(GNUSpawnActions.addCloseFrom(&actions, 3), "posix_spawn_file_actions_addclosefrom_np")
        if let directory {
            try check(GNUSpawnActions.addChdir(&actions, directory), "posix_spawn_file_actions_addchdir_np \(directory)")
        }

        var attributes = posix_spawnattr_t()
        try check(posix_spawnattr_init(&attributes), "posix_spawnattr_init")
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2] {
            sigaddset(&defaults, signal)
        }
        try check(posix_spawnattr_setsigmask(&attributes, &noSignals), "posix_spawnattr_setsigmask")
        try check(posix_spawnattr_setsigdefault(&attributes, &defaults), "posix_spawnattr_setsigdefault")
        try check(posix_spawnattr_setpgroup(&attributes, 0), "posix_spawnattr_setpgroup")
        let flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        try check(posix_spawnattr_setflags(&attributes, Int16(flags)), "posix_spawnattr_setflags")

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }

        var pid: pid_t = 0
        let result = argv.withUnsafeBufferPointer { argvBuffer in
            if let envp {
                return envp.withUnsafeBufferPointer { envpBuffer in
                    posix_spawn(&pid, executable, &actions, &attributes, argvBuffer.baseAddress!, envpBuffer.baseAddress!)
                }
            }
            return posix_spawn(&pid, executable, &actions, &attributes, argvBuffer.baseAddress!, environ)
        }
        try check(result, "posix_spawn")
        return pid
    }
}

/// A failed system call while starting a child, with the executable it was for.
public struct SubprocessError: Error, CustomStringConvertible {
    /// The system call, with its argument when that helps (`open PATH`).
    public var call: String
    /// The program that was being started.
    public var executable: String
    /// The error number the call returned.
    public var errno: Int32

    public var description: String {
        "starting \(executable): \(call) failed: \(String(cString: strerror(errno)))"
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34) and `…_addchdir_np` (2.29), which Swift's Glibc
/// module does not import (they need `_GNU_SOURCE`): looked up by name.
private enum GNUSpawnActions {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias Chdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    static let closeFrom: CloseFrom? = lookUp("posix_spawn_file_actions_addclosefrom_np")
    static let chdir: Chdir? = lookUp("posix_spawn_file_actions_addchdir_np")

    static func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32 {
        closeFrom.map { $0(actions, from) } ?? ENOSYS
    }

    static func addChdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: String) -> Int32 {
        guard let chdir else { return ENOSYS }
        return path.withCString { chdir(actions, $0) }
    }

    private static func lookUp<T>(_ name: String) -> T? {
        // nil is RTLD_DEFAULT: every object loaded, libc included.
        dlsym(nil, name).map { unsafeBitCast($0, to: T.self) }
    }
}

/// Runs blocking work (a wait, a pipe read) on a thread outside the cooperative pool.
public func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}
