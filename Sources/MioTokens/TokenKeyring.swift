import Crypto
public import Foundation

/// The AES-256-GCM keys that encrypt tokens at rest.
///
/// The first key is the primary: it encrypts every new ciphertext. The others only decrypt rows written before
/// a rotation, until `mioctx tokens rekey` has re-encrypted them. Each ciphertext names its key id
/// (`v1:<kid>:<base64 of nonce|ciphertext|tag>`), and the user id and field name are bound as authenticated
/// data, so a ciphertext copied into another user's row (or into another column) fails to decrypt.
///
/// Configuration: `MIOCTX_TOKEN_KEYS=kid:base64key,kid2:base64key` (first is primary), or a key file
/// (`MIOCTX_TOKEN_KEY_FILE` or an explicit path) holding the same list, separated by commas or new lines.
public struct TokenKeyring: Sendable {
    /// The environment variable that holds the key list.
    public static let keysEnvironmentVariable = "MIOCTX_TOKEN_KEYS"
    /// The environment variable that names a key file.
    public static let keyFileEnvironmentVariable = "MIOCTX_TOKEN_KEY_FILE"

    private static let format = "v1"

    /// The key ids, primary first.
    public let keyIDs: [String]
    private let keys: [String: SymmetricKey]

    /// The id of the key that encrypts new ciphertexts.
    public var primaryKeyID: String { keyIDs[0] }

