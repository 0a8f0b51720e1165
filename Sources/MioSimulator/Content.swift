import Foundation
extension MioSimulator {
    /// What `POST /v1/context` answers for a user and a query: a pure function of both, so a test can check
    /// that a result belongs to its job.
    /// - Parameters:
    ///   - userID: The user the access token belongs to.
    ///   - query: The query of the request.
    /// - Returns: The `content` string.
    public static func expectedContent(userID: String, query: String) -> String {
        let digest = fnv1a64(userID + "\u{0}" + query)
        return "Mio context for user \(userID) on \"\(query)\" [\(hex(digest))]"
    }

    /// What `GET /v1/context/summary` answers for a user who is not marked new.
    /// - Parameter userID: The user the access token belongs to.
    /// - Returns: The `summary` string.
    public static func expectedSummary(userID: String) -> String {
        "Mio summary of user \(userID) [\(hex(fnv1a64(userID)))]"
    }

    static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// Small helpers to write JSON and HTTP dates without Foundation formatters on the hot path.
enum Wire {
    /// Appends `text` as a JSON string literal (with quotes) to `output`.
    static func appendJSONString(_ text: String, to output: inout String) {
        output.append("\"")
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output.append("\\\"")
            case "\\": output.append("\\\\")
            case "\n": output.append("\\n")
            case "\r": output.append("\\r")
            case "\t": output.append("\\t")
            case let control where control.value < 0x20:
                let digits = String(control.value, radix: 16)
                output.append("\\u" + String(repeating: "0", count: 4 - digits.count) + digits)
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        output.append("\"")
    }

    /// `{"key":"value",...}` from string pairs; a nil value is written as `null`.
    static func object(_ pairs: KeyValuePairs<String, String?>) -> String {
        var output = "{"
        var first = true
        for (key, value) in pairs {
            if !first { output.append(",") }
            first = false
            appendJSONString(key, to: &output)
            output.append(":")
            if let value { appendJSONString(value, to: &output) } else { output.append("null") }
        }
        output.append("}")
        return output
    }

    /// An IMF-fixdate (RFC 9110 section 5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func httpDate(secondsSince1970: Int) -> String {
        // Only for Retry-After on injected 429/503 answers: a formatter per call costs nothing that matters.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(secondsSince1970)))
    }
}
