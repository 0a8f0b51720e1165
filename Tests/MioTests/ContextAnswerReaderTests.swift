import Foundation
@testable import Mio
import NIOCore
import Testing

/// The hot path's reader of `{"content": ...}` must agree with `JSONDecoder` whenever it answers, and answer for
/// the shapes Mio sends.
@Suite("Reading Mio's context answer")
struct ContextAnswerReaderTests {
    /// Bodies the fast path reads, with the content `JSONDecoder` also finds.
    static let readable: [String] = [
        #"{"content":"plain"}"#,
        #"  { "content" : "spaced" }  "#,
        "{\n\t\"content\": \"new\\nline\"\r\n}",
        #"{"content":"quotes \" and \\ and \/ and \b\f\n\r\t"}"#,
        #"{"content":"unicode é 日本 \u00e9 \u65E5 \ud83d\ude00 😀"}"#,
        #"{"content":""}"#,
        #"{"id":"x","content":"after","score":-1.5e+3,"ok":true,"gone":null,"n":0}"#,
        #"{"content":"before","k":3}"#,
    ]

    /// Bodies the fast path leaves to `JSONDecoder` (which decodes some of them and refuses the others).
    static let leftToJSONDecoder: [String] = [
        #"{"content":"nested","meta":{"a":1}}"#,
        #"{"content":"array","tags":["a"]}"#,
        #"{"content":"a","content":"b"}"#,
        #"{"content":1}"#,
        #"{"content":null}"#,
        #"{"other":"x"}"#,
        #"{}"#,
        #"[]"#,
        #"{"content":"unterminated}"#,
        #"{"content":"x"} trailing"#,
        #"{"content":"lone \ud83d surrogate"}"#,
        #"{"content":"bad \x escape"}"#,
        "{\"content\":\"raw\u{01}control\"}",
        #"{"content":"x","n":01}"#,
        #"{"content":"x","n":1.}"#,
        #"{"content":"x","n":tru}"#,
        #"{"content":"x",}"#,
        "",
    ]

    @Test(arguments: readable)
    func theFastPathReadsWhatJSONDecoderReads(body: String) throws {
        let fast = ContextAnswerReader.content(of: ByteBuffer(string: body))
        let decoded = try JSONDecoder().decode(ContextResponse.self, from: Data(body.utf8)).content
        #expect(fast == decoded)
    }

    @Test(arguments: leftToJSONDecoder)
    func otherShapesAreLeftToJSONDecoder(body: String) {
        #expect(ContextAnswerReader.content(of: ByteBuffer(string: body)) == nil)
    }

    @Test func invalidUTF8IsLeftToJSONDecoder() {
        var body = ByteBuffer(string: #"{"content":""#)
        body.writeBytes([0xC3, 0x28])
        body.writeString(#""}"#)
        #expect(ContextAnswerReader.content(of: body) == nil)
    }
}
