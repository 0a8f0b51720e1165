import Pipeline
import Foundation
import Testing

@Suite struct JobDecodingTests {
    struct BadInput: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var code: InvalidJob.Code
        var field: String?

        init(_ name: String, _ text: String, _ code: InvalidJob.Code, field: String? = nil) {
            self.init(name, Array(text.utf8), code, field: field)
        }

        init(_ name: String, _ bytes: [UInt8], _ code: InvalidJob.Code, field: String? = nil) {
            self.name = name
            self.bytes = bytes
            self.code = code
            self.field = field
        }

        var testDescription: String { name }
    }

    static let long = String(repeating: "x", count: 257)
    static let bigQuery = String(repeating: "q", count: 16 * 1024 + 1)
    static let bigMetadata = "{\"a\":\"" + String(repeating: "m", count: 16 * 1024) + "\"}"

    static let badInputs: [BadInput] = [
        BadInput("invalid UTF-8", [0x7B, 0x22, 0xC3, 0x28, 0x22, 0x7D], .notUTF8),
        BadInput("truncated UTF-8 in a value", Array(#"{"id":"a","userId":"u","query":""#.utf8) + [0xE2, 0x82] + Array(#""}"#.utf8), .notUTF8),
        BadInput("empty", "", .notJSON),
        BadInput("not JSON", "hello", .notJSON),
        BadInput("truncated object", #"{"id":"a","userId":"u""#, .notJSON),
        BadInput("trailing comma", #"{"id":"a","userId":"u","query":"q",}"#, .notJSON),
        BadInput("two objects", #"{"id":"a"}{"id":"b"}"#, .notJSON),
        BadInput("single quotes", #"{'id':'a'}"#, .notJSON),
        BadInput("bad escape", #"{"id":"a\x","userId":"u","query":"q"}"#, .notJSON),
        BadInput("lone surrogate", #"{"id":"\ud800","userId":"u","query":"q"}"#, .notJSON),
        BadInput("raw control character", "{\"id\":\"a\u{01}\",\"userId\":\"u\",\"query\":\"q\"}", .notJSON),
        BadInput("bad number in unknown field", #"{"id":"a","userId":"u","query":"q","n":01}"#, .notJSON),
        BadInput("too deep", #"{"id":"a","userId":"u","query":"q","x":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}", .notJSON),
        BadInput("array", #"[{"id":"a"}]"#, .notObject),
        BadInput("string", #""job""#, .notObject),
        BadInput("number", "42", .notObject),
        BadInput("null", "null", .notObject),
        BadInput("missing id", #"{"userId":"u","query":"q"}"#, .missingField, field: "id"),
        BadInput("missing userId", #"{"id":"a","query":"q"}"#, .missingField, field: "userId"),
        BadInput("missing query", #"{"id":"a","userId":"u"}"#, .missingField, field: "query"),
        BadInput("id a number", #"{"id":7,"userId":"u","query":"q"}"#, .wrongType, field: "id"),
        BadInput("userId null", #"{"id":"a","userId":null,"query":"q"}"#, .wrongType, field: "userId"),
        BadInput("query an array", #"{"id":"a","userId":"u","query":["q"]}"#, .wrongType, field: "query"),
        BadInput("op a boolean", #"{"id":"a","userId":"u","query":"q","op":true}"#, .wrongType, field: "op"),
        BadInput("metadata a string", #"{"id":"a","userId":"u","query":"q","metadata":"m"}"#, .wrongType, field: "metadata"),
        BadInput("metadata an array", #"{"id":"a","userId":"u","query":"q","metadata":[1]}"#, .wrongType, field: "metadata"),
        BadInput("empty id", #"{"id":"","userId":"u","query":"q"}"#, .emptyField, field: "id"),
        BadInput("empty userId", #"{"id":"a","userId":"","query":"q"}"#, .emptyField, field: "userId"),
        BadInput("empty query", #"{"id":"a","userId":"u","query":""}"#, .emptyField, field: "query"),
        BadInput("long id", #"{"id":"\#(long)","userId":"u","query":"q"}"#, .fieldTooLarge, field: "id"),
        BadInput("long userId", #"{"id":"a","userId":"\#(long)","query":"q"}"#, .fieldTooLarge, field: "userId"),
        BadInput("long query", #"{"id":"a","userId":"u","query":"\#(bigQuery)"}"#, .fieldTooLarge, field: "query"),
        BadInput("big metadata", #"{"id":"a","userId":"u","query":"q","metadata":\#(bigMetadata)}"#, .fieldTooLarge, field: "metadata"),
        BadInput("unknown op", #"{"id":"a","userId":"u","query":"q","op":"delete"}"#, .unknownOp, field: "op"),
        BadInput("userId twice", #"{"id":"a","userId":"victim","query":"q","userId":"attacker"}"#, .duplicateField, field: "userId"),
        BadInput("id twice", #"{"id":"a","id":"b","userId":"u","query":"q"}"#, .duplicateField, field: "id"),
        BadInput("metadata twice", #"{"id":"a","userId":"u","query":"q","metadata":{},"metadata":{}}"#, .duplicateField, field: "metadata"),
        BadInput(
            "message over the job limit",
            #"{"id":"a","userId":"u","query":"q","pad":""# + String(repeating: " ", count: Job.maxMessageBytes) + #""}"#,
            .messageTooLarge
        ),
    ]

    @Test(arguments: badInputs)
    func invalidMessageIsRejectedWithItsReason(_ input: BadInput) {
        #expect(throws: InvalidJob.self) { try Job(decoding: input.bytes) }
        do {
            _ = try Job(decoding: input.bytes)
        } catch {
            #expect(error.code == input.code)
            #expect(error.field == input.field)
            if let field = input.field { #expect(error.message.contains("`\(field)`")) }
            #expect(error.message.count < 200, "messages never quote the input")
        }
    }

    @Test func everyReasonCodeIsCoveredByTheTable() {
        let covered = Set(Self.badInputs.map(\.code.description))
        // `result_refused` is the engine's, not the parser's: a valid job whose result the output refused.
        #expect(covered == Set(InvalidJob.Code.allCases.filter { $0 != .resultRefused }.map(\.description)))
    }

    @Test func validJobDecodesWithDefaultsAndIgnoresUnknownFields() throws {
        let source = JobSource(partition: PartitionID(topic: "jobs", partition: 3), offset: 42)
        let text = #" { "id" : "job-1", "extra": {"deep": [1, 2.5e3, true, null, "x"]}, "userId":"u1", "query":"what's next?" } "#
        let job = try Job(decoding: Array(text.utf8), source: source)
        #expect(job == Job(id: "job-1", userID: "u1", operation: .context, query: "what's next?", source: source))
    }

    @Test func escapedStringsAndUnicodeDecode() throws {
        let text = #"{"id":"a\"b\\c\/d","userId":"\u00e9l\u00e8ve","query":"line\nnext \ud83d\ude00 ü","op":"context"}"#
        let job = try Job(decoding: Array(text.utf8))
        #expect(job.id == "a\"b\\c/d")
        #expect(job.userID == "élève")
        #expect(job.query == "line\nnext 😀 ü")
    }

    @Test func escapedFieldNamesAreRecognised() throws {
        let job = try Job(decoding: Array(#"{"\u0069d":"a","userId":"u","query":"q"}"#.utf8))
        #expect(job.id == "a")
    }

    @Test func summaryJobNeedsNoQueryAndIgnoresOne() throws {
        let job = try Job(decoding: Array(#"{"id":"a","userId":"u","op":"summary"}"#.utf8))
        #expect(job.operation == .summary)
        #expect(job.query == nil)
        let withQuery = try Job(decoding: Array(#"{"id":"a","userId":"u","op":"summary","query":5}"#.utf8))
        #expect(withQuery.query == nil)
    }

    @Test func metadataIsKeptByteForByte() throws {
        let metadata = #"{ "b": 1.50, "a" : [ "x" , {"n": -0e+1} ], "s": "\u00e9\n" }"#
        let text = #"{"id":"a","userId":"u","query":"q","metadata":\#(metadata)}"#
        let job = try Job(decoding: Array(text.utf8))
        #expect(job.metadata?.bytes == Array(metadata.utf8))
    }

    @Test func nullOpAndMetadataMeanAbsent() throws {
        let job = try Job(decoding: Array(#"{"id":"a","userId":"u","query":"q","op":null,"metadata":null}"#.utf8))
        #expect(job.operation == .context)
        #expect(job.metadata == nil)
    }

    @Test func limitsAreInclusive() throws {
        let id = String(repeating: "i", count: 256)
        let query = String(repeating: "q", count: 16 * 1024)
        let job = try Job(decoding: Array(#"{"id":"\#(id)","userId":"u","query":"\#(query)"}"#.utf8))
        #expect(job.id.utf8.count == 256)
        #expect(job.query?.utf8.count == 16 * 1024)
    }

    @Test func aRepeatedFieldIsRejectedInsteadOfTheLastValueWinning() throws {
        // Issue 17: last-value-wins let two readers of the same message disagree about the user.
        let error = #expect(throws: InvalidJob.self) {
            try Job(decoding: Array(#"{"id":"a","id":"b","userId":"u","query":"q"}"#.utf8))
        }
        #expect(error?.code == .duplicateField)
        #expect(error?.field == "id")
        // Unknown fields may repeat: mioctx does not read them.
        #expect(try Job(decoding: Array(#"{"id":"a","x":1,"x":2,"userId":"u","query":"q"}"#.utf8)).id == "a")
    }

    @Test func rawJSONValidatesItsText() {
        #expect(RawJSON(Array(#"{"a":[1,2]}"#.utf8)) != nil)
        #expect(RawJSON(Array(#"{"a":}"#.utf8)) == nil)
    }
}

@Suite struct JobResultEncodingTests {
    static let completedAt = Date(timeIntervalSince1970: 1_795_000_000.123_9)

    func decode(_ result: JobResult) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(result.encoded()))
        return try #require(object as? [String: Any])
    }

    @Test func okContextResultHasContextAndNoError() throws {
        let metadata = RawJSON(Array(#"{"trace": [1, 2.50]}"#.utf8))!
        let result = JobResult(
            jobID: "j1",
            userID: "u1",
            operation: .context,
            status: .ok,
            payload: .context("He likes \"tea\"\n\u{1}"),
            attempts: 2,
            duration: .milliseconds(1234) + .microseconds(900),
            completedAt: Self.completedAt,
            metadata: metadata
        )
        let text = String(decoding: result.encoded(), as: UTF8.self)
        #expect(
            text == #"{"id":"j1","userId":"u1","op":"context","status":"ok","context":"He likes \"tea\"\n\u0001","#
                + #""attempts":2,"durationMs":1234,"completedAt":"2026-11-18T11:06:40.123Z","metadata":{"trace": [1, 2.50]}}"#
        )
        let object = try decode(result)
        #expect(object["error"] == nil)
    }

    @Test func summaryResultWritesNullWhenMioHasNone() throws {
        let result = JobResult(
            jobID: "j2", userID: "u", operation: .summary, status: .ok, payload: .summary(nil), attempts: 1,
            duration: .zero, completedAt: Self.completedAt
        )
        let object = try decode(result)
        #expect(object["summary"] is NSNull)
        #expect(object["context"] == nil)
        #expect(object["metadata"] == nil)
    }

    @Test func failedResultHasErrorAndNoPayload() throws {
        let result = JobResult(
            jobID: "j3", userID: "u", operation: .context, status: .rateLimited,
            failure: .init(code: "rate_limited", message: "Mio answered 429"), attempts: 5,
            duration: .seconds(3), completedAt: Self.completedAt
        )
        let object = try decode(result)
        #expect(object["status"] as? String == "rate_limited")
        let error = try #require(object["error"] as? [String: Any])
        #expect(error["code"] as? String == "rate_limited")
        #expect(error["message"] as? String == "Mio answered 429")
        #expect(object["context"] == nil)
        #expect(object["durationMs"] as? Int == 3000)
    }

    @Test(arguments: [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (951_782_400.5, "2000-02-29T00:00:00.500Z"),
        (4_102_444_799.75, "2099-12-31T23:59:59.750Z"),
        (-1.0, "1969-12-31T23:59:59.000Z"),
    ])
    func completedAtIsRFC3339WithMilliseconds(seconds: Double, expected: String) throws {
        let result = JobResult(
            jobID: "j", userID: "u", operation: .context, status: .ok, payload: .context("c"), attempts: 1,
            duration: .zero, completedAt: Date(timeIntervalSince1970: seconds)
        )
        #expect(try decode(result)["completedAt"] as? String == expected)
    }
}
