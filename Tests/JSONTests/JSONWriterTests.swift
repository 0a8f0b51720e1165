import JSON
import Testing

@Suite("The one JSON escaper and writer")
struct JSONWriterTests {
    @Test(arguments: [
        ("plain", #""plain""#),
        ("", #""""#),
        ("quote \" backslash \\ slash /", #""quote \" backslash \\ slash /""#),
        ("line\nreturn\rtab\t", #""line\nreturn\rtab\t""#),
        ("\u{0}\u{1}\u{1f}", #""\u0000\u0001\u001f""#),
        ("unicode é 🚀 \u{7f}", "\"unicode é 🚀 \u{7f}\""),
    ])
    func stringsAreEscapedAsRFC8259Requires(value: String, literal: String) {
        #expect(JSONString.quoted(value) == literal)
        var bytes: [UInt8] = []
        JSONString.appendQuoted(value, to: &bytes)
        #expect(bytes == Array(literal.utf8))
    }

    @Test func theWriterSeparatesMembersAndKeepsRawValues() {
        var writer = JSONWriter(capacity: 64)
        writer.beginObject()
        writer.key("id")
        writer.string("j\"1")
        writer.key("n")
        writer.integer(-42)
        writer.key("none")
        writer.raw("null")
        writer.key("metadata")
        writer.raw(Array(#"{"k":[1,2]}"#.utf8))
        writer.key("nested")
        writer.beginObject()
        writer.key("a")
        writer.string("b")
        writer.endObject()
        writer.endObject()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"id":"j\"1","n":-42,"none":null,"metadata":{"k":[1,2]},"nested":{"a":"b"}}"#)
    }

    @Test func whatTheWriterWritesTheReaderReadsBack() throws {
        let values = ["plain", "tricky \" \\ \n \u{1} é 🚀", ""]
        for value in values {
            let bytes = Array(JSONString.quoted(value).utf8)
            let read = try bytes.withUnsafeBufferPointer { buffer throws(JSONReader.SyntaxError) in
                var reader = JSONReader(buffer)
                return try reader.readString(validatingUTF8: true)
            }
            #expect(read == value)
        }
    }
}
