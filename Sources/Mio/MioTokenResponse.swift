/// Tokens returned by Mio's token endpoint, for both the authorization-code and the refresh grant.
///
/// On the wire the fields are snake_case (`access_token`, `refresh_token`, `id_token`, `expires_in`,
/// `token_type`, `scope`), exactly as the official SDK reads them. `description`, `debugDescription` and the
/// reflection mirror redact every token, so `print`, `dump`, string interpolation and log metadata never show one.
public struct MioTokenResponse: Sendable, Equatable, Codable {
    /// The bearer token for `/v1/context` and `/v1/context/summary`.
    public var accessToken: String
    /// The refresh token. Mio rotates it on every refresh: store the new one, the old one is used up.
    public var refreshToken: String
    /// The OpenID Connect id token, when the server sent one (never guaranteed on a refresh).
    public var idToken: String?
    /// Lifetime of `accessToken` in seconds, as the server said. Always trust it over documentation.
    public var expiresIn: Int
    /// The token type, `Bearer` in practice.
    public var tokenType: String
    /// The granted scope, when the server sent it.
    public var scope: String?

    /// Creates a token response.
    public init(
        accessToken: String,
        refreshToken: String,
        idToken: String? = nil,
        expiresIn: Int,
        tokenType: String = "Bearer",
        scope: String? = nil
    ) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.idToken = idToken
        self.expiresIn = expiresIn
        self.tokenType = tokenType
        self.scope = scope
    }

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case refreshToken = "refresh_token"
        case idToken = "id_token"
        case expiresIn = "expires_in"
        case tokenType = "token_type"
        case scope
    }

    /// Decodes the wire form. `expires_in` is a JSON number; a fractional value is rounded down.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.accessToken = try container.decode(String.self, forKey: .accessToken)
        // Only the access token and its lifetime are required (as in the SDK): a server that does not rotate may
        // leave out the refresh token (empty here: the caller keeps the one it sent), and an unexpected or missing
        // optional field must never turn a successful, rotating refresh into a failure (the new refresh token
        // would be lost).
        self.refreshToken = (try? container.decodeIfPresent(String.self, forKey: .refreshToken)) ?? ""
        self.idToken = try? container.decodeIfPresent(String.self, forKey: .idToken)
        if let text = try? container.decode(String.self, forKey: .expiresIn), let seconds = Int(text), seconds >= 0 {
            self.expiresIn = seconds
        } else if let seconds = try? container.decode(Int.self, forKey: .expiresIn) {
            self.expiresIn = seconds
        } else {
            let seconds = try container.decode(Double.self, forKey: .expiresIn)
            guard seconds.isFinite, seconds >= 0, seconds < Double(Int32.max) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .expiresIn,
                    in: container,
                    debugDescription: "expires_in out of range"
                )
            }
            self.expiresIn = Int(seconds)
        }
        self.tokenType = (try? container.decodeIfPresent(String.self, forKey: .tokenType)) ?? "Bearer"
        self.scope = try? container.decodeIfPresent(String.self, forKey: .scope)
    }
}

extension MioTokenResponse: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// A description with every token redacted.
    public var description: String {
        let idToken = self.idToken == nil ? "nil" : "<redacted>"
        let scope = self.scope.map { "\"\($0)\"" } ?? "nil"
        return "MioTokenResponse(accessToken: <redacted>, refreshToken: <redacted>, idToken: \(idToken), "
            + "expiresIn: \(self.expiresIn), tokenType: \(self.tokenType), scope: \(scope))"
    }

    /// Same as `description`: tokens are redacted.
    public var debugDescription: String { self.description }

    /// A mirror without the tokens, so `dump` shows none.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "accessToken": "<redacted>",
                "refreshToken": "<redacted>",
                "idToken": self.idToken == nil ? "nil" : "<redacted>",
                "expiresIn": self.expiresIn,
                "tokenType": self.tokenType,
                "scope": self.scope as Any,
            ],
            displayStyle: .struct
        )
    }
}
