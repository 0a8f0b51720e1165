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
    /// `kafka.properties`: librdkafka properties by name.
    public private(set) var kafkaProperties: [String: String]
    /// The source of each librdkafka property, by name.
    public private(set) var propertySources: [String: SettingSource]
    /// The configuration file read, if any.
    public private(set) var configFile: String?

    init(
        values: [String: any Sendable],
        sources: [String: SettingSource],
        kafkaProperties: [String: String],
        propertySources: [String: SettingSource],
        configFile: String?
    ) {
        self.values = values
        self.sources = sources
        self.kafkaProperties = kafkaProperties
        self.propertySources = propertySources
        self.configFile = configFile
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
    /// - Throws: `TokenError` when neither holds a valid key (loading checks this for commands that need keys).
    public func keyring() throws -> TokenKeyring {
        if let keys = self[\.tokens.keys] { return try TokenKeyring(parsing: keys) }
        return try TokenKeyring.load(environment: [:], keyFile: self[\.tokens.keyFile])
    }

    /// A warning when the tokens' keys come from a key file that its group or other users may read, else nil.
    /// (The file is the key to every token at rest: it belongs to the service's user alone, mode 0600 or 0400.)
    public var keyFileExposure: String? {
        guard self[\.tokens.keys] == nil, let path = self[\.tokens.keyFile],
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
        let location = try TokenStoreLocation(parsing: self[\.tokens.store])
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