    /// Creates a keyring from `kid:base64key` entries separated by commas, new lines or spaces (`#` starts a
    /// comment).
    /// - Throws: ``TokenError/Code/keyConfiguration`` for an empty list, a malformed entry, a key that is not
    ///   32 bytes, or a repeated key id. The message never contains key material.
    public init(parsing specification: String) throws {
        // A `#` starts a comment that runs to the end of its line.
        let entries = specification
            .split(whereSeparator: \.isNewline)
            .map { $0.prefix(while: { $0 != "#" }) }
            .flatMap { $0.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) }
            .map(String.init)
        var ids: [String] = []
        var keys: [String: SymmetricKey] = [:]
        for (index, entry) in entries.enumerated() {
            guard let colon = entry.firstIndex(of: ":") else {
                throw TokenError(.keyConfiguration, detail: "key entry \(index + 1) is not of the form kid:base64key")
            }
            let id = String(entry[..<colon])
            guard Self.isValidKeyID(id) else {
                throw TokenError(
                    .keyConfiguration,
                    detail: "key entry \(index + 1): the key id must be 1-64 characters of A-Z a-z 0-9 _ - ."
                )
            }
            guard var data = Data(base64Encoded: String(entry[entry.index(after: colon)...])) else {
                throw TokenError(.keyConfiguration, detail: "key \(id): not a base64-encoded 32-byte (AES-256) key")
            }
            // The decoded key is ours alone: zeroed once the SymmetricKey (which wipes its own copy) has it.
            defer { data.resetBytes(in: data.startIndex..<data.endIndex) }
            guard data.count == 32 else {
                throw TokenError(.keyConfiguration, detail: "key \(id): not a base64-encoded 32-byte (AES-256) key")
            }
            guard keys[id] == nil else {
                throw TokenError(.keyConfiguration, detail: "key id \(id) appears twice")
            }
            ids.append(id)
            keys[id] = SymmetricKey(data: data)
        }
        guard !ids.isEmpty else {
            throw TokenError(.keyConfiguration, detail: "the key list is empty. \(Self.howToCreateAKey)")
        }
        self.keyIDs = ids
        self.keys = keys
    }

    /// Loads the keyring from `MIOCTX_TOKEN_KEYS`, else from `keyFile`, else from `MIOCTX_TOKEN_KEY_FILE`.
    /// - Throws: ``TokenError/Code/keyConfiguration`` when no key is configured (the message says how to create
    ///   one with `mioctx tokens keygen`), or when the configured keys are malformed or the file is unreadable.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        keyFile: String? = nil
    ) throws -> TokenKeyring {
        if let keys = environment[keysEnvironmentVariable], !keys.trimmingCharacters(in: .whitespaces).isEmpty {
            return try TokenKeyring(parsing: keys)
        }
        if let path = keyFile ?? environment[keyFileEnvironmentVariable], !path.isEmpty {
            var bytes: Data
            do {
                bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw TokenError(.keyConfiguration, detail: "cannot read the key file \(path): \(error.localizedDescription)")
            }
            // The file's bytes are ours: zeroed after parsing (the String parsed is not: Swift cannot wipe one).
            defer { bytes.resetBytes(in: bytes.startIndex..<bytes.endIndex) }
            guard let contents = String(data: bytes, encoding: .utf8) else {
                throw TokenError(.keyConfiguration, detail: "cannot read the key file \(path): it is not UTF-8 text")
            }
            return try TokenKeyring(parsing: contents)
        }
        throw TokenError(
            .keyConfiguration,
            detail: "no token encryption key is configured: the token store refuses to start without one. "
                + howToCreateAKey
        )
    }

    static let howToCreateAKey =
        "Create a key with `mioctx tokens keygen` and set MIOCTX_TOKEN_KEYS=kid:base64key (a comma-separated "
        + "list, first is primary), or write it to a file named by MIOCTX_TOKEN_KEY_FILE "
        + "(`mioctx tokens keygen --file PATH`)."

    /// A keyring with one random key that lives only in this process (for the demo and tests): tokens
    /// encrypted with it cannot be read after the process ends.
    public static func ephemeral() -> TokenKeyring {
        // A generated entry always parses.
        try! TokenKeyring(parsing: generateEntry(keyID: "ephemeral-" + randomHex(bytes: 4)))
    }

    /// A new `kid:base64key` entry with a random 256-bit key (what `mioctx tokens keygen` prints).
    /// - Parameter keyID: The key id; by default `k` followed by 8 random hex digits.
    public static func generateEntry(keyID: String? = nil) -> String {
        let key = SymmetricKey(size: .bits256)
        let base64 = key.withUnsafeBytes { Data($0).base64EncodedString() }
        return "\(keyID ?? "k" + randomHex(bytes: 4)):\(base64)"
    }

    /// Whether `id` is a valid key id: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
    public static func isValidKeyID(_ id: String) -> Bool {
        (1...64).contains(id.count)
            && id.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || $0 == "_" || $0 == "-" || $0 == "."
            }
    }

    private static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// The token fields, each bound into its ciphertext's authenticated data.
    enum Field: String, Sendable {
        case access, refresh, id
    }

    /// Encrypts `plaintext` with the primary key, binding `userID` and `field`.
    func seal(_ plaintext: String, userID: String, field: Field) throws -> String {
        let keyID = primaryKeyID
        do {
            let box = try AES.GCM.seal(
                Data(plaintext.utf8), using: keys[keyID]!,
                authenticating: Self.authenticatedData(userID: userID, field: field)
            )
            // A sealed box made with the default 12-byte nonce always has a combined representation.
            return "\(Self.format):\(keyID):\(box.combined!.base64EncodedString())"
        } catch {
            throw TokenError(.storeFailure, userID: userID, detail: "encryption failed", underlying: error)
        }
    }

    /// Decrypts a ciphertext made by ``seal(_:userID:field:)`` for the same user and field.
    func open(_ ciphertext: String, userID: String, field: Field) throws -> String {
        let parts = ciphertext.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Self.format, let combined = Data(base64Encoded: String(parts[2])) else {
            throw TokenError(.decryptionFailed, userID: userID, detail: "the \(field) token is not a ciphertext")
        }
        let keyID = String(parts[1])
        guard let key = keys[keyID] else {
            throw TokenError(
                .keyConfiguration, userID: userID,
                detail: "the \(field) token is encrypted with key \(keyID), which is not configured"
            )
        }
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            let plaintext = try AES.GCM.open(
                box, using: key, authenticating: Self.authenticatedData(userID: userID, field: field)
            )
            return String(decoding: plaintext, as: UTF8.self)
        } catch {
            throw TokenError(
                .decryptionFailed, userID: userID,
                detail: "the \(field) token does not decrypt with key \(keyID) for this user (tampered or moved)"
            )
        }
    }

    /// The key id a ciphertext names, or nil when it is not a ciphertext.
    static func keyID(of ciphertext: String) -> String? {
        let parts = ciphertext.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == format else { return nil }
        return String(parts[1])
    }

    private static func authenticatedData(userID: String, field: Field) -> Data {
        // The user id comes last, so no user id can make two (field, user) pairs produce the same bytes.
        Data("mioctx.token.v1\u{0}\(field.rawValue)\u{0}\(userID)".utf8)
    }
}

