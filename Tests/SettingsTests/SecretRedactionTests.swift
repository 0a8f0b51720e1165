import Foundation
import MioTokens
import Settings
import Testing

/// The settings that hold secrets show only `<redacted>` (a PostgreSQL URL only hides its password) however they
/// are turned into text, alone or inside the whole settings; the raw value comes back only through
/// `revealedValue`; and the token keys are dropped from the settings once the keyring is built.
@Suite struct SecretRedactionTests {
    static let clientSecret = "cs-Zq8vX3-client-secret-distinct"
    static let tokenKeyBase64 = Data((0..<32).map { UInt8(($0 * 37 + 11) % 256) }).base64EncodedString()
    static let tokenKeys = "kq7:" + tokenKeyBase64
    static let stateKeyBytes = Data((0..<32).map { UInt8(($0 * 53 + 29) % 256) })
    static let pgPassword = "pgPw7Hq2distinct"
    static let storeURL = "postgres://mioctx:\(pgPassword)@db.example.com:5432/tokens"
    static let saslPassword = "sasl-Pw-4Rt9-distinct"
    static let sslKeyPassword = "sslkey-Pw-8Lm1-distinct"
    static let jaasConfig = "org.apache.kafka.common.security.plain.PlainLoginModule required password=jaas-Pw-2Xc5"

    /// Every secret of the settings, and distinctive parts of them (a fragment must not leak either).
    static var secretFragments: [String] {
        [
            clientSecret, "Zq8vX3", tokenKeyBase64, String(tokenKeyBase64.prefix(12)),
            stateKeyBytes.base64EncodedString(), String(stateKeyBytes.base64EncodedString().prefix(12)),
            stateKeyBytes.map { String(format: "%02x", $0) }.joined(), pgPassword, "7Hq2", saslPassword, "4Rt9",
            sslKeyPassword, "8Lm1", "jaas-Pw-2Xc5",
        ]
    }

    static let environment = [
        "MIO_CLIENT_ID": "client-visible",
        "MIO_CLIENT_SECRET": clientSecret,
        "MIO_REDIRECT_URL": "https://app.example.com/oauth/callback",
        "MIOCTX_TOKEN_KEYS": tokenKeys,
        "MIOCTX_OAUTH_STATE_KEY": stateKeyBytes.base64EncodedString(),
        "MIOCTX_TOKENS_STORE": storeURL,
        "MIOCTX_KAFKA_PROPERTIES":
            "sasl.password=\(saslPassword),ssl.key.password=\(sslKeyPassword),sasl.jaas.config=\(jaasConfig),"
            + "linger.ms=7",
    ]

    static func load() async throws -> EffectiveSettings {
        try await SettingsLoader(environment: environment, requiring: .worker).load()
    }

    /// Every way of turning `value` into text: interpolation, `description`, `String(reflecting:)`, `dump` and a
    /// walk of its `Mirror` (each node's label and `String(reflecting:)`).
    static func renderings(_ value: Any) -> [(String, String)] {
        var dumped = ""
        dump(value, to: &dumped)
        return [
            ("interpolation", "\(value)"),
            ("String(describing:)", String(describing: value)),
            ("String(reflecting:)", String(reflecting: value)),
            ("dump", dumped),
            ("Mirror", mirrorText(value)),
        ]
    }

    /// The labels and values of every node of `value`'s mirror tree.
    static func mirrorText(_ value: Any, depth: Int = 0) -> String {
        guard depth < 12 else { return "" }
        return Mirror(reflecting: value).children.map { child in
            "\(child.label ?? "_")=\(String(reflecting: child.value)) " + mirrorText(child.value, depth: depth + 1)
        }.joined(separator: "\n")
    }

    /// The text of every node of `value`'s mirror tree with secrets revealed: what the settings still hold.
    static func heldText(_ value: Any, depth: Int = 0) -> String {
        guard depth < 12 else { return "" }
        return Mirror(reflecting: value).children.map { child in
            let revealed: String =
                switch child.value {
                case let secret as Secret<String>: secret.revealedValue
                case let secret as Secret<String>?: secret?.revealedValue ?? ""
                case let url as RedactingURL: url.revealedValue
                default: String(reflecting: child.value)
                }
            return revealed + " " + heldText(child.value, depth: depth + 1)
        }.joined(separator: "\n")
    }

    static func expectNoSecret(in value: Any, _ name: String) {
        for (how, text) in renderings(value) {
            for fragment in secretFragments {
                #expect(!text.contains(fragment), "\(name), \(how), shows \(fragment): \(text)")
            }
        }
    }

