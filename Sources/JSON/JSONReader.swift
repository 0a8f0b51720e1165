/// A strict, allocation-light cursor over UTF-8 JSON text (RFC 8259): the one JSON reader of the package.
///
/// It validates as it skips and decodes only the strings asked for, so a caller reads the few fields it uses in
/// one pass and keeps the rest as slices of the input (a job's `metadata` is echoed byte for byte). Job messages
/// (the pipeline's `JobParser`) and Mio's context answers (`ContextAnswerReader`) are read with it on the hot
/// path; its methods are inlinable so that they compile into those loops as if they were written there.
public struct JSONReader {
    /// Why the text is not valid JSON, and where.
    public struct SyntaxError: Error, Sendable, Hashable {
        /// What is wrong, e.g. `expected ':'` or `unexpected end (unterminated string)`.
        public var reason: String
        /// The byte offset where it was found.
        public var offset: Int

        /// Creates an error.
        /// - Parameters:
        ///   - reason: What is wrong.
        ///   - offset: The byte offset where it was found.
        @inlinable
        public init(reason: String, offset: Int) {
            self.reason = reason
            self.offset = offset
        }
    }

    /// Deepest nesting of arrays and objects accepted.
    public static let maxDepth = 128

    /// The text.
    public let bytes: UnsafeBufferPointer<UInt8>
    /// The offset of the next byte to read.
    public var index = 0

