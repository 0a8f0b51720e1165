/// A strict, allocation-light JSON reader for job messages.
///
/// It exists instead of `JSONSerialization`/`JSONDecoder` because the job's `metadata` must be echoed back byte
/// for byte (a decoder would reorder keys and reformat numbers) and because it runs for every message on the hot
/// path: it validates the whole message (RFC 8259) in one pass, decodes only the fields a job uses and keeps
/// `metadata` as the slice of the input it was.
struct JobParser {
    /// Deepest nesting of arrays and objects accepted anywhere in a message.
    static let maxDepth = 128

    private struct SyntaxError: Error {
        var reason: String
        var offset: Int
    }

    /// A field's value as found in the message, before the job's own validation.
    private enum Found {
        case string(String)
        case object(Range<Int>)
        case null
        case other(typeName: String)
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Decodes and validates one message.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Job, InvalidJob> {
        if !isUTF8(bytes) {
            return .failure(InvalidJob(code: .notUTF8, message: "the message is not valid UTF-8"))
        }
        var parser = JobParser(bytes)
        do {
            return try parser.parseJob()
        } catch {
            return .failure(
                InvalidJob(
                    code: .notJSON,
                    message: "the message is not valid JSON: \(error.reason) at byte \(error.offset)"
                )
            )
        }
    }

    /// Whether `bytes` are one valid JSON value (with surrounding whitespace).
    static func isValidJSON(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard isUTF8(bytes) else { return false }
        var parser = JobParser(bytes)
        do {
            parser.skipWhitespace()
            try parser.skipValue(depth: 0)
            parser.skipWhitespace()
            return parser.index == bytes.count
        } catch {
            return false
        }
    }

    private static func isUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var ascii = true
        for byte in bytes where byte >= 0x80 {
            ascii = false
            break
        }
        return ascii || String(validating: bytes, as: UTF8.self) != nil
    }

    // MARK: - The job object

