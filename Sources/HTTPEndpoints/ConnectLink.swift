import Crypto
public import Foundation

/// A connect link, minted by the application's backend for a user it has logged in: the only way into
/// `/oauth/connect`.
///
/// The link names the user id, an expiry and whether it may replace a connection to another Mio account, and is
/// signed with HMAC-SHA256 under the OAuth state key (`MIOCTX_OAUTH_STATE_KEY`), which the backend and mioctx share:
///
/// ```
/// {connect URL}?user=USER&expires=UNIX_SECONDS[&replace=1]&signature=BASE64URL(HMAC-SHA256(key, MESSAGE))
/// MESSAGE = "mioctx-connect-link-v1\n" + UNIX_SECONDS + "\n" + ("1" if replace else "0") + "\n" + USER
/// ```
///
/// (base64url without padding; the user id is last, so it may hold any character). A backend in Swift calls
/// ``url(connectURL:key:)``, or ``makeConnectLink(connectURL:userID:stateKey:lifetime:replace:now:)``; `mioctx
/// tokens connect-link --user ID` prints one; docs/tokens.md shows the same in a few lines of Python.
public struct ConnectLink: Sendable, Equatable {
    /// Why `/oauth/connect` refused a link. The raw value is the sentence shown on the refusal page.
    public enum Rejection: String, Error, Sendable, CustomStringConvertible {
        case unsigned = "This connect link is not signed. Open the link your application gives you."
        case malformed = "This connect link is malformed. Open the link your application gives you."
        case altered = "This connect link was altered, or was not made for this service. Ask your application for a new link."
        case expired = "This connect link has expired. Ask your application for a new link."

        public var description: String { rawValue }

        /// A short name for logs and metric labels.
        public var reason: String {
            switch self {
            case .unsigned: "unsigned_link"
            case .malformed: "malformed_link"
            case .altered: "altered_link"
            case .expired: "expired_link"
            }
        }
    }

    /// The application's user id the tokens will be stored under.
    public var userID: String
    /// When the link stops being accepted, in whole seconds since 1970.
    public var expires: Int64
    /// Whether the connection may replace one to a different Mio account for the same user id.
    public var replace: Bool

    /// Creates a link.
    /// - Parameters:
    ///   - userID: The user id.
    ///   - expires: The expiry, in seconds since 1970.
    ///   - replace: Whether it may replace a connection to another Mio account.
    public init(userID: String, expires: Int64, replace: Bool = false) {
        self.userID = userID
        self.expires = expires
        self.replace = replace
    }

    /// The signature of the link under `key`, base64url without padding.
    /// - Parameter key: The OAuth state key.
    /// - Returns: The `signature` query parameter.
    public func signature(key: Data) -> String {
        let message = "mioctx-connect-link-v1\n\(expires)\n\(replace ? "1" : "0")\n\(userID)"
        return Data(HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: key)))
            .base64URLEncoded
    }

    /// The signed link.
    /// - Parameters:
    ///   - connectURL: The public URL of `/oauth/connect` (such as `https://connect.example.com/oauth/connect`).
    ///   - key: The OAuth state key.
    /// - Returns: `connectURL` with the link's query.
    public func url(connectURL: String, key: Data) -> String {
        var components = URLComponents(string: connectURL) ?? URLComponents()
        var items = [URLQueryItem(name: "user", value: userID), URLQueryItem(name: "expires", value: String(expires))]
        if replace { items.append(URLQueryItem(name: "replace", value: "1")) }
        items.append(URLQueryItem(name: "signature", value: signature(key: key)))
        components.queryItems = items
        // `+` is legal in a query but read as a space by form decoders: encode it.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        return components.string ?? connectURL
    }

    /// Checks a link's query parameters.
    /// - Parameters:
    ///   - parameter: Reads one query parameter by name.
    ///   - key: The OAuth state key.
    ///   - now: The current time.
    /// - Returns: The link.
    /// - Throws: ``Rejection``.
    public static func verify(
        parameter: (String) -> String?, key: Data, now: Date
    ) throws(Rejection) -> ConnectLink {
        guard let signature = parameter("signature"), !signature.isEmpty else { throw .unsigned }
        guard let user = parameter("user"), !user.isEmpty,
            let expiresText = parameter("expires"), let expires = Int64(expiresText),
            let signatureData = Data(base64URLEncoded: signature)
        else { throw .malformed }
        let replaceText = parameter("replace") ?? "0"
        guard replaceText == "0" || replaceText == "1" else { throw .malformed }
        let link = ConnectLink(userID: user, expires: expires, replace: replaceText == "1")
        let message = "mioctx-connect-link-v1\n\(expires)\n\(replaceText)\n\(user)"
        guard HMAC<SHA256>.isValidAuthenticationCode(
            signatureData, authenticating: Data(message.utf8), using: SymmetricKey(data: key)
        ) else { throw .altered }
        guard Double(expires) > now.timeIntervalSince1970 else { throw .expired }
        return link
    }
}

/// A signed connect link for `userID`, for the application's backend (see ``ConnectLink`` for the format).
///
/// Call it after your own login has established who the user is, and send that user to the URL it returns:
/// `/oauth/connect` accepts nothing else, so no one can connect a Mio account to a user id they did not log in as.
/// - Parameters:
///   - connectURL: The public URL of mioctx's `/oauth/connect` (on the OAuth listener).
///   - userID: The user id the tokens will be stored under.
///   - stateKey: The OAuth state key (`MIOCTX_OAUTH_STATE_KEY`, decoded from base64).
///   - lifetime: How long the link is accepted (default 15 minutes).
///   - replace: Whether the user may replace a connection to a different Mio account (default false).
///   - now: The current time (default: the system's).
/// - Returns: The link.
public func makeConnectLink(
    connectURL: String,
    userID: String,
    stateKey: Data,
    lifetime: Duration = .seconds(900),
    replace: Bool = false,
    now: Date = Date()
) -> String {
    let expires = Int64(now.timeIntervalSince1970.rounded(.down)) + lifetime.components.seconds
    return ConnectLink(userID: userID, expires: expires, replace: replace).url(connectURL: connectURL, key: stateKey)
}
