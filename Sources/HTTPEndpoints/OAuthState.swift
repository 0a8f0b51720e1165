public import Coordination
import Crypto
public import Foundation
import Synchronization

/// The OAuth `state` parameter: binds the user id, expires, is signed with HMAC-SHA256, and is accepted once.
///
/// Format: `base64url(JSON {"u": user, "n": nonce, "e": expiry seconds since 1970}) "." base64url(HMAC)`.
/// Single use is enforced in this process (a replayed state is refused until it expires); across replicas a
/// replay is still stopped by Mio, because an authorization code can be exchanged only once.
public final class OAuthStateSigner: Sendable {
    /// Why a state was refused.
    public enum Rejection: String, Error, Sendable, CustomStringConvertible {
        case malformed = "the state is malformed"
        case forged = "the state signature is invalid"
        case expired = "the state has expired"
        case replayed = "the state was already used"

        public var description: String { rawValue }
    }

    private struct Payload: Codable {
        var u: String
        var n: String
        var e: Int64
    }

    private let key: SymmetricKey
    private let lifetime: Duration
    private let timeSource: TimeSource
    private let used = Mutex<[String: Int64]>([:])

    /// Creates a signer.
    /// - Parameters:
    ///   - key: The HMAC key (at least 32 bytes). Replicas behind one load balancer must share it.
    ///   - lifetime: How long a state is accepted (default 10 minutes).
    ///   - timeSource: The wall clock that dates and expires states (default: the system's).
    public init(key: Data, lifetime: Duration = .seconds(600), timeSource: TimeSource = .system) {
        self.key = SymmetricKey(data: key)
        self.lifetime = lifetime
        self.timeSource = timeSource
    }

    /// A signer with a random key that lives only in this process (a single replica or the demo).
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

    /// A new signed state for `userID`.
    /// - Parameter userID: The user the state binds.
    /// - Returns: The state, for the consent URL's `state` parameter.
    public func makeState(userID: String) -> String {
        let expiry = Int64(timeSource.wallNow().timeIntervalSince1970) + lifetime.components.seconds
        let nonce = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }.base64URLEncoded
        // Encoding three plain fields cannot fail.
        let payload = try! JSONEncoder().encode(Payload(u: userID, n: nonce, e: expiry)).base64URLEncoded
        return payload + "." + signature(payload)
    }

    /// Verifies `state` and consumes it.
    /// - Parameter state: The `state` parameter of the callback.
    /// - Returns: The user id it binds.
    /// - Throws: ``Rejection``.
    public func consume(_ state: String) throws(Rejection) -> String {
        let parts = state.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let signatureData = Data(base64URLEncoded: String(parts[1])) else {
            throw .malformed
        }
        let payloadText = String(parts[0])
        guard HMAC<SHA256>.isValidAuthenticationCode(signatureData, authenticating: Data(payloadText.utf8), using: key)
        else { throw .forged }
        guard let payloadData = Data(base64URLEncoded: payloadText),
            let payload = try? JSONDecoder().decode(Payload.self, from: payloadData)
        else { throw .malformed }
        let now = Int64(timeSource.wallNow().timeIntervalSince1970)
        guard payload.e > now else { throw .expired }
        let fresh = used.withLock { used in
            used = used.filter { $0.value > now }
            return used.updateValue(payload.e, forKey: payload.n) == nil
        }
        guard fresh else { throw .replayed }
        return payload.u
    }

    private func signature(_ payload: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(payload.utf8), using: key)).base64URLEncoded
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
