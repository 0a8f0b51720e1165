#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JSON
public import Logging

/// A swift-log handler that writes one JSON object per line, for log shippers (Loki, Elasticsearch, CloudWatch):
///
/// ```json
/// {"timestamp":"2025-05-01T12:00:00.123456Z","level":"info","label":"mioctx","message":"worker drained","job.id":"j-1"}
/// ```
///
/// `timestamp` is RFC 3339 in UTC with microseconds, `level` the swift-log level, `label` the logger's label,
/// `message` the text. Metadata is flattened into the same object: nested dictionaries become dotted keys
/// (`kafka.partition`), arrays become JSON arrays of strings, every value is a string. A metadata key equal to one
/// of the four fixed keys is written as `metadata.<key>`. A line is written with a single `write(2)`, so lines of
/// concurrent loggers never interleave.
public struct JSONLogHandler: LogHandler {
    /// Where the lines go. Each call receives one complete line, newline included.
    public typealias Output = @Sendable (_ line: String) -> Void

    /// The logger's label.
    public let label: String
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let output: Output

    /// Creates a handler writing to `output`.
    ///
    /// - Parameters:
    ///   - label: the logger's label.
    ///   - metadataProvider: contextual metadata added to every line (optional).
    ///   - output: receives each line.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, output: @escaping Output) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    /// A handler writing to standard error (standard output stays for what scripts read).
    ///
    /// - Parameters:
    ///   - label: the logger's label.
    ///   - metadataProvider: contextual metadata added to every line (optional).
    /// - Returns: the handler.
    public static func standardError(label: String, metadataProvider: Logger.MetadataProvider? = nil) -> JSONLogHandler {
        JSONLogHandler(label: label, metadataProvider: metadataProvider) { line in
            var line = line
            line.withUTF8 { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() {
            merged.merge(provided) { _, new in new }
        }
        if let explicit = event.metadata {
            merged.merge(explicit) { _, new in new }
        }
        output(Self.line(timestamp: Self.timestamp(), level: event.level, label: label, message: "\(event.message)", metadata: merged))
    }

    static let fixedKeys: Set<String> = ["timestamp", "level", "label", "message"]

    /// One JSON line (with its newline), keys in a stable order: the fixed keys, then metadata sorted by key.
    static func line(timestamp: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var fields: [(String, String)] = []
        for (key, value) in metadata {
            flatten(value, key: fixedKeys.contains(key) ? "metadata.\(key)" : key, into: &fields)
        }
        fields.sort { $0.0 < $1.0 }
        var out = "{\"timestamp\":"
        appendQuoted(timestamp, to: &out)
        out += ",\"level\":"
        appendQuoted(level.rawValue, to: &out)
        out += ",\"label\":"
        appendQuoted(label, to: &out)
        out += ",\"message\":"
        appendQuoted(message, to: &out)
        for (key, json) in fields {
            out += ","
            appendQuoted(key, to: &out)
            out += ":"
            out += json
        }
        out += "}\n"
        return out
    }

    /// Adds `(key, JSON value)` pairs: strings as JSON strings, arrays as arrays of strings, dictionaries by dotted keys.
    private static func flatten(_ value: Logger.Metadata.Value, key: String, into fields: inout [(String, String)]) {
        switch value {
        case .string(let text):
            var json = ""
            appendQuoted(text, to: &json)
            fields.append((key, json))
        case .stringConvertible(let convertible):
            var json = ""
            appendQuoted(convertible.description, to: &json)
            fields.append((key, json))
        case .dictionary(let dictionary):
            for (subkey, subvalue) in dictionary {
                flatten(subvalue, key: "\(key).\(subkey)", into: &fields)
            }
        case .array(let values):
            var json = "["
            for (index, element) in values.enumerated() {
                if index > 0 { json += "," }
                appendQuoted(element.description, to: &json)
            }
            json += "]"
            fields.append((key, json))
        }
    }

    /// Appends `text` as a JSON string literal, escaped by the package's one escaper (``JSONString``).
    static func appendQuoted(_ text: String, to out: inout String) {
        out += JSONString.quoted(text)
    }

    /// Now, as RFC 3339 in UTC with microseconds: `2025-05-01T12:00:00.123456Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return rfc3339(seconds: now.tv_sec, nanoseconds: Int(now.tv_nsec))
    }

    static func rfc3339(seconds: Int, nanoseconds: Int) -> String {
        var time = seconds
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let micros = pad(Int32(nanoseconds / 1000), 6)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(micros)Z"
    }
}
