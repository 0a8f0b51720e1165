#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file (or standard input/output) that failed to open, read, write or sync.
///
/// The description names the path, the operation and the system error; it never quotes file contents.
public struct JSONLFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What failed.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case open
            case read
            case write
            case sync
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The file could not be opened (or created).
        public static let open = Code(.open)
        /// Reading failed.
        public static let read = Code(.read)
        /// Writing failed.
        public static let write = Code(.write)
        /// Flushing to stable storage (`fsync`) failed.
        public static let sync = Code(.sync)

        /// `open`, `read`, `write` or `sync`.
        public var description: String { value.rawValue }
    }

    /// What failed.
    public var code: Code
    /// The path, or `-` for standard input/output.
    public var path: String
    /// The system error number (`errno`).
    public var systemError: Int32

    /// Creates an error.
    /// - Parameters:
    ///   - code: What failed.
    ///   - path: The path.
    ///   - systemError: The system error number.
    public init(code: Code, path: String, systemError: Int32) {
        self.code = code
        self.path = path
        self.systemError = systemError
    }

    /// `cannot write results.jsonl: No space left on device (errno 28)`.
    public var description: String {
        let name = path == "-" ? "standard \(code == .read ? "input" : "output")" : path
        return "cannot \(code) \(name): \(String(cString: strerror(systemError))) (errno \(systemError))"
    }
}
