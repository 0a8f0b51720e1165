import Hummingbird
import Logging
@testable import Mio
import MioctxTestSupport
import NIOCore
import Testing

/// Answers that the simulator never gives: a success body larger than the client reads, and a large error body.
/// A small HTTP server stands in for a misbehaving Mio.
@Suite("Mio answers of unusual size")
struct ResponseSizeTests {
    @Test func aSuccessBodyOverTheLimitIsAMalformedResponse() async throws {
        let error = try await getContext(at: "/huge").failure
        #expect(error?.code == .malformedResponse, "\(String(describing: error))")
        #expect(error?.description.contains("larger than") == true, "\(String(describing: error))")
    }

    @Test func aLargeErrorBodyStillGivesItsStatusAndRetryAfter() async throws {
        let error = try await getContext(at: "/busy").failure
        #expect(error?.code == .serverError, "\(String(describing: error))")
        #expect(error?.status == 503)
        #expect(error?.retryAfter == .seconds(3))
    }

    @Test func aSuccessBodyInManyPartsIsReadWhole() async throws {
        let content = try await getContext(at: "/long").get()
        #expect(content.count == 1_000_000)
        #expect(content.allSatisfy { $0 == "x" })
    }

    /// Calls `getContext` against the odd server's `prefix` with a fresh client.
    private func getContext(at prefix: String) async throws -> Result<String, MioError> {
        try await withOddServer { baseURL in
            let configuration = MioClient.Configuration(
                clientID: "c",
                clientSecret: "s",
                redirectURL: "http://localhost/callback",
                apiURL: baseURL + prefix,
                requestTimeout: .seconds(30)
            )
            return try await MioClient.withClient(configuration: configuration) { client in
                do throws(MioError) {
                    return .success(try await client.getContext(query: "q", accessToken: "atk_secret"))
                } catch {
                    return .failure(error)
                }
            }
        }
    }

    /// Runs a server whose `POST {prefix}/v1/context` answers: `/huge` 200 with 9 MiB, `/busy` 503 with 1 MiB
    /// and `Retry-After: 3`, `/long` 200 with a valid 1 MB content sent in 64 KiB parts.
    private func withOddServer<T: Sendable>(_ body: (String) async throws -> T) async throws -> T {
        let router = Router()
        router.post("/huge/v1/context") { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: " "), count: 9 << 20)))
        }
        router.post("/busy/v1/context") { _, _ in
            Response(
                status: .serviceUnavailable,
                headers: [.retryAfter: "3"],
                body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "e"), count: 1 << 20))
            )
        }
        router.post("/long/v1/context") { _, _ in
            var whole = ByteBuffer(string: #"{"content":""#)
            whole.writeRepeatingByte(UInt8(ascii: "x"), count: 1_000_000)
            whole.writeString(#""}"#)
            let parts = stride(from: 0, to: whole.readableBytes, by: 65_536).map {
                whole.getSlice(at: $0, length: min(65_536, whole.readableBytes - $0))!
            }
            return Response(status: .ok, body: .init(asyncSequence: parts.async))
        }
        return try await withRouterServer(router, logger: quietLogger, body)
    }
}

extension Array where Element: Sendable {
    /// The elements as an async sequence.
    fileprivate var async: AsyncStream<Element> {
        AsyncStream { continuation in
            for element in self { continuation.yield(element) }
            continuation.finish()
        }
    }
}

extension Result {
    /// The error, if this is a failure.
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