    /// Creates a reader at the start of `bytes`.
    /// - Parameter bytes: UTF-8 JSON text; it must outlive the reader.
    @inlinable
    public init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Whether `bytes` are valid UTF-8 (checked quickly when they are ASCII).
    /// - Parameter bytes: The bytes.
    /// - Returns: `true` for valid UTF-8.
    @inlinable
    public static func isUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var ascii = true
        for byte in bytes where byte >= 0x80 {
            ascii = false
            break
        }
        return ascii || String(validating: bytes, as: UTF8.self) != nil
    }

    /// Whether `bytes` are valid UTF-8 holding one valid JSON value (with surrounding whitespace).
    /// - Parameter bytes: The bytes.
    /// - Returns: `true` for one valid JSON value.
    @inlinable
    public static func isValidJSON(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard isUTF8(bytes) else { return false }
        var reader = JSONReader(bytes)
        do {
            reader.skipWhitespace()
            try reader.skipValue(depth: 0)
            reader.skipWhitespace()
            return reader.index == bytes.count
        } catch {
            return false
        }
    }

    // MARK: - Bytes and errors

    /// The next byte, or `nil` at the end.
    /// - Returns: The byte at ``index``.
    @inlinable
    public func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    /// Consumes `byte` if it is the next one.
    /// - Parameter byte: The expected byte.
    /// - Returns: Whether it was there (and consumed).
    @inlinable
    public mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// An error at the current offset; at the end of the text, the reason reads `unexpected end (reason)`.
    /// - Parameter reason: What is wrong.
    /// - Returns: The error.
    @inlinable
    public func error(_ reason: String) -> SyntaxError {
        SyntaxError(reason: index < bytes.count ? reason : "unexpected end (\(reason))", offset: index)
    }

    // MARK: - Grammar

    /// Skips spaces, tabs and line breaks.
    @inlinable
    public mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return
            }
        }
    }

    /// Checks that only whitespace is left.
    /// - Throws: ``SyntaxError`` when something else follows.
    @inlinable
    public mutating func expectEnd() throws(SyntaxError) {
        skipWhitespace()
        guard index == bytes.count else { throw error("unexpected characters after the JSON value") }
    }

    /// Consumes `literal` (`true`, `false`, `null`).
    /// - Parameter literal: The literal expected at ``index``.
    /// - Throws: ``SyntaxError`` when it is not there.
    @inlinable
    public mutating func expectLiteral(_ literal: StaticString) throws(SyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw SyntaxError(reason: "invalid literal", offset: index) }
        let start = literal.utf8Start
        for offset in 0 ..< count where bytes[index + offset] != start[offset] {
            throw SyntaxError(reason: "invalid literal", offset: index)
        }
        index += count
    }

    /// Skips one value, validating it.
    /// - Parameter depth: The nesting depth of the value (0 for a whole document).
    /// - Throws: ``SyntaxError`` when the value is invalid or nested deeper than ``maxDepth``.
    @inlinable
    public mutating func skipValue(depth: Int) throws(SyntaxError) {
        guard let byte = peek() else { throw error("expected a value") }
        switch byte {
        case UInt8(ascii: "{"):
            guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth) levels") }
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                index += 1
                return
            }
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw error("expected a field name") }
                _ = try skipString()
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { throw error("expected ':'") }
                index += 1
                skipWhitespace()
                try skipValue(depth: depth + 1)
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"):
                    index += 1
                    return
                default: throw error("expected ',' or '}'")
                }
            }
        case UInt8(ascii: "["):
            guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth) levels") }
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                index += 1
                return
            }
            while true {
                skipWhitespace()
                try skipValue(depth: depth + 1)
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return
                default: throw error("expected ',' or ']'")
                }
            }
        case UInt8(ascii: "\""):
            _ = try skipString()
        case UInt8(ascii: "t"):
            try expectLiteral("true")
        case UInt8(ascii: "f"):
            try expectLiteral("false")
        case UInt8(ascii: "n"):
            try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"):
            try skipNumber()
        default:
            throw error("expected a value")
        }
    }

    @inlinable
    mutating func skipDigits() -> Int {
        let start = index
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            index += 1
        }
        return index - start
    }

    /// Skips a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
    /// - Throws: ``SyntaxError`` when it is not one.
    @inlinable
    public mutating func skipNumber() throws(SyntaxError) {
        if peek() == UInt8(ascii: "-") { index += 1 }
        if peek() == UInt8(ascii: "0") {
            index += 1
        } else if skipDigits() == 0 {
            throw error("invalid number")
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
    }

    // MARK: - Strings

    /// Skips a string starting at its opening quote, validating its escapes.
    /// - Returns: Whether it contains escapes.
    /// - Throws: ``SyntaxError`` for a control character, an invalid escape or a missing closing quote.
    @inlinable
    public mutating func skipString() throws(SyntaxError) -> Bool {
        index += 1
        var hasEscapes = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return hasEscapes
            }
            if byte < 0x20 { throw error("control character in a string") }
            if byte == UInt8(ascii: "\\") {
                hasEscapes = true
                _ = try readEscape()
            } else {
                index += 1
            }
        }
        throw error("unterminated string")
    }

    /// Reads a string starting at its opening quote, unescaped.
    /// - Parameter validatingUTF8: Whether to refuse a string whose bytes are not valid UTF-8 (`false` when the
    ///   whole text was checked with ``isUTF8(_:)`` already: invalid bytes would then be replaced).
    /// - Returns: The string.
    /// - Throws: ``SyntaxError`` when it is not a valid string.
    @inlinable
    public mutating func readString(validatingUTF8: Bool = false) throws(SyntaxError) -> String {
        let quote = index
        let start = index + 1
        let hasEscapes = try skipString()
        let end = index - 1
        if !hasEscapes {
            let raw = UnsafeBufferPointer(rebasing: bytes[start ..< end])
            if validatingUTF8 {
                guard let text = String(validating: raw, as: UTF8.self) else {
                    throw SyntaxError(reason: "invalid UTF-8 in a string", offset: quote)
                }
                return text
            }
            return String(decoding: raw, as: UTF8.self)
        }
        // Validated by skipString: decoding cannot fail. Runs without escapes are copied in one go.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(end - start)
        index = start
        while index < end {
            var runEnd = index
            while runEnd < end, bytes[runEnd] != UInt8(ascii: "\\") {
                runEnd += 1
            }
            if runEnd > index {
                decoded.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index ..< runEnd]))
                index = runEnd
                continue
            }
            let scalar = try readEscape()
            decoded.append(contentsOf: scalar.utf8)
        }
        index = end + 1
        if validatingUTF8 {
            guard let text = String(validating: decoded, as: UTF8.self) else {
                throw SyntaxError(reason: "invalid UTF-8 in a string", offset: quote)
            }
            return text
        }
        return String(decoding: decoded, as: UTF8.self)
    }

    /// Reads one escape sequence starting at its backslash.
    @inlinable
    mutating func readEscape() throws(SyntaxError) -> Unicode.Scalar {
        index += 1
        guard let byte = peek() else { throw error("unterminated escape") }
        index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let unit = try readHex4()
            switch unit {
            case 0xD800 ... 0xDBFF:
                guard peek() == UInt8(ascii: "\\") else { throw error("unpaired surrogate") }
                index += 1
                guard peek() == UInt8(ascii: "u") else { throw error("unpaired surrogate") }
                index += 1
                let low = try readHex4()
                guard (0xDC00 ... 0xDFFF).contains(low) else { throw error("unpaired surrogate") }
                let value = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                return Unicode.Scalar(value)!
            case 0xDC00 ... 0xDFFF:
                throw error("unpaired surrogate")
            default:
                return Unicode.Scalar(unit)!
            }
        default:
            throw error("invalid escape")
        }
    }

    @inlinable
    mutating func readHex4() throws(SyntaxError) -> UInt16 {
        guard bytes.count - index >= 4 else { throw error("invalid \\u escape") }
        var value: UInt16 = 0
        for _ in 0 ..< 4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }
}
