import NIOHTTP1

/// One Mio endpoint: method and path, and the label used in errors and logs.
struct Endpoint: Sendable {
    var method: HTTPMethod
    var path: String

    var label: String { "\(self.method.rawValue) \(self.path)" }
}

/// The token endpoint's request body, for both grants, with the SDK's field names.
struct TokenRequest: Encodable {
    var grantType: String
    var code: String?
    var refreshToken: String?
    var redirectURI: String?
    var clientID: String
    var clientSecret: String

    enum CodingKeys: String, CodingKey {
        case grantType = "grant_type"
        case code
        case refreshToken = "refresh_token"
        case redirectURI = "redirect_uri"
        case clientID = "client_id"
        case clientSecret = "client_secret"
    }
}

/// `POST /v1/context` answer: `{"content": "..."}`.
struct ContextResponse: Decodable {
    var content: String
}

/// `GET /v1/context/summary` answer: `{"summary": "..."}` or `{"summary": null}`.
struct SummaryResponse: Decodable {
    var summary: String?
}

/// An OAuth 2.0 error body (RFC 6749 section 5.2).
struct OAuthErrorBody: Decodable {
    var error: String?
    var errorDescription: String?

    enum CodingKeys: String, CodingKey {
        case error
        case errorDescription = "error_description"
    }
}
