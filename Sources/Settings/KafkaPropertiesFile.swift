import Foundation

/// A librdkafka client properties file, in the format the Confluent clients read (`client.properties`, Java's
/// `.properties`): one `name=value` per line (`name: value` and `name value` too), `#` and `!` comments, blank
/// lines, a trailing backslash continuing a line, and Java's escapes (`\t`, `\n`, `\\`, `\=`, `\:`, `\uXXXX`).
///
/// Given with `--kafka-config FILE` (or `MIOCTX_KAFKA_CONFIG`); its properties go under `kafka.properties`, over
/// the YAML file's and under the environment's and the flags'. The same properties are refused as anywhere else.
public struct KafkaPropertiesFile: Sendable, Equatable {
    /// The properties, by name, in the file's order (a name given twice: the last one).
    public let properties: [(name: String, value: String)]

    /// Parses a properties file's text.
    /// - Parameter text: The file's contents.
    /// - Throws: ``KafkaPropertiesFileError`` naming the first line without a name or with an invalid escape.
    public init(parsing text: String) throws(KafkaPropertiesFileError) {
        var properties: [(name: String, value: String)] = []
        for (number, line) in Self.logicalLines(text) {
            let (name, value) = try Self.entry(line, line: number)
            properties.removeAll { $0.name == name }
            properties.append((name, value))
        }
        self.properties = properties
    }

    /// Whether two files hold the same properties in the same order.
    /// - Parameters:
    ///   - left: A file.
    ///   - right: A file.
    /// - Returns: Whether they are equal.
    public static func == (left: KafkaPropertiesFile, right: KafkaPropertiesFile) -> Bool {
        left.properties.elementsEqual(right.properties) { $0.name == $1.name && $0.value == $1.value }
    }

    /// The lines that hold an entry, continuations joined, with the number of the line each starts on.
    private static func logicalLines(_ text: String) -> [(Int, Substring)] {
        var lines: [(Int, Substring)] = []
        var pending: (start: Int, text: String)?
        // Java's line terminators: \n, \r and \r\n (one Character in Swift).
        let physical = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
        for (index, raw) in physical.enumerated() {
            let line = raw.drop { $0 == " " || $0 == "\t" || $0 == "\u{0C}" }
            if pending == nil, line.isEmpty || line.hasPrefix("#") || line.hasPrefix("!") { continue }
            // A line ending in an odd number of backslashes continues on the next one.
            let trailing = line.reversed().prefix { $0 == "\\" }.count
            let continues = trailing % 2 == 1
            let body = continues ? line.dropLast() : line
            var current = pending ?? (index + 1, "")
            current.text += body
            if continues {
                pending = current
            } else {
                pending = nil
                lines.append((current.start, Substring(current.text)))
            }
        }
        if let pending { lines.append((pending.start, Substring(pending.text))) }
        return lines
    }

    /// One entry: the name up to the first unescaped `=`, `:` or blank, then the value with its escapes read.
    private static func entry(_ line: Substring, line number: Int) throws(KafkaPropertiesFileError) -> (String, String) {
        var name = ""
        var index = line.startIndex
        var escaped = false
        while index < line.endIndex {
            let character = line[index]
            if escaped {
                name.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "=" || character == ":" || character == " " || character == "\t" {
                break
            } else {
                name.append(character)
            }
            index = line.index(after: index)
        }
        var rest = line[index...].drop { $0 == " " || $0 == "\t" }
        if let first = rest.first, first == "=" || first == ":" {
            rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" }
        }
        guard !name.isEmpty else {
            throw KafkaPropertiesFileError(line: number, problem: "has no property name")
        }
        return (name, try unescape(rest, line: number))
    }

    private static func unescape(_ text: Substring, line: Int) throws(KafkaPropertiesFileError) -> String {
        var value = ""
        var characters = text.makeIterator()
        while let character = characters.next() {
            guard character == "\\" else {
                value.append(character)
                continue
            }
            guard let escaped = characters.next() else { break }
            switch escaped {
            case "t": value.append("\t")
            case "n": value.append("\n")
            case "r": value.append("\r")
            case "f": value.append("\u{0C}")
            case "u":
                var hex = ""
                for _ in 0..<4 {
                    guard let digit = characters.next() else { break }
                    hex.append(digit)
                }
                guard hex.count == 4, let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else {
                    throw KafkaPropertiesFileError(line: line, problem: "has an invalid \\u escape")
                }
                value.unicodeScalars.append(scalar)
            default: value.append(escaped)
            }
        }
        return value
    }
}

/// A properties file line that cannot be read.
public struct KafkaPropertiesFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The line's number, from 1.
    public let line: Int
    /// What is wrong with it.
    public let problem: String

    /// A problem on a line.
    /// - Parameters:
    ///   - line: The line's number, from 1.
    ///   - problem: What is wrong with it, such as `has no property name`.
    public init(line: Int, problem: String) {
        self.line = line
        self.problem = problem
    }

    /// `line N has no property name`.
    public var description: String { "line \(line) \(problem)" }
}
