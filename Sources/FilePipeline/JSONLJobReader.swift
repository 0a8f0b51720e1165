public import Pipeline
/// Reads a JSON Lines file of jobs (or standard input) line by line, without loading it whole.
///
/// Lines end with `\n` (a `\r` before it is dropped); the last line may lack it. Line numbers start at 1 and count
/// every line, blank ones included, so they match what an editor shows. A UTF-8 byte order mark at the start of
/// the file is skipped. A line longer than ``maxLineBytes`` is not kept whole: its first ``maxLineBytes`` bytes
/// are, and ``Line/length`` says how long it was.
///
/// The reader is single-pass: iterate it once. Reads run off the cooperative thread pool, and cancelling the
/// iterating task ends a read that waits for a slow pipe.
public struct JSONLJobReader: AsyncSequence, Sendable {
    /// One line of the input.
    public struct Line: Sendable, Hashable {
        /// The line number, from 1.
        public var number: Int64
        /// The line without its line ending (only the first ``JSONLJobReader/maxLineBytes`` bytes of a longer one).
        public var bytes: [UInt8]
        /// The length of the whole line in bytes, without its line ending.
        public var length: Int
        /// Whether the line ended with `\n` (only the last line of an input may not).
        public var isTerminated: Bool

        /// Creates a line.
        /// - Parameters:
        ///   - number: The line number, from 1.
        ///   - bytes: The line's bytes (possibly cut).
        ///   - length: The whole line's length.
        ///   - isTerminated: Whether the line ended with `\n`.
        public init(number: Int64, bytes: [UInt8], length: Int, isTerminated: Bool = true) {
            self.number = number
            self.bytes = bytes
            self.length = length
            self.isTerminated = isTerminated
        }

        /// Whether the line was longer than the reader keeps (``bytes`` holds only its start).
        public var isCut: Bool { length > bytes.count }

        /// Whether the line holds nothing but JSON whitespace.
        public var isBlank: Bool {
            !isCut && bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        }

        /// The line as an engine input item from `file`: source `file[0]@number`, no key, no headers.
        /// - Parameter file: The input's name (its path, or `-`).
        /// - Returns: The item.
        public func item(file: String) -> InputItem {
            InputItem(value: bytes, source: JobSource(partition: PartitionID(topic: file, partition: 0), offset: number))
        }
    }

    /// The path given for standard input (and standard output).
    public static let standardStream = "-"
    /// The default ``maxLineBytes``: 1 MiB, far above the largest valid job (two 16 KiB fields and short ids).
    public static let defaultMaxLineBytes = 1 << 20

    /// The path, or `-` for standard input.
    public let path: String
    /// The most bytes kept of one line.
    public let maxLineBytes: Int
    private let descriptor: BlockingDescriptor

    /// Whether the input is a regular file (not standard input, a pipe or a terminal).
    public var isRegularFile: Bool { descriptor.isRegularFile }

    /// Opens a file of jobs.
    /// - Parameters:
    ///   - path: The path, or `-` for standard input.
    ///   - maxLineBytes: The most bytes kept of one line; longer lines are cut (see ``Line/isCut``).
    /// - Throws: ``JSONLFileError`` if the file cannot be opened.
    public init(path: String, maxLineBytes: Int = JSONLJobReader.defaultMaxLineBytes) throws(JSONLFileError) {
        precondition(maxLineBytes > 0, "maxLineBytes must be positive")
        self.path = path
        self.maxLineBytes = maxLineBytes
        self.descriptor = try BlockingDescriptor.openForReading(path)
    }

    /// Counts the lines of a regular file (a last line without `\n` counts), for a progress display; `nil` for
    /// standard input or a pipe. Reads the file once more, off the cooperative thread pool.
    /// - Returns: The number of lines, or `nil` if the input is not a regular file.
    /// - Throws: ``JSONLFileError`` if the file cannot be read.
    public func countLines() async throws -> Int64? {
        guard path != Self.standardStream, descriptor.isRegularFile else { return nil }
        let counter = try BlockingDescriptor.openForReading(path)
        var lines: Int64 = 0
        var last: UInt8 = 0x0A
        while true {
            let chunk = try await counter.read(upTo: 1 << 20)
            guard let final = chunk.last else { break }
            for byte in chunk where byte == 0x0A { lines += 1 }
            last = final
        }
        return last == 0x0A ? lines : lines + 1
    }

    /// Creates the iterator (once: the reader is single-pass).
    public func makeAsyncIterator() -> Iterator {
        Iterator(descriptor: descriptor, maxLineBytes: maxLineBytes)
    }

    /// Yields the lines in order.
    public struct Iterator: AsyncIteratorProtocol {
        private let descriptor: BlockingDescriptor
        private let maxLineBytes: Int
        private var buffer: [UInt8] = []
        private var start = 0
        private var lineNumber: Int64 = 0
        private var atEnd = false
        private var atStart = true
        /// The last byte moved into the current line (kept or not), to drop the `\r` of a cut line's `\r\n`.
        private var lastTaken: UInt8?

        init(descriptor: BlockingDescriptor, maxLineBytes: Int) {
            self.descriptor = descriptor
            self.maxLineBytes = maxLineBytes
        }

        /// The next line, or `nil` at the end of the input.
        /// - Throws: ``JSONLFileError`` if reading fails; `CancellationError` if the task was cancelled.
        public mutating func next() async throws -> Line? {
            var kept: [UInt8] = []
            var length = 0
            var scanFrom = start
            while true {
                if let newline = buffer[scanFrom...].firstIndex(of: 0x0A) {
                    take(upTo: newline, into: &kept, length: &length)
                    start = newline + 1
                    return finishLine(kept, length: length, isTerminated: true)
                }
                if atEnd {
                    take(upTo: buffer.count, into: &kept, length: &length)
                    start = buffer.count
                    if length == 0 && kept.isEmpty { return nil }
                    return finishLine(kept, length: length, isTerminated: false)
                }
                // Keep the unfinished line's start in the buffer only while it is within the limit.
                if buffer.count - start > maxLineBytes {
                    take(upTo: buffer.count, into: &kept, length: &length)
                    buffer.removeAll(keepingCapacity: true)
                    start = 0
                } else if start > 0 {
                    buffer.removeSubrange(0..<start)
                    start = 0
                }
                scanFrom = buffer.count
                let chunk = try await descriptor.read(upTo: 64 * 1024)
                if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
            }
        }

        /// Moves `buffer[start..<end]` into the line, keeping at most `maxLineBytes` bytes.
        private mutating func take(upTo end: Int, into kept: inout [UInt8], length: inout Int) {
            let room = Swift.max(0, maxLineBytes - kept.count)
            kept.append(contentsOf: buffer[start..<Swift.min(end, start + room)])
            if end > start { lastTaken = buffer[end - 1] }
            length += end - start
            start = end
        }

        private mutating func finishLine(_ bytes: [UInt8], length: Int, isTerminated: Bool) -> Line {
            lineNumber += 1
            var bytes = bytes
            var length = length
            if isTerminated, length > 0, lastTaken == 0x0D {
                if length == bytes.count { bytes.removeLast() }
                length -= 1
            }
            lastTaken = nil
            if atStart {
                atStart = false
                if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
                    bytes.removeFirst(3)
                    length -= 3
                }
            }
            return Line(number: lineNumber, bytes: bytes, length: length, isTerminated: isTerminated)
        }
    }
}
