public import Logging
import Synchronization

/// A log handler that keeps every line it gets, message and metadata, so tests can search them (for secrets,
/// for a warning).
public struct RecordingLogHandler: LogHandler {
    /// Where the lines go; share it between the handler and the test.
    public final class Store: Sendable {
        private let lines = Mutex<[String]>([])

        /// An empty store.
        public init() {}

        func append(_ line: String) {
            self.lines.withLock { $0.append(line) }
        }

        /// Every line so far, oldest first.
        public var all: [String] {
            self.lines.withLock { $0 }
        }
    }

    let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    /// A handler that appends to `store`.
    public init(store: Store) {
        self.store = store
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        self.store.append("\(event.level) \(event.message) \(merged) \(event.source) \(event.file):\(event.line)")
    }
}

extension Logger {
    /// A trace-level logger whose lines land in `store`.
    public static func recording(_ label: String, into store: RecordingLogHandler.Store) -> Logger {
        Logger(label: label) { _ in RecordingLogHandler(store: store) }
    }
}
