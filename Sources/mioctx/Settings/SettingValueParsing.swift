import Foundation

/// Parsers from the text of a setting (every source delivers text) to its typed value. A failure is the
/// message that follows the setting's name, without the offending value (the loader quotes it unless secret).
enum SettingValueParsing {
    /// A whole number in `range`.
    static func integer(_ text: String, in range: ClosedRange<Int>) -> Result<Int, SettingParseFailure> {
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            return .failure("must be a whole number between \(range.lowerBound) and \(range.upperBound)")
        }
        guard range.contains(value) else {
            return .failure("must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return .success(value)
    }

    /// A finite number in `range` (both ends included).
    static func number(_ text: String, in range: ClosedRange<Double>) -> Result<Double, SettingParseFailure> {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            return .failure("must be a number between \(format(range.lowerBound)) and \(format(range.upperBound))")
        }
        guard range.contains(value) else {
            return .failure("must be between \(format(range.lowerBound)) and \(format(range.upperBound))")
        }
        return .success(value)
    }

    /// A duration: `500ms`, `30s`, `2m`, `1h`, or a plain number of seconds (`30`, `0.5`), within `range`.
    static func duration(_ text: String, in range: ClosedRange<Duration>) -> Result<Duration, SettingParseFailure> {
        let bounds = "between \(format(range.lowerBound)) and \(format(range.upperBound))"
        guard let value = parseDuration(text) else {
            return .failure("must be a duration such as 500ms, 30s, 2m or a number of seconds, \(bounds)")
        }
        guard range.contains(value) else { return .failure("must be \(bounds)") }
        return .success(value)
    }

    /// One of `values`.
    static func choice<T>(_ text: String, _ values: [(String, T)]) -> Result<T, SettingParseFailure> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let match = values.first(where: { $0.0 == trimmed }) else {
            return .failure("must be one of \(values.map(\.0).joined(separator: ", "))")
        }
        return .success(match.1)
    }

    /// Text that is not empty once surrounding white space is removed (which it is).
    static func nonEmpty(_ text: String) -> Result<String, SettingParseFailure> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? .failure("must not be empty") : .success(trimmed)
    }

    /// An absolute `http` or `https` URL with a host.
    static func httpURL(_ text: String) -> Result<String, SettingParseFailure> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let components = URLComponents(string: trimmed),
            let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = components.host, !host.isEmpty
        else {
            return .failure("must be an absolute http:// or https:// URL")
        }
        return .success(trimmed)
    }

    /// A Kafka topic name: 1-249 characters of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    static func topic(_ text: String) -> Result<String, SettingParseFailure> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard (1...249).contains(trimmed.count), trimmed.allSatisfy(allowed.contains), trimmed != ".", trimmed != ".."
        else {
            return .failure("must be a Kafka topic name (1-249 characters of A-Z a-z 0-9 . _ -)")
        }
        return .success(trimmed)
    }

    /// A `bootstrap.servers` list: comma-separated `host:port` entries (librdkafka also takes
    /// `PROTOCOL://host:port`), none empty.
    static func bootstrapServers(_ text: String) -> Result<String, SettingParseFailure> {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard !entries.contains(where: { $0.isEmpty || $0.contains(" ") }) else {
            return .failure("must be a comma-separated list of host:port")
        }
        return .success(entries.joined(separator: ","))
    }

    /// Parses a duration, or returns `nil`.
    static func parseDuration(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(trimmed)
        var scale = 1.0
        if let unit = units.first(where: { trimmed.hasSuffix($0.suffix) }) {
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.seconds
        }
        // Digits and at most one point only: no signs, exponents, "inf" or "nan".
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
            number.filter({ $0 == "." }).count <= 1, let value = Double(number)
        else {
            return nil
        }
        let seconds = value * scale
        guard seconds <= 1e9 else { return nil }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// `500ms`, `30s`, `2m`, `1h`, or fractional seconds (`0.0005s`) when no whole unit fits: a spelling that
    /// ``parseDuration(_:)`` reads back.
    static func format(_ duration: Duration) -> String {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        if nanoseconds == 0 { return "0s" }
        if nanoseconds % 3_600_000_000_000 == 0 { return "\(nanoseconds / 3_600_000_000_000)h" }
        if nanoseconds % 60_000_000_000 == 0 { return "\(nanoseconds / 60_000_000_000)m" }
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000)s" }
        if nanoseconds % 1_000_000 == 0 { return "\(nanoseconds / 1_000_000)ms" }
        return format(Double(nanoseconds) / 1e9) + "s"
    }

    /// A number without a needless `.0`.
    static func format(_ number: Double) -> String {
        if number == number.rounded(), abs(number) < 1e15 { return String(Int64(number)) }
        return String(number)
    }
}

/// Why a setting's text was refused: the text after "key: " in the message.
struct SettingParseFailure: Error, Sendable, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    /// For example `must be between 1 and 100000`.
    var message: String

    init(stringLiteral value: String) {
        message = value
    }

    init(_ message: String) {
        self.message = message
    }
}
