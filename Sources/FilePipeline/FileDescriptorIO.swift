import Coordination
import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file descriptor whose blocking calls run on a private serial queue, never on the cooperative thread pool
/// (a read from a pipe can block for as long as the writer likes). Calls are executed in the order they are made.
///
/// `@unchecked Sendable`: the descriptor number never changes, and every system call on it runs on `queue`.
final class BlockingDescriptor: @unchecked Sendable {
    /// The path, or `-` for standard input/output.
    let path: String
    /// Whether the descriptor is a regular file (`fsync` applies; the size is known).
    let isRegularFile: Bool
    private let descriptor: Int32
    private let ownsDescriptor: Bool
    private let queue: DispatchQueue

    private init(descriptor: Int32, path: String, ownsDescriptor: Bool) {
        self.descriptor = descriptor
        self.path = path
        self.ownsDescriptor = ownsDescriptor
        var status = stat()
        isRegularFile = fstat(descriptor, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
        queue = DispatchQueue(label: "mioctx.file.\(path)")
    }

    deinit {
        if ownsDescriptor { close(descriptor) }
    }

    /// Opens a file for reading; `-` is standard input.
    static func openForReading(_ path: String) throws(JSONLFileError) -> BlockingDescriptor {
        if path == "-" { return BlockingDescriptor(descriptor: STDIN_FILENO, path: path, ownsDescriptor: false) }
        return try open(path, flags: O_RDONLY)
    }

    /// Opens a file for appending, creating it (mode 0600: results hold users' personal context) if absent; `-` is
    /// standard output.
    static func openForAppending(_ path: String) throws(JSONLFileError) -> BlockingDescriptor {
        if path == "-" { return BlockingDescriptor(descriptor: STDOUT_FILENO, path: path, ownsDescriptor: false) }
        return try open(path, flags: O_WRONLY | O_CREAT | O_APPEND)
    }

    /// Opens a file for writing from its start, creating (mode 0600) or truncating it.
    static func openForReplacing(_ path: String) throws(JSONLFileError) -> BlockingDescriptor {
        try open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
    }

    private static func open(_ path: String, flags: Int32) throws(JSONLFileError) -> BlockingDescriptor {
        let descriptor = path.withCString { systemOpen($0, flags | O_CLOEXEC, 0o600) }
        guard descriptor >= 0 else { throw JSONLFileError(code: .open, path: path, systemError: errno) }
        return BlockingDescriptor(descriptor: descriptor, path: path, ownsDescriptor: true)
    }

    /// Reads up to `count` bytes; an empty array at the end of the file. Cancelling the calling task abandons
    /// the read (it still completes on the queue; its bytes are dropped).
    func read(upTo count: Int) async throws -> [UInt8] {
        try await onQueue { () throws(JSONLFileError) -> [UInt8] in
            var buffer = [UInt8](repeating: 0, count: count)
            while true {
                let got = buffer.withUnsafeMutableBytes { systemRead(self.descriptor, $0.baseAddress, count) }
                if got >= 0 {
                    buffer.removeSubrange(got...)
                    return buffer
                }
                if errno != EINTR { throw JSONLFileError(code: .read, path: self.path, systemError: errno) }
            }
        }
    }

    /// Writes all of `bytes` (one `write(2)` for a whole line in the usual case, so lines never interleave).
    func write(_ bytes: [UInt8]) async throws {
        try await onQueue { () throws(JSONLFileError) in try self.writeNow(bytes) }
    }

    /// Writes `bytes` before any later write, blocking the caller: only for a few bytes while setting up,
    /// before the descriptor is shared.
    func writeBeforeUse(_ bytes: [UInt8]) throws(JSONLFileError) {
        let failure = queue.sync { () -> JSONLFileError? in
            do throws(JSONLFileError) {
                try writeNow(bytes)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Flushes written data to stable storage; nothing for a pipe or a terminal.
    func synchronize() async throws {
        guard isRegularFile else { return }
        try await onQueue { () throws(JSONLFileError) in
            guard fsync(self.descriptor) == 0 else {
                throw JSONLFileError(code: .sync, path: self.path, systemError: errno)
            }
        }
    }

    private func writeNow(_ bytes: [UInt8]) throws(JSONLFileError) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                systemWrite(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw JSONLFileError(code: .write, path: path, systemError: errno)
            }
            written += result
        }
    }

    /// Runs `body` on the queue; the caller may be cancelled while it waits (the work then still runs; its outcome
    /// is dropped). Work is not queued for a task already cancelled.
    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws(JSONLFileError) -> T) async throws -> T {
        try Task.checkCancellation()
        let outcome = WaitableState<Result<T, any Error>?, Result<T, any Error>>(nil)
        queue.async {
            let result: Result<T, any Error>
            do throws(JSONLFileError) {
                result = .success(try body())
            } catch {
                result = .failure(error)
            }
            outcome.withLock { outcome, waiters in
                outcome = result
                waiters.wakeAll(with: result)
            }
        }
        return try await outcome.wait(cancelled: .failure(CancellationError())) { $0 }.get()
    }
}

// The class's own `read` and `write` would shadow the system calls inside it.
private func systemOpen(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: mode_t) -> Int32 {
    open(path, flags, mode)
}

private func systemRead(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(descriptor, buffer, count)
}

private func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}
