import JSON
import NIOCore

/// Reads the `content` string of a `POST /v1/context` answer (`{"content": "..."}`) without `JSONDecoder`, which
/// costs a few allocations and microseconds per answer on the hot path.
///
/// It reads the common shape only, with the package's ``JSONReader``: an object whose members are strings,
/// numbers, booleans or null. It returns nil for anything else (nested values, a repeated `content`, invalid
/// UTF-8, a lone surrogate, a missing `content`), and the caller then decodes with `JSONDecoder`, whose answer is
/// the one that counts. So the fast path never accepts what `JSONDecoder` would refuse, and never refuses on its
/// own.
enum ContextAnswerReader {
    static func content(of body: ByteBuffer) -> String? {
        body.withUnsafeReadableBytes { raw in
            raw.withMemoryRebound(to: UInt8.self) { bytes in
                var reader = JSONReader(bytes)
                return try? readContent(&reader)
            }
        }
    }

    private static func readContent(_ reader: inout JSONReader) throws(JSONReader.SyntaxError) -> String? {
        reader.skipWhitespace()
        guard reader.take(UInt8(ascii: "{")) else { return nil }
        var content: String?
        reader.skipWhitespace()
        if !reader.take(UInt8(ascii: "}")) {
            while true {
                reader.skipWhitespace()
                guard reader.peek() == UInt8(ascii: "\"") else { return nil }
                // Every string is checked for UTF-8 as it is read: `JSONDecoder` refuses invalid bytes anywhere.
                let key = try reader.readString(validatingUTF8: true)
                reader.skipWhitespace()
                guard reader.take(UInt8(ascii: ":")) else { return nil }
                reader.skipWhitespace()
                switch reader.peek() {
                case UInt8(ascii: "\""):
                    let value = try reader.readString(validatingUTF8: true)
                    if key == "content" {
                        guard content == nil else { return nil }
                        content = value
                    }
                case UInt8(ascii: "{"), UInt8(ascii: "["), nil:
                    // Nested values are left to `JSONDecoder`.
                    return nil
                default:
                    guard key != "content" else { return nil }
                    try reader.skipValue(depth: 1)
                }
                reader.skipWhitespace()
                if reader.take(UInt8(ascii: ",")) { continue }
                guard reader.take(UInt8(ascii: "}")) else { return nil }
                break
            }
        }
        reader.skipWhitespace()
        return reader.index == reader.bytes.count ? content : nil
    }
}
