import Crypto
import Foundation

extension TokenRecord {
    /// The lowercase hex SHA-256 of a token: lets operators and tests compare tokens without showing them.
    public static func fingerprint(of token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
