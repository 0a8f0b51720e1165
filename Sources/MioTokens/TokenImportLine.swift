public import Foundation

/// One line of a `mioctx tokens import` file: `{"userId", "accessToken", "refreshToken", "idToken"?,
/// "expiresIn" (seconds) or "expiresAt" (ISO 8601 or seconds since 1970)}`.
public struct TokenImportLine: Sendable {
    /// Why a line was refused; never contains the line's content.
    public struct Failure: Error, Sendable {
        /// A short reason, e.g. `missing refreshToken`.
        public var message: String
    }

    /// The user id.
    public var userID: String
    /// The tokens to store.
    public var grant: TokenGrant

    /// Parses a line; `now` anchors `expiresIn`.
    public static func parse(_ line: String, now: Date) -> Result<TokenImportLine, Failure> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            return .failure(Failure(message: "not a JSON object"))
        }
        func string(_ key: String, required: Bool = true) -> Result<String?, Failure> {
            switch object[key] {
            case nil, is NSNull:
                return required ? .failure(Failure(message: "missing \(key)")) : .success(nil)
            case let value as String where !value.isEmpty:
                return .success(value)
            default:
                return .failure(Failure(message: "\(key) must be a non-empty string"))
            }
        }
        let userID: String
        let accessToken: String
        let refreshToken: String
        let idToken: String?
        do {
            userID = try string("userId").get()!
            accessToken = try string("accessToken").get()!
            refreshToken = try string("refreshToken").get()!
            idToken = try string("idToken", required: false).get()
        } catch {
            return .failure(error)
        }
        let expiresAt: Date
        switch (object["expiresIn"], object["expiresAt"]) {
        case (let seconds as NSNumber, nil) where !(seconds is Bool) && seconds.doubleValue > 0:
            expiresAt = now.addingTimeInterval(seconds.doubleValue)
        case (nil, let seconds as NSNumber) where seconds.doubleValue > 0:
            expiresAt = Date(timeIntervalSince1970: seconds.doubleValue)
        case (nil, let text as String):
            guard let date = Self.parseISO8601(text) else {
                return .failure(Failure(message: "expiresAt is not an ISO 8601 date"))
            }
            expiresAt = date
        case (nil, nil):
            return .failure(Failure(message: "missing expiresIn or expiresAt"))
        case (.some, .some):
            return .failure(Failure(message: "give expiresIn or expiresAt, not both"))
        default:
            return .failure(Failure(message: "expiresIn must be a positive number of seconds"))
        }
        return .success(
            TokenImportLine(
                userID: userID,
                grant: TokenGrant(
                    accessToken: accessToken, refreshToken: refreshToken, idToken: idToken, expiresAt: expiresAt,
                    issuedAt: min(now, expiresAt)
                )
            )
        )
    }

    private static func parseISO8601(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
