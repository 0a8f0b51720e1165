import Coordination
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Turning a non-2xx answer or a failed exchange into a ``MioError``, without any secret the request carried.
extension MioClient {
    func httpError(
        status: Int,
        headers: HTTPHeaders,
        body: ByteBuffer,
        endpoint: Endpoint,
        secrets: [String]
    ) -> MioError {
        let oauth = try? JSONDecoder().decode(OAuthErrorBody.self, from: body)
        let oauthError = oauth?.error.map { Self.scrub($0, secrets: secrets) }
        let oauthDescription = oauth?.errorDescription.map { Self.scrub($0, secrets: secrets) }
        let wwwAuthenticate = headers.first(name: "WWW-Authenticate").flatMap {
            Self.authenticateParameter("error", in: $0)
        }.map { Self.scrub($0, secrets: secrets) }
        let retryAfter = headers.first(name: "Retry-After").flatMap {
            Self.parseRetryAfter($0, now: self.timeSource.wallNow())
        }

        let code: MioError.Code
        switch (status, oauthError) {
        case (_, "invalid_grant"?): code = .invalidGrant
        case (_, "invalid_request"?): code = .invalidRequest
        case (_, "invalid_client"?): code = .invalidClient
        case (401, _): code = .unauthorized
        case (403, _): code = .forbidden
        case (429, _): code = .rateLimited
        case (500..<600, _): code = .serverError
        case (400..<500, _): code = .clientError
        default: code = .malformedResponse
        }
        return MioError(
            code: code,
            endpoint: endpoint.label,
            status: status,
            oauthError: oauthError,
            oauthErrorDescription: oauthDescription,
            wwwAuthenticateError: wwwAuthenticate,
            retryAfter: retryAfter,
            detail: code == .malformedResponse ? "unexpected HTTP status \(status)" : nil
        )
    }

    static func transportError(_ error: any Error, endpoint: Endpoint) -> MioError {
        if let error = error as? MioError { return error }
        if error is CancellationError {
            return MioError(code: .cancelled, endpoint: endpoint.label, detail: "task cancelled")
        }
        if let error = error as? HTTP1PoolError {
            switch error {
            case .deadlineExceeded:
                return MioError(code: .timeout, endpoint: endpoint.label, detail: "\(error)")
            case .cancelled:
                return MioError(code: .cancelled, endpoint: endpoint.label, detail: "request cancelled")
            case .bodyTooLarge:
                return MioError(code: .malformedResponse, endpoint: endpoint.label, detail: "\(error)")
            case .connectionClosed, .shutDown:
                return MioError(code: .transportFailure, endpoint: endpoint.label, detail: "\(error)")
            case .noTLS:
                return MioError(code: .clientError, endpoint: endpoint.label, detail: "\(error)")
            }
        }
        if case ChannelError.connectTimeout = error {
            return MioError(code: .timeout, endpoint: endpoint.label, detail: "\(error)")
        }
        return MioError(code: .transportFailure, endpoint: endpoint.label, detail: String("\(error)".prefix(300)))
    }

    /// Replaces every secret the client sent in this request by `<redacted>`, so a server that echoes one back
    /// cannot make it appear in an error.
    static func scrub(_ text: String, secrets: [String]) -> String {
        var result = String(text.prefix(500))
        for secret in secrets where !secret.isEmpty {
            result = result.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return result
    }

    static func describeDecodingFailure(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "body is not JSON" }
        switch error {
        case .keyNotFound(let key, _):
            return "missing field \(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type for field \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "body is not JSON" : "invalid value for field \(path)"
        @unknown default:
            return "body rejected"
        }
    }

    /// Returns a parameter of a `WWW-Authenticate` challenge, e.g. `error` of `Bearer error="invalid_token"`.
    static func authenticateParameter(_ name: String, in header: String) -> String? {
        guard let space = header.firstIndex(of: " ") else { return nil }
        var rest = header[header.index(after: space)...]
        while true {
            rest = rest.drop(while: { $0 == " " || $0 == "," || $0 == "\t" })
            guard let equals = rest.firstIndex(of: "=") else { return nil }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces)
            rest = rest[rest.index(after: equals)...].drop(while: { $0 == " " })
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if escaped {
                        value.append(character)
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "\"" {
                        break
                    } else {
                        value.append(character)
                    }
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            if key.lowercased() == name.lowercased() { return value }
        }
    }

    /// Parses `Retry-After`: a number of seconds, or an HTTP-date (IMF-fixdate, RFC 850 or asctime form),
    /// turned into a delay from `now` (zero if the date has passed).
    static func parseRetryAfter(_ value: String, now: Date) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(trimmed) {
            return seconds >= 0 ? .seconds(seconds) : nil
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: trimmed.split(separator: " ").joined(separator: " ")) {
                let milliseconds = max(0, Int((date.timeIntervalSince(now) * 1000).rounded()))
                return .milliseconds(milliseconds)
            }
        }
        return nil
    }
}
