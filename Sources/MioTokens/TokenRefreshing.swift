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
}