    @Test func eachSecretSettingShowsOnlyARedactionMarkerAndRevealsItsValueOnlyThroughItsAccessor() async throws {
        let settings = try await Self.load()

        let clientSecret = settings[\.mio.clientSecret]
        let tokenKeys = try #require(settings[\.tokens.keys])
        let stateKey = try #require(settings[\.oauth.stateKey])
        let values: [(String, Any)] = [
            ("mio.clientSecret", clientSecret), ("tokens.keys", tokenKeys), ("oauth.stateKey", stateKey),
            ("tokens.keys (optional)", settings[\.tokens.keys] as Any),
        ]
        for (name, value) in values {
            Self.expectNoSecret(in: value, name)
            for (how, text) in Self.renderings(value) where how != "Mirror" {
                #expect(text.contains("<redacted>"), "\(name), \(how): \(text)")
            }
            #expect(Mirror(reflecting: value).children.isEmpty || name.contains("optional"), "\(name)")
        }
        #expect(clientSecret.revealedValue == Self.clientSecret)
        #expect(tokenKeys.revealedValue == Self.tokenKeys)
        #expect(stateKey.revealedValue == Self.stateKeyBytes)

        // The store URL hides only its password.
        let store = settings[\.tokens.store]
        Self.expectNoSecret(in: store, "tokens.store")
        for (how, text) in Self.renderings(store) {
            #expect(text.contains("postgres://mioctx:***@db.example.com:5432/tokens"), "tokens.store, \(how): \(text)")
        }
        #expect(store.revealedValue == Self.storeURL)
        let location = try settings.tokenStoreLocation()
        Self.expectNoSecret(in: location, "tokenStoreLocation()")

        // Secret librdkafka properties are kept as secrets; the rest shows.
        #expect(settings.kafkaProperties["sasl.password"] == Self.saslPassword)
        #expect(settings.kafkaProperties["ssl.key.password"] == Self.sslKeyPassword)
        #expect(settings.kafkaProperties["sasl.jaas.config"] == Self.jaasConfig)
        #expect(settings.kafkaProperties["linger.ms"] == "7")

        // The whole settings, as a debugger, a log line or a careless `print` would show them.
        Self.expectNoSecret(in: settings, "EffectiveSettings")
        var dumped = ""
        dump(settings, to: &dumped)
        #expect(dumped.contains("client-visible"), "plain values still show: \(dumped)")
        #expect(dumped.contains("linger.ms"))
        #expect(dumped.contains("db.example.com"))

        // What `mioctx config check` prints.
        let yaml = settings.yamlDescription
        for fragment in Self.secretFragments {
            #expect(!yaml.contains(fragment), "config check shows \(fragment)")
        }
        #expect(yaml.contains("clientSecret: <redacted>"))
        #expect(yaml.contains("keys: <redacted>"))
        #expect(yaml.contains("stateKey: <redacted>"))
        #expect(yaml.contains("sasl.password: <redacted>"))
        #expect(yaml.contains("store: postgres://mioctx:***@db.example.com:5432/tokens"))
    }

    @Test func theKeyringDumpsNoKeyMaterial() throws {
        let keyring = try TokenKeyring(parsing: Self.tokenKeys)
        Self.expectNoSecret(in: keyring, "TokenKeyring")
        #expect(String(reflecting: keyring).contains("kq7"))
    }

    @Test func aURLThatCannotBeParsedShowsNoPassword() {
        let broken = RedactingURL("postgres://u:pgPw7Hq2distinct@db example.com/t")
        Self.expectNoSecret(in: broken, "an unparsable URL")
        #expect(RedactingURL("sqlite:/var/lib/mioctx/tokens.sqlite").description == "sqlite:/var/lib/mioctx/tokens.sqlite")
    }

    @Test func theTokenKeysAreDroppedFromTheSettingsOnceTheKeyringIsBuilt() async throws {
        var settings = try await Self.load()
        // The walk that reveals secrets sees the key list before (so it would see it after, were it kept).
        #expect(Self.heldText(settings).contains(Self.tokenKeyBase64))

        let keyring = try settings.takeKeyring()
        #expect(keyring.primaryKeyID == "kq7")
        // The keyring works: what it seals, a keyring of the same key opens.
        #expect(keyring.keyIDs == ["kq7"])

        #expect(settings[\.tokens.keys] == nil)
        #expect(!Self.heldText(settings).contains(Self.tokenKeyBase64), "the settings still hold the key list")
        #expect(!Self.heldText(settings).contains(String(Self.tokenKeyBase64.prefix(12))))
        // The settings say where the keys went instead of falling back to another source.
        #expect(throws: TokenError.self) { try settings.keyring() }
        #expect(settings.keyFileExposure == nil)
        // Everything else is still there.
        #expect(settings[\.mio.clientSecret].revealedValue == Self.clientSecret)
        #expect(settings.source(of: \.tokens.keys) == .environment(variable: "MIOCTX_TOKEN_KEYS"))
    }

    @Test func keysFromAKeyFileAreNotHeldByTheSettingsAndCanBeReadAgain() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secret-redaction-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyFile = directory.appendingPathComponent("keys").path
        try Data((Self.tokenKeys + "\n").utf8).write(to: URL(fileURLWithPath: keyFile))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile)
        var environment = Self.environment
        environment["MIOCTX_TOKEN_KEYS"] = nil
        environment["MIOCTX_TOKEN_KEY_FILE"] = keyFile
        var settings = try await SettingsLoader(environment: environment, requiring: .worker).load()
        #expect(!Self.heldText(settings).contains(Self.tokenKeyBase64))
        #expect(try settings.takeKeyring().primaryKeyID == "kq7")
        #expect(try settings.keyring().primaryKeyID == "kq7")
    }
}
