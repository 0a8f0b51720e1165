import JSON
import Testing

@Suite("The one JSON reader")
struct JSONReaderTests {
    func read(_ text: String, validatingUTF8: Bool = false) throws(JSONReader.SyntaxError) -> String {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { buffer throws(JSONReader.SyntaxError) in
            var reader = JSONReader(buffer)
            let value = try reader.readString(validatingUTF8: validatingUTF8)
            #expect(reader.index == buffer.count, "the reader stops after the closing quote")
            return value
        }
    }

    @Test(arguments: [
        (#""plain""#, "plain"),
        (#""""#, ""),
        (#""quotes \" and \\ and \/ and \b\f\n\r\t""#, "quotes \" and \\ and / and \u{08}\u{0C}\n\r\t"),
        (#""unicode é 日本 \u00e9 \u65E5 \ud83d\ude00 😀""#, "unicode é 日本 é 日 😀 😀"),
        (#""runs \n between \t escapes""#, "runs \n between \t escapes"),
    ])
    func stringsAreUnescaped(text: String, expected: String) throws {
        #expect(try read(text) == expected)
        #expect(try read(text, validatingUTF8: true) == expected)
    }

    @Test(arguments: [
        (#""unterminated"#, "unexpected end (unterminated string)", 13),
        (#""bad \x escape""#, "invalid escape", 7),
        (#""lone \ud83d surrogate""#, "unpaired surrogate", 12),
        (#""lone \ude00 low""#, "unpaired surrogate", 12),
        (#""short \u12""#, "invalid \\u escape", 9),
        ("\"raw\u{01}control\"", "control character in a string", 4),
    ])
    func invalidStringsNameTheReasonAndTheOffset(text: String, reason: String, offset: Int) {
        #expect(throws: JSONReader.SyntaxError(reason: reason, offset: offset)) { try read(text) }
    }

    @Test func invalidUTF8IsRefusedWhenAskedFor() {
        let bytes: [UInt8] = [UInt8(ascii: "\"")] + [0xC3, 0x28] + [UInt8(ascii: "\"")]
        bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONReader(buffer)
            #expect(throws: JSONReader.SyntaxError.self) { try reader.readString(validatingUTF8: true) }
            #expect(JSONReader.isUTF8(buffer) == false)
        }
    }

    @Test(arguments: [
        (#"{"a":[1,-2.5e+3,true,false,null,{"b":"c"}]}"#, true),
        (#"  "text"  "#, true),
        ("0", true),
        ("01", false),
        ("1.", false),
        ("tru", false),
        (#"{"a":1,}"#, false),
        (#"[1 2]"#, false),
        ("", false),
        (#"{"a":1} {}"#, false),
    ])
    func documentsAreValidatedStrictly(text: String, valid: Bool) {
        #expect(Array(text.utf8).withUnsafeBufferPointer { JSONReader.isValidJSON($0) } == valid)
    }

    @Test func nestingDeeperThanTheLimitIsRefused() {
        let deep = String(repeating: "[", count: JSONReader.maxDepth + 1) + String(repeating: "]", count: JSONReader.maxDepth + 1)
        let limit = String(repeating: "[", count: JSONReader.maxDepth) + String(repeating: "]", count: JSONReader.maxDepth)
        #expect(Array(deep.utf8).withUnsafeBufferPointer { JSONReader.isValidJSON($0) } == false)
        #expect(Array(limit.utf8).withUnsafeBufferPointer { JSONReader.isValidJSON($0) })
    }
}
