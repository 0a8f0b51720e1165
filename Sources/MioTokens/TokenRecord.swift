public import Foundation

/// The state of a user's tokens.
public enum TokenStatus: String, Sendable, Codable, CaseIterable {
    /// Usable: the access token can be used and the refresh token spent.
    case active
    /// Mio refused the refresh token (`invalid_grant`): the user must go through the consent flow again.
    case reauthRequired = "reauth_required"
    /// An operator revoked the tokens (`mioctx tokens revoke`): they are wiped and never used again.
    case revoked
}

/// A user's tokens as held by a ``TokenStore`` (decrypted).
///
/// `description`, `debugDescription` and the reflection used by `dump` never show the tokens.
public struct TokenRecord: Sendable, Equatable {
    /// The user's id in the caller's system (the job's `userId`).
    public var userID: String
    /// The bearer token for `POST /v1/context`.
    public var accessToken: String
    /// The single-use refresh token: a refresh returns a new one and the old one is spent.
    public var refreshToken: String
    /// The OpenID Connect id token, when Mio returned one.
    public var idToken: String?
    /// When the access token expires.
    public var expiresAt: Date
    /// When the access token was obtained; with `expiresAt` it gives the token's lifetime.
    public var issuedAt: Date
    /// Whether the tokens can be used.
    public var status: TokenStatus
    /// Incremented on every write of the row's tokens or status; 1 for a new row. Recording an unknown refresh
    /// outcome (``refreshOutcomeUnknownSince``) leaves it as it is.
    public var version: Int64
    /// When the row was last written.
    public var updatedAt: Date
    /// Set when a refresh that spent the stored refresh token was sent but its answer never arrived (a timeout, a
    /// cut connection, an unreadable answer): Mio may have rotated the tokens. Any replica that then gets
    /// `invalid_grant` for the stored refresh token reports the distinct reason
    /// ``TokenError/Code/refreshAnswerLost``. Cleared by every write of the tokens or the status.
    public var refreshOutcomeUnknownSince: Date?

    /// Creates a record.
    public init(
        userID: String,
        accessToken: String,
        refreshToken: String,
        idToken: String? = nil,
        expiresAt: Date,
        issuedAt: Date,
        status: TokenStatus = .active,
        version: Int64 = 1,
        updatedAt: Date,
        refreshOutcomeUnknownSince: Date? = nil
    ) {
        self.userID = userID
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.idToken = idToken
        self.expiresAt = expiresAt.roundedToMilliseconds
        self.issuedAt = issuedAt.roundedToMilliseconds
        self.status = status
        self.version = version
        self.updatedAt = updatedAt.roundedToMilliseconds
        self.refreshOutcomeUnknownSince = refreshOutcomeUnknownSince?.roundedToMilliseconds
    }

    /// The access token's lifetime (`expiresAt - issuedAt`), at least zero.
    public var lifetime: TimeInterval { max(0, expiresAt.timeIntervalSince(issuedAt)) }
}

extension TokenRecord: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "TokenRecord(userID: \(userID), status: \(status.rawValue), expiresAt: \(expiresAt), version: \(version), "
            + "tokens: <redacted>)"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "userID": userID, "status": status, "expiresAt": expiresAt, "issuedAt": issuedAt,
                "version": version, "updatedAt": updatedAt,
                "refreshOutcomeUnknownSince": refreshOutcomeUnknownSince as Any,
            ],
            displayStyle: .struct
        )
    }
}

/// New tokens to store for a user: from a code exchange, a refresh or an import.
public struct TokenGrant: Sendable, Equatable {
    /// The new access token.
    public var accessToken: String
    /// The new refresh token; it replaces the stored one.
    public var refreshToken: String
    /// The id token, when there is one.
    public var idToken: String?
    /// When the access token expires.
    public var expiresAt: Date
    /// When the tokens were obtained.
    public var issuedAt: Date

    /// Creates a grant.
    public init(accessToken: String, refreshToken: String, idToken: String? = nil, expiresAt: Date, issuedAt: Date) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.idToken = idToken
        self.expiresAt = expiresAt.roundedToMilliseconds
        self.issuedAt = issuedAt.roundedToMilliseconds
    }
}

extension TokenGrant: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "TokenGrant(expiresAt: \(expiresAt), tokens: <redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["expiresAt": expiresAt, "issuedAt": issuedAt], displayStyle: .struct)
    }
}

/// One page of ``TokenStore/list(after:limit:)``, ordered by user id.
public struct TokenPage: Sendable {
    /// The records of this page.
    public var records: [TokenRecord]
    /// The cursor for the next page (the last user id), or nil when this is the last page.
    public var nextCursor: String?

    /// Creates a page.
    public init(records: [TokenRecord], nextCursor: String?) {
        self.records = records
        self.nextCursor = nextCursor
    }
}

extension Date {
    /// Databases keep milliseconds; rounding on the way in keeps records equal after a round trip.
    var roundedToMilliseconds: Date {
        Date(timeIntervalSince1970: (timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    var millisecondsSince1970: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }

    init(millisecondsSince1970 value: Int64) {
        self.init(timeIntervalSince1970: Double(value) / 1000)
    }
}
