import JSON

/// Reads job messages with the package's JSON reader (``JSONReader``) instead of `JSONSerialization`/`JSONDecoder`.
///
/// The job's `metadata` must be echoed back byte for byte (a decoder would reorder keys and reformat numbers), and
/// this runs for every message on the hot path: it validates the whole message (RFC 8259) in one pass, decodes
/// only the fields a job uses and keeps `metadata` as the slice of the input it was.
struct JobParser {
    private typealias SyntaxError = JSONReader.SyntaxError

    /// A field's value as found in the message, before the job's own validation.
    private enum Found {
        case string(String)
        case object(Range<Int>)
        case null
        case other(typeName: String)
    }

    private var reader: JSONReader

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        reader = JSONReader(bytes)
    }

    /// Decodes and validates one message.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Job, InvalidJob> {
        if !JSONReader.isUTF8(bytes) {
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

    // MARK: - The job object

    private mutating func parseJob() throws(SyntaxError) -> Result<Job, InvalidJob> {
        reader.skipWhitespace()
        guard reader.index < reader.bytes.count else { throw SyntaxError(reason: "empty message", offset: 0) }
        let first = reader.bytes[reader.index]
        guard first == UInt8(ascii: "{") else {
            try reader.skipValue(depth: 0)
            try reader.expectEnd()
            return .failure(
                InvalidJob(code: .notObject, message: "the message is \(Self.typeName(of: first)), not an object")
            )
        }
        var id: Found?
        var userID: Found?
        var query: Found?
        var op: Found?
        var metadata: Found?
        // The first field given twice: last-value-wins would let two readers of one message disagree on the user.
        var repeated: String?

        reader.index += 1
        reader.skipWhitespace()
        var more = reader.peek() != UInt8(ascii: "}")
        if !more { reader.index += 1 }
        while more {
            reader.skipWhitespace()
            guard reader.peek() == UInt8(ascii: "\"") else { throw reader.error("expected a field name") }
            let key = try parseKey()
            reader.skipWhitespace()
            guard reader.peek() == UInt8(ascii: ":") else { throw reader.error("expected ':'") }
            reader.index += 1
            reader.skipWhitespace()
            switch key {
            case .id:
                if id != nil { repeated = repeated ?? "id" }
                id = try parseField()
            case .userID:
                if userID != nil { repeated = repeated ?? "userId" }
                userID = try parseField()
            case .query:
                if query != nil { repeated = repeated ?? "query" }
                query = try parseField()
            case .op:
                if op != nil { repeated = repeated ?? "op" }
                op = try parseField()
            case .metadata:
                if metadata != nil { repeated = repeated ?? "metadata" }
                metadata = try parseField()
            case .unknown: try reader.skipValue(depth: 1)
            }
            reader.skipWhitespace()
            switch reader.peek() {
            case UInt8(ascii: ","): reader.index += 1
            case UInt8(ascii: "}"):
                reader.index += 1
                more = false
            default: throw reader.error("expected ',' or '}'")
            }
        }
        try reader.expectEnd()
        if let repeated {
            return .failure(
                InvalidJob(code: .duplicateField, field: repeated, message: "field `\(repeated)` appears more than once")
            )
        }
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
            metadataValue = RawJSON(validatedBytes: Array(reader.bytes[range]))
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
        let start = reader.index + 1
        let hasEscapes = try reader.skipString()
        let raw = UnsafeBufferPointer(rebasing: reader.bytes[start ..< reader.index - 1])
        if hasEscapes {
            reader.index = start - 1
            switch try reader.readString() {
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
        switch reader.peek() {
        case UInt8(ascii: "\""):
            return .string(try reader.readString())
        case UInt8(ascii: "{"):
            let start = reader.index
            try reader.skipValue(depth: 1)
            return .object(start ..< reader.index)
        case UInt8(ascii: "n"):
            try reader.expectLiteral("null")
            return .null
        case let byte?:
            try reader.skipValue(depth: 1)
            return .other(typeName: Self.typeName(of: byte))
        case nil:
            throw reader.error("expected a value")
        }
    }
}
