import Foundation
public import MioTokens

/// The effective settings: each declared setting's value, and where it came from.
///
/// Read a value through its declaration's key path: `settings[\.processing.maxInFlight]`.
public struct EffectiveSettings: Sendable {
    /// The text that stands for a secret value.
    public static let redacted = "<redacted>"

    /// The values that differ from the declarations' defaults, by key.
    private var values: [String: any Sendable]
    /// The source of each key (`processing.maxInFlight`, `mio.clientSecret`, ...).
    public private(set) var sources: [String: SettingSource]
    /// The librdkafka properties whose name does not say they are secret (``PropertyMapSetting/isSecretProperty(_:)``).
    private var plainKafkaProperties: [String: String]
    /// The librdkafka properties whose name says they are secret (passwords, keys, JAAS configurations).
    private var secretKafkaProperties: [String: Secret<String>]
    /// The source of each librdkafka property, by name.
    public private(set) var propertySources: [String: SettingSource]
    /// The configuration file read, if any.
    public private(set) var configFile: String?
    /// Whether ``takeKeyring()`` built the keyring from `tokens.keys` and dropped them from these settings.
    private var tokenKeysHandedOver = false

    init(
        values: [String: any Sendable],
        sources: [String: SettingSource],
        kafkaProperties: [String: String],
        propertySources: [String: SettingSource],
        configFile: String?
    ) {
        self.values = values
        self.sources = sources
        self.plainKafkaProperties = kafkaProperties.filter { !PropertyMapSetting.isSecretProperty($0.key) }
        self.secretKafkaProperties = kafkaProperties.filter { PropertyMapSetting.isSecretProperty($0.key) }
            .mapValues { Secret($0) }
        self.propertySources = propertySources
        self.configFile = configFile
    }

    /// `kafka.properties`: librdkafka properties by name, secret values revealed. Hand them to librdkafka only;
    /// kept apart inside the settings, the secret ones (by their name) show as ``redacted`` when the settings
    /// are printed or dumped.
    public var kafkaProperties: [String: String] {
        plainKafkaProperties.merging(secretKafkaProperties.mapValues(\.revealedValue)) { plain, _ in plain }
    }

    /// Every setting at its default, from no source (for programs that build their settings, like the demo).
    public static var defaults: EffectiveSettings {
        EffectiveSettings(values: [:], sources: [:], kafkaProperties: [:], propertySources: [:], configFile: nil)
    }

    /// The value of a setting; setting it (a program's own choice) keeps the recorded source.
    /// - Parameter path: The setting's declaration in ``SettingsCatalog``.
    public subscript<Value: Sendable>(_ path: KeyPath<SettingsCatalog, Setting<Value>>) -> Value {
        get {
            let setting = SettingsCatalog.shared[keyPath: path]
            return values[setting.key] as? Value ?? setting.defaultValue
        }
        set {
            values[SettingsCatalog.shared[keyPath: path].key] = newValue
        }
    }

    /// Where a setting's value came from.
    /// - Parameter path: The setting's declaration in ``SettingsCatalog``.
    /// - Returns: Its source; ``SettingSource/default`` when no layer set it.
    public func source<Value: Sendable>(of path: KeyPath<SettingsCatalog, Setting<Value>>) -> SettingSource {
        sources[SettingsCatalog.shared[keyPath: path].key] ?? .default
    }

    /// The value of any declaration, for listings.
    func anyValue(_ setting: any AnySetting) -> any Sendable {
        values[setting.key] ?? setting.anyDefault
    }

    /// The token encryption keys: `tokens.keys` when set, else those of `tokens.keyFile`.
    /// - Returns: The keyring.
    /// - Throws: `TokenError` when neither holds a valid key (loading checks this for commands that need keys), or
    ///   when ``takeKeyring()`` has already taken `tokens.keys` out of these settings.
    public func keyring() throws -> TokenKeyring {
        if let keys = self[\.tokens.keys] { return try TokenKeyring(parsing: keys.revealedValue) }
        guard !tokenKeysHandedOver else {
            throw TokenError(
                .keyConfiguration,
                detail: "the token keys were handed to the keyring when the store was opened and are no longer held"
            )
        }
        return try TokenKeyring.load(environment: [:], keyFile: self[\.tokens.keyFile])
    }

    /// Builds the keyring as ``keyring()`` does, then drops `tokens.keys` from these settings: the key list
    /// lives on only inside the keyring (as keys, not as text), not in the settings a long-running command keeps.
    /// Call it once, on the settings the command keeps, where the token store is opened. A key file is not
    /// affected (its path is no secret; its contents were never held).
    ///
    /// Swift cannot erase the dropped `String` itself: its storage is freed once no copy refers to it (the
    /// process environment it came from keeps its own copy), not overwritten. The keyring zeroes the buffers
    /// it decodes the keys into.
    /// - Returns: The keyring.
    /// - Throws: `TokenError` as ``keyring()`` does; the settings are then unchanged.
    public mutating func takeKeyring() throws -> TokenKeyring {
        let keyring = try self.keyring()
        let key = SettingsCatalog.shared.tokens.keys.key
        if values.removeValue(forKey: key) != nil {
            tokenKeysHandedOver = true
        }
        return keyring
    }

    /// A warning when the tokens' keys come from a key file that its group or other users may read, else nil.
    /// (The file is the key to every token at rest: it belongs to the service's user alone, mode 0600 or 0400.)
    public var keyFileExposure: String? {
        guard self[\.tokens.keys] == nil, !tokenKeysHandedOver, let path = self[\.tokens.keyFile],
            let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let mode = (attributes[.posixPermissions] as? NSNumber)?.uint16Value, mode & 0o077 != 0
        else { return nil }
        return "the key file \(path) can be read by its group or other users (mode \(String(mode & 0o777, radix: 8))): "
            + "it decrypts every stored token; chmod 600 \(path)"
    }

    /// The token store's location.
    /// - Returns: `tokens.store`, parsed.
    /// - Throws: `TokenError` for a malformed location (loading has checked it).
    public func tokenStoreLocation() throws -> TokenStoreLocation {
        let location = try TokenStoreLocation(parsing: self[\.tokens.store].revealedValue)
        guard case .postgres(let url) = location, let rootCertificate = self[\.tokens.postgresRootCert],
            var components = URLComponents(string: url),
            !(components.queryItems ?? []).contains(where: { $0.name == "sslrootcert" })
        else { return location }
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "sslrootcert", value: rootCertificate)]
        return try TokenStoreLocation(parsing: components.string ?? url)
    }
}

extension SettingsCatalog {
    /// The catalog the key paths of ``EffectiveSettings`` reach into.
    public static let shared = SettingsCatalog()
}
