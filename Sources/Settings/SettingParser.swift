import Foundation

/// Parses and validates the text of a setting (every layer delivers text) into its typed value. A failure is the
/// message that follows the setting's name, without the offending value (the loader quotes it unless secret).
public struct SettingParser<Value: Sendable>: Sendable {
    /// Parses `text`.
    public let parse: @Sendable (String) -> Result<Value, SettingParseFailure>

    /// A parser from a function.
    /// - Parameter parse: Parses and validates a value.
    public init(_ parse: @escaping @Sendable (String) -> Result<Value, SettingParseFailure>) {
        self.parse = parse
    }

    /// A parser that, after this one, maps the value with `transform`.
    /// - Parameter transform: Applied to an accepted value.
    /// - Returns: The parser.
    public func map<Other: Sendable>(_ transform: @escaping @Sendable (Value) -> Other) -> SettingParser<Other> {
        SettingParser<Other> { parse($0).map(transform) }
    }
}

extension SettingParser where Value == Int {
    /// A whole number in `range`.
    /// - Parameter range: The values accepted.
    /// - Returns: The parser.
    public static func integer(in range: ClosedRange<Int>) -> Self { Self { SettingValueParsing.integer($0, in: range) } }

    /// A topic's replication factor: 1 to 64, or -1 for the brokers' default.
    public static var replicationFactor: Self {
        Self { text in
            SettingValueParsing.integer(text, in: -1...64).flatMap { value in
                value == 0 ? .failure("must be -1 (the brokers' default) or 1 to 64") : .success(value)
            }
        }
    }
}

extension SettingParser where Value == Double {
    /// A finite number in `range`.
    /// - Parameter range: The values accepted.
    /// - Returns: The parser.
    public static func number(in range: ClosedRange<Double>) -> Self { Self { SettingValueParsing.number($0, in: range) } }

    /// A number without a needless `.0`.
    public static var format: @Sendable (Double) -> String { { SettingValueParsing.format($0) } }
}

extension SettingParser where Value == Duration {
    /// A duration (`500ms`, `30s`, `2m`, `1h` or seconds) in `range`.
    /// - Parameter range: The values accepted.
    /// - Returns: The parser.
    public static func duration(in range: ClosedRange<Duration>) -> Self {
        Self { SettingValueParsing.duration($0, in: range) }
    }

    /// `500ms`, `30s`, `2m`, `1h`: a spelling the parser reads back.
    public static var format: @Sendable (Duration) -> String { { SettingValueParsing.format($0) } }
}

extension SettingParser where Value == Bool {
    /// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`), in any case.
    public static var boolean: Self {
        Self { text in
            switch text.trimmingCharacters(in: .whitespaces).lowercased() {
            case "true", "yes", "on", "1": .success(true)
            case "false", "no", "off", "0": .success(false)
            default: .failure("must be true or false")
            }
        }
    }
}

extension SettingParser where Value == String {
    /// Text that is not empty once surrounding white space is removed (which it is).
    public static var nonEmpty: Self { Self { SettingValueParsing.nonEmpty($0) } }
    /// An absolute `http` or `https` URL with a host.
    public static var httpURL: Self { Self { SettingValueParsing.httpURL($0) } }
    /// A Kafka topic name.
    public static var topic: Self { Self { SettingValueParsing.topic($0) } }
    /// A `bootstrap.servers` list of `host:port`.
    public static var bootstrapServers: Self { Self { SettingValueParsing.bootstrapServers($0) } }
}

extension SettingParser where Value == [String] {
    /// Host names separated by commas (empty: none), lowercased.
    public static var hostList: Self {
        Self { text in
            let hosts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                .filter { !$0.isEmpty }
            guard hosts.allSatisfy({ $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" } }) else {
                return .failure("must be host names separated by commas, such as mio-simulator")
            }
            return .success(hosts)
        }
    }
}

extension SettingParser where Value: CaseIterable & RawRepresentable<String> {
    /// One of the type's cases, by raw value.
    public static var cases: Self {
        let values = Value.allCases.map { ($0.rawValue, $0) }
        return Self { SettingValueParsing.choice($0, values) }
    }
}

extension SettingParser {
    /// One of `values`, by name.
    /// - Parameter values: The names and their values, in the order messages list them.
    /// - Returns: The parser.
    public static func choice(_ values: [(String, Value)]) -> Self {
        Self { SettingValueParsing.choice($0, values) }
    }
}

/// The parsing functions behind ``SettingParser``.
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
    static func choice<T: Sendable>(_ text: String, _ values: [(String, T)]) -> Result<T, SettingParseFailure> {
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

    /// An https URL, or an http URL whose host is a loopback address or one of `plainHosts`: anything else would
    /// send a client secret, codes or tokens in clear text.
    static func secureURL(_ text: String, plainHosts: [String] = []) -> Result<String, SettingParseFailure> {
        httpURL(text).flatMap { url in
            guard let components = URLComponents(string: url), let host = components.host?.lowercased() else {
                return .failure("must be an absolute http:// or https:// URL")
            }
            if components.scheme?.lowercased() == "https" || isLoopback(host: host) || plainHosts.contains(host) {
                return .success(url)
            }
            return .failure(SettingParseFailure(
                "must be https:// (http:// only to a loopback address such as 127.0.0.1: tokens and the client "
                    + "secret would cross the network in clear text)"
            ))
        }
    }

    /// Whether `host` is a loopback name or address.
    static func isLoopback(host: String) -> Bool {
        let host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
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
public struct SettingParseFailure: Error, Sendable, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    /// For example `must be between 1 and 100000`.
    public var message: String

    /// A failure from a literal.
    /// - Parameter value: The message.
    public init(stringLiteral value: String) {
        message = value
    }

    /// A failure.
    /// - Parameter message: The message.
    public init(_ message: String) {
        self.message = message
    }
}
