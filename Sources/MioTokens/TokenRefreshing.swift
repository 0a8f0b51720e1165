public import Foundation
public import Mio

/// What the ``TokenProvider`` needs from Mio: spend a refresh token for new tokens. `MioClient` conforms.
public protocol TokenRefreshing: Sendable {
    /// Exchanges `refreshToken` for new tokens; the returned refresh token replaces the spent one.
    /// - Throws: A `MioError` (`invalid_grant` when the refresh token is revoked, expired or already spent).
    func refreshTokens(refreshToken: String) async throws -> MioTokenResponse
}

/// What the connect command and the OAuth callback need from Mio: exchange an authorization code. `MioClient`
/// conforms.
public protocol AuthorizationCodeExchanging: Sendable {
    /// Exchanges an authorization code for the user's first tokens.
    /// - Throws: A `MioError` (`invalid_grant` for a bad, spent or expired code or a redirect URL mismatch).
    func exchangeCodeForTokens(code: String) async throws -> MioTokenResponse
}

extension MioClient: TokenRefreshing {}
extension MioClient: AuthorizationCodeExchanging {}

extension TokenGrant {
    /// The grant of a token response received at `receivedAt` (the expiry is `receivedAt + expiresIn`).
    public init(response: MioTokenResponse, receivedAt: Date) {
        self.init(
            accessToken: response.accessToken,
            refreshToken: response.refreshToken,
            idToken: response.idToken,
            expiresAt: receivedAt.addingTimeInterval(TimeInterval(max(0, response.expiresIn))),
            issuedAt: receivedAt
        )
    }

    /// The grant of a code exchange's answer received at `receivedAt`, refused when it has no refresh token: a
    /// user stored without one could never be refreshed (the first expiry would end as reauth_required, and a
    /// refresh sending an empty token is an `invalid_request` at Mio).
    /// - Throws: ``TokenError/Code/invalidInput`` when `response` has no refresh token.
    public init(codeExchange response: MioTokenResponse, userID: String, receivedAt: Date) throws {
        guard !response.refreshToken.isEmpty else {
            throw TokenError(
                .invalidInput, userID: userID,
                detail: "Mio's answer to the code exchange has no refresh_token (is the offline_access scope granted?); "
                    + "the tokens were not stored",
                isRetriable: false
            )
        }
        self.init(response: response, receivedAt: receivedAt)
    }
}
