import Foundation
@testable import Mio
import NIOCore
import Testing

@Suite("Mio wire format")
struct WireTests {
    @Test(arguments: [
        "what does alice like?",
        #"quotes " and \ backslashes"#,
        "lines\nand\ttabs\rand \u{01} \u{1F} controls",
        "slashes / stay / as they are",
        "ünïcödé, 日本語 and 🎉",
        "",
    ])
    func theContextRequestBodyIsTheSDKsJSON(_ query: String) throws {
        let body = MioClient.contextRequestBody(query: query)
        let bytes = Data(body.readableBytesView)
        let object = try #require(try JSONSerialization.jsonObject(with: bytes) as? [String: Any])
        #expect(object["query"] as? String == query)
        #expect(object["k"] as? Int == 3)
        #expect(object.count == 2)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix(#"{"query":""#))
        #expect(text.hasSuffix(#"","k":3}"#))
        #expect(!text.contains(#"\/"#))
    }
}
