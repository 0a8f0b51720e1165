public import Coordination
import Crypto
public import Foundation

/// The OAuth `state` parameter: binds the user id, the browser that started the flow and whether the link allows
/// replacing another Mio account; expires; is signed with HMAC-SHA256.
///
/// Format: `base64url(JSON {"u": user, "n": digest of the browser nonce, "e": expiry seconds since 1970, "r":
/// replace}) "." base64url(HMAC)`. The browser nonce itself travels only in an HttpOnly cookie set by
/// `/oauth/connect`; the callback accepts the state only together with that cookie, so a state (or a whole
/// callback URL) carried to another browser is refused. Single use is the ledger's business (see
/// ``OAuthEndpoints``): the state's ``VerifiedState/id`` is what the ledger records.
public final class OAuthStateSigner: Sendable {
    /// Why a state was refused.
    public enum Rejection: String, Error, Sendable, CustomStringConvertible {
        case malformed = "the state is malformed"
        case forged = "the state signature is invalid"
        case expired = "the state has expired"
        case replayed = "the state was already used"
        case otherBrowser = "the connection was started in another browser, or its cookie was lost"
        case ledgerFull = "too many connections are in progress; try again in a few minutes"

        public var description: String { rawValue }

        /// A short name for logs and metric labels.
        public var reason: String {
            switch self {
            case .malformed: "malformed_state"
            case .forged: "forged_state"
            case .expired: "expired_state"
            case .replayed: "replayed_state"
            case .otherBrowser: "other_browser"
            case .ledgerFull: "ledger_full"
            }
        }
    }

    /// A state whose signature, expiry and browser were checked.
    public struct VerifiedState: Sendable, Equatable {
        /// The user id the state binds.
        public var userID: String
        /// Whether the connect link allowed replacing a connection to another Mio account.
        public var replace: Bool
        /// When the state expires.
        public var expiresAt: Date
        /// The state's identifier for the single-use ledger (the digest of its browser nonce).
        public var id: String
    }

    private struct Payload: Codable {
        var u: String
        var n: String
        var e: Int64
        var r: Bool?
    }

    let key: Data
    private let lifetime: Duration
    private let timeSource: TimeSource

    /// Creates a signer.
    /// - Parameters:
    ///   - key: The HMAC key (at least 32 bytes), shared with the application's backend (it signs connect links
    ///     with it) and by every replica.
    ///   - lifetime: How long a state is accepted (default 10 minutes).
    ///   - timeSource: The wall clock that dates and expires states (default: the system's).
    public init(key: Data, lifetime: Duration = .seconds(600), timeSource: TimeSource = .system) {
        self.key = key
        self.lifetime = lifetime
        self.timeSource = timeSource
    }

    /// A signer with a random key that lives only in this process (tests).
    /// - Parameters:
    ///   - lifetime: How long a state is accepted (default 10 minutes).
    ///   - timeSource: The wall clock that dates and expires states (default: the system's).
    /// - Returns: The signer.
    public static func ephemeral(
        lifetime: Duration = .seconds(600),
        timeSource: TimeSource = .system
    ) -> OAuthStateSigner {
        OAuthStateSigner(
            key: SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }, lifetime: lifetime, timeSource: timeSource
        )
    }

    /// How long a state (and the browser cookie) lives.
    public var stateLifetime: Duration { lifetime }

    /// A new random browser nonce, for the cookie.
    public static func makeBrowserNonce() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64URLEncoded
    }

    /// A new signed state.
    /// - Parameters:
    ///   - userID: The user the state binds.
    ///   - browserNonce: The nonce of the browser's cookie.
    ///   - replace: Whether the link allowed replacing a connection to another Mio account.
    /// - Returns: The state, for the consent URL's `state` parameter.
    public func makeState(userID: String, browserNonce: String, replace: Bool = false) -> String {
        let expiry = Int64(timeSource.wallNow().timeIntervalSince1970) + lifetime.components.seconds
        let payload = Payload(u: userID, n: Self.digest(browserNonce), e: expiry, r: replace ? true : nil)
        // Encoding plain fields cannot fail.
        let encoded = try! JSONEncoder().encode(payload).base64URLEncoded
        return encoded + "." + signature("mioctx-state-v1." + encoded)
    }

    /// Checks `state`'s signature and expiry, and that it was made for the browser holding `browserNonce`.
    /// - Parameters:
    ///   - state: The `state` parameter of the callback.
    ///   - browserNonce: The nonce from the browser's cookie, nil when it sent none.
    /// - Returns: The verified state.
    /// - Throws: ``Rejection``.
    public func verify(_ state: String, browserNonce: String?) throws(Rejection) -> VerifiedState {
        let parts = state.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let signatureData = Data(base64URLEncoded: String(parts[1])) else {
            throw .malformed
        }
        let payloadText = String(parts[0])
        guard HMAC<SHA256>.isValidAuthenticationCode(
            signatureData, authenticating: Data(("mioctx-state-v1." + payloadText).utf8), using: SymmetricKey(data: key)
        ) else { throw .forged }
        guard let payloadData = Data(base64URLEncoded: payloadText),
            let payload = try? JSONDecoder().decode(Payload.self, from: payloadData)
        else { throw .malformed }
        let now = Int64(timeSource.wallNow().timeIntervalSince1970)
        guard payload.e > now else { throw .expired }
        guard let browserNonce, Self.constantTimeEqual(Self.digest(browserNonce), payload.n) else {
            throw .otherBrowser
        }
        return VerifiedState(
            userID: payload.u, replace: payload.r ?? false,
            expiresAt: Date(timeIntervalSince1970: TimeInterval(payload.e)), id: payload.n
        )
    }

    private func signature(_ message: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: key))).base64URLEncoded
    }

    private static func digest(_ nonce: String) -> String {
        Data(SHA256.hash(data: Data(nonce.utf8))).base64URLEncoded
    }

    private static func constantTimeEqual(_ left: String, _ right: String) -> Bool {
        let left = Array(left.utf8), right = Array(right.utf8)
        guard left.count == right.count else { return false }
        return zip(left, right).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension Data {
    var base64URLEncoded: String {
        base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}