    private mutating func parseJob() throws(SyntaxError) -> Result<Job, InvalidJob> {
        skipWhitespace()
        guard index < bytes.count else { throw SyntaxError(reason: "empty message", offset: 0) }
        let first = bytes[index]
        guard first == UInt8(ascii: "{") else {
            try skipValue(depth: 0)
            try expectEnd()
            return .failure(
                InvalidJob(code: .notObject, message: "the message is \(Self.typeName(of: first)), not an object")
            )
        }
        var id: Found?
        var userID: Found?
        var query: Found?
        var op: Found?
        var metadata: Found?

        index += 1
        skipWhitespace()
        var more = peek() != UInt8(ascii: "}")
        if !more { index += 1 }
        while more {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw error("expected a field name") }
            let key = try parseKey()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
            switch key {
            case .id: id = try parseField()
            case .userID: userID = try parseField()
            case .query: query = try parseField()
            case .op: op = try parseField()
            case .metadata: metadata = try parseField()
            case .unknown: try skipValue(depth: 1)
            }
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                more = false
            default: throw error("expected ',' or '}'")
            }
        }
        try expectEnd()
        return validate(id: id, userID: userID, query: query, op: op, metadata: metadata)
    }

    private func validate(id: Found?, userID: Found?, query: Found?, op: Found?, metadata: Found?) -> Result<Job, InvalidJob> {
        let idValue: String
        switch Self.requiredString(id, field: "id", maxBytes: Job.maxIdentifierBytes) {
        case .success(let value): idValue = value
        case .failure(let invalid): return .failure(invalid)
        }
        let userValue: String
        switch Self.requiredString(userID, field: "userId", maxBytes: Job.maxIdentifierBytes) {
        case .success(let value): userValue = value
        case .failure(let invalid): return .failure(invalid)
        }
        let operation: Job.Operation
        switch op {
        case nil, .null:
            operation = .context
        case .string(let name):
            guard let known = Job.Operation(rawValue: name) else {
                return .failure(
                    InvalidJob(code: .unknownOp, field: "op", message: "field `op` must be \"context\" or \"summary\"")
                )
            }
            operation = known
        case .object:
            return .failure(Self.wrongType("op", expected: "a string", found: "an object"))
        case .other(let typeName):
            return .failure(Self.wrongType("op", expected: "a string", found: typeName))
        }
        var queryValue: String?
        if operation == .context {
            switch Self.requiredString(query, field: "query", maxBytes: Job.maxQueryBytes) {
            case .success(let value): queryValue = value
            case .failure(let invalid): return .failure(invalid)
            }
        }
        var metadataValue: RawJSON?
        switch metadata {
        case nil, .null:
            break
        case .object(let range):
            guard range.count <= Job.maxMetadataBytes else {
                return .failure(Self.tooLarge("metadata", bytes: range.count, limit: Job.maxMetadataBytes))
            }
            metadataValue = RawJSON(validatedBytes: Array(bytes[range]))
        case .string:
            return .failure(Self.wrongType("metadata", expected: "an object", found: "a string"))
        case .other(let typeName):
            return .failure(Self.wrongType("metadata", expected: "an object", found: typeName))
        }
        return .success(
            Job(id: idValue, userID: userValue, operation: operation, query: queryValue, metadata: metadataValue)
        )
    }

    private static func requiredString(_ found: Found?, field: String, maxBytes: Int) -> Result<String, InvalidJob> {
        switch found {
        case nil:
            return .failure(InvalidJob(code: .missingField, field: field, message: "required field `\(field)` is missing"))
        case .string(let value):
            let count = value.utf8.count
            if count == 0 {
                return .failure(InvalidJob(code: .emptyField, field: field, message: "field `\(field)` must not be empty"))
            }
            if count > maxBytes {
                return .failure(tooLarge(field, bytes: count, limit: maxBytes))
            }
            return .success(value)
        case .null:
            return .failure(wrongType(field, expected: "a string", found: "null"))
        case .object:
            return .failure(wrongType(field, expected: "a string", found: "an object"))
        case .other(let typeName):
            return .failure(wrongType(field, expected: "a string", found: typeName))
        }
    }

    private static func wrongType(_ field: String, expected: String, found: String) -> InvalidJob {
        InvalidJob(code: .wrongType, field: field, message: "field `\(field)` must be \(expected), not \(found)")
    }

    private static func tooLarge(_ field: String, bytes: Int, limit: Int) -> InvalidJob {
        InvalidJob(
            code: .fieldTooLarge,
            field: field,
            message: "field `\(field)` is \(bytes) bytes, over the limit of \(limit)"
        )
    }

    private static func typeName(of firstByte: UInt8) -> String {
        switch firstByte {
        case UInt8(ascii: "\""): "a string"
        case UInt8(ascii: "{"): "an object"
        case UInt8(ascii: "["): "an array"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): "a boolean"
        case UInt8(ascii: "n"): "null"
        default: "a number"
        }
    }

    // MARK: - Fields

    private enum Key {
        case id, userID, query, op, metadata, unknown
    }

    private mutating func parseKey() throws(SyntaxError) -> Key {
        let start = index + 1
        let hasEscapes = try skipString()
        let raw = UnsafeBufferPointer(rebasing: bytes[start ..< index - 1])
        if hasEscapes {
            index = start - 1
            switch try parseString() {
            case "id": return .id
            case "userId": return .userID
            case "query": return .query
            case "op": return .op
            case "metadata": return .metadata
            default: return .unknown
            }
        }
        switch raw.count {
        case 2:
            if raw.elementsEqual("id".utf8) { return .id }
            if raw.elementsEqual("op".utf8) { return .op }
        case 5:
            if raw.elementsEqual("query".utf8) { return .query }
        case 6:
            if raw.elementsEqual("userId".utf8) { return .userID }
        case 8:
            if raw.elementsEqual("metadata".utf8) { return .metadata }
        default:
            break
        }
        return .unknown
    }

    private mutating func parseField() throws(SyntaxError) -> Found {
        switch peek() {
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "{"):
            let start = index
            try skipValue(depth: 1)
            return .object(start ..< index)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case let byte?:
            try skipValue(depth: 1)
            return .other(typeName: Self.typeName(of: byte))
        case nil:
            throw error("expected a value")
        }
    }

    // MARK: - JSON grammar

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private func error(_ reason: String) -> SyntaxError {
        SyntaxError(reason: index < bytes.count ? reason : "unexpected end (\(reason))", offset: index)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return
            }
        }
    }

    private mutating func expectEnd() throws(SyntaxError) {
        skipWhitespace()
        guard index == bytes.count else { throw error("unexpected characters after the JSON value") }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(SyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw SyntaxError(reason: "invalid literal", offset: index) }
        let start = literal.utf8Start
        for offset in 0 ..< count where bytes[index + offset] != start[offset] {
            throw SyntaxError(reason: "invalid literal", offset: index)
        }
        index += count
    }

    private mutating func skipValue(depth: Int) throws(SyntaxError) {
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

    private mutating func skipDigits() -> Int {
        let start = index
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            index += 1
        }
        return index - start
    }

    private mutating func skipNumber() throws(SyntaxError) {
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

    /// Skips a string starting at its opening quote; returns whether it contains escapes.
    private mutating func skipString() throws(SyntaxError) -> Bool {
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

    /// Reads a string starting at its opening quote.
    private mutating func parseString() throws(SyntaxError) -> String {
        let start = index + 1
        let hasEscapes = try skipString()
        if !hasEscapes {
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< index - 1]), as: UTF8.self)
        }
        let end = index - 1
        index = start
        var decoded: [UInt8] = []
        decoded.reserveCapacity(end - start)
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                let scalar = try readEscape()
                decoded.append(contentsOf: scalar.utf8)
            } else {
                decoded.append(byte)
                index += 1
            }
        }
        index = end + 1
        return String(decoding: decoded, as: UTF8.self)
    }

    /// Reads one escape sequence starting at its backslash.
    private mutating func readEscape() throws(SyntaxError) -> Unicode.Scalar {
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

    private mutating func readHex4() throws(SyntaxError) -> UInt16 {
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