extension TokenKeyring: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The key ids only; never key material.
    public var description: String { "TokenKeyring(primary: \(primaryKeyID), keys: \(keyIDs))" }

    /// The key ids only; never key material.
    public var debugDescription: String { description }

    /// The key ids only, so `dump` never reaches the keys.
    public var customMirror: Mirror { Mirror(self, children: ["keyIDs": keyIDs], displayStyle: .struct) }
}

/// A token row as stored: tokens encrypted, dates in milliseconds since 1970.
struct EncryptedTokenRow: Sendable {
    var userID: String
    var accessToken: String
    var refreshToken: String
    var idToken: String?
    var expiresAt: Int64
    var issuedAt: Int64
    var status: String
    var version: Int64
    var updatedAt: Int64
    /// ``TokenRecord/refreshOutcomeUnknownSince`` in milliseconds (not encrypted: it holds no secret).
    var refreshOutcomeUnknownSince: Int64?

    init(
        userID: String, accessToken: String, refreshToken: String, idToken: String?, expiresAt: Int64,
        issuedAt: Int64, status: String, version: Int64, updatedAt: Int64, refreshOutcomeUnknownSince: Int64? = nil
    ) {
        self.userID = userID
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.idToken = idToken
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.status = status
        self.version = version
        self.updatedAt = updatedAt
        self.refreshOutcomeUnknownSince = refreshOutcomeUnknownSince
    }

    init(_ record: TokenRecord, keyring: TokenKeyring) throws {
        self.init(
            userID: record.userID,
            accessToken: try keyring.seal(record.accessToken, userID: record.userID, field: .access),
            refreshToken: try keyring.seal(record.refreshToken, userID: record.userID, field: .refresh),
            idToken: try record.idToken.map { try keyring.seal($0, userID: record.userID, field: .id) },
            expiresAt: record.expiresAt.millisecondsSince1970,
            issuedAt: record.issuedAt.millisecondsSince1970,
            status: record.status.rawValue,
            version: record.version,
            updatedAt: record.updatedAt.millisecondsSince1970,
            refreshOutcomeUnknownSince: record.refreshOutcomeUnknownSince?.millisecondsSince1970
        )
    }

    func decrypted(with keyring: TokenKeyring) throws -> TokenRecord {
        guard let status = TokenStatus(rawValue: status) else {
            throw TokenError(.storeFailure, userID: userID, detail: "unknown status \(status) in the store")
        }
        return TokenRecord(
            userID: userID,
            accessToken: try keyring.open(accessToken, userID: userID, field: .access),
            refreshToken: try keyring.open(refreshToken, userID: userID, field: .refresh),
            idToken: try idToken.map { try keyring.open($0, userID: userID, field: .id) },
            expiresAt: Date(millisecondsSince1970: expiresAt),
            issuedAt: Date(millisecondsSince1970: issuedAt),
            status: status,
            version: version,
            updatedAt: Date(millisecondsSince1970: updatedAt),
            refreshOutcomeUnknownSince: refreshOutcomeUnknownSince.map { Date(millisecondsSince1970: $0) }
        )
    }

    /// Whether every ciphertext of the row is made with `keyID`.
    func isEncrypted(with keyID: String) -> Bool {
        [accessToken, refreshToken, idToken].compactMap { $0 }.allSatisfy { TokenKeyring.keyID(of: $0) == keyID }
    }

    /// The row re-encrypted with the keyring's primary key.
    func reencrypted(with keyring: TokenKeyring) throws -> EncryptedTokenRow {
        try EncryptedTokenRow(decrypted(with: keyring), keyring: keyring)
    }
}
