/// Where a setting may be set, besides its default.
public enum SettingLayers: Sendable, Equatable {
    /// The YAML file, the secrets directory, the environment and, when it has one, its flag.
    case all
    /// Only the environment variables it names (and the secrets directory): credentials and keys, which never
    /// belong in a file or on a command line.
    case environmentOnly
}

/// How a setting's value is shown by `config check` and quoted in problems.
public enum SettingSecrecy: Sendable {
    /// Shown and quoted as it is.
    case plain
    /// Shown as `<redacted>`, never quoted.
    case secret
    /// Shown and quoted after this redaction (a PostgreSQL URL's password becomes `***`).
    case redacted(@Sendable (String) -> String)
}

/// What a command needs; a setting marked with a requirement is a problem when a command that needs it runs
/// without it.
public struct SettingRequirement: OptionSet, Sendable, Hashable {
    /// The bits.
    public let rawValue: Int

    /// Creates a requirement set.
    /// - Parameter rawValue: The bits.
    public init(rawValue: Int) {
        self.rawValue = rawValue
    }

    /// The Mio OAuth application: `MIO_CLIENT_ID`, `MIO_CLIENT_SECRET`, `MIO_REDIRECT_URL`.
    public static let mioCredentials = SettingRequirement(rawValue: 1 << 0)
    /// A key that encrypts tokens at rest: `MIOCTX_TOKEN_KEYS` or `tokens.keyFile`.
    public static let tokenKeys = SettingRequirement(rawValue: 1 << 1)
    /// What `mioctx run` needs: everything.
    public static let worker: SettingRequirement = [.mioCredentials, .tokenKeys]
}

/// One setting, declared once: its key, environment variables, flags, type, default, validation, secrecy and
/// one line of documentation. The loader, the flags, `config check` and docs/configuration.md are derived
/// from the declarations of ``SettingsCatalog``.
public struct Setting<Value: Sendable>: Sendable {
    /// The key in the file and in messages, such as `processing.maxInFlight`.
    public let key: String
    /// Where the setting may be set.
    public let layers: SettingLayers
    /// Whether `MIOCTX_` + the key in UPPER_SNAKE_CASE sets it (swift-configuration's key encoding).
    public let hasPrefixedVariable: Bool
    /// Other environment variables that set it, after the prefixed one (the Mio SDK's names, older names).
    public let otherVariables: [String]
    /// Its flags: the first is its name, any other a deprecated alias. Empty: no flag.
    public let flags: [String]
    /// The value when no layer sets it.
    public let defaultValue: Value
    /// Parses and validates the text of a value (every layer delivers text).
    public let parser: SettingParser<Value>
    /// The value as `config check` shows it, in a spelling the parser reads back.
    public let format: @Sendable (Value) -> String
    /// How the value is shown and quoted.
    public let secrecy: SettingSecrecy
    /// The commands that cannot do without it: for them, a missing value is a problem.
    public let requirement: SettingRequirement
    /// One line for the reference table.
    public let documentation: String
    /// The default as the reference table states it, when its formatted value does not say it well.
    public let documentedDefault: String?

    /// Declares a setting.
    /// - Parameters:
    ///   - key: The key, sections separated by dots.
    ///   - layers: Where it may be set.
    ///   - prefixedVariable: Whether `MIOCTX_...` sets it.
    ///   - variables: Other environment variables, in precedence order.
    ///   - flags: Its flag and any deprecated aliases.
    ///   - defaultValue: The default, taken from the library that uses it.
    ///   - parser: Parses and validates a value.
    ///   - format: Shows a value.
    ///   - secrecy: How the value is shown.
    ///   - requirement: The commands that need it.
    ///   - documentedDefault: The default as the table states it.
    ///   - documentation: One line of documentation.
    public init(
        _ key: String,
        layers: SettingLayers = .all,
        prefixedVariable: Bool? = nil,
        variables: [String] = [],
        flags: [String] = [],
        default defaultValue: Value,
        parser: SettingParser<Value>,
        format: @escaping @Sendable (Value) -> String,
        secrecy: SettingSecrecy = .plain,
        requirement: SettingRequirement = [],
        documentedDefault: String? = nil,
        _ documentation: String
    ) {
        self.key = key
        self.layers = layers
        self.hasPrefixedVariable = prefixedVariable ?? (layers == .all)
        self.otherVariables = variables
        self.flags = flags
        self.defaultValue = defaultValue
        self.parser = parser
        self.format = format
        self.secrecy = secrecy
        self.requirement = requirement
        self.documentation = documentation
        self.documentedDefault = documentedDefault
    }
}

extension Setting where Value: CustomStringConvertible {
    /// Declares a setting shown by its description.
    /// - Parameters:
    ///   - key: The key, sections separated by dots.
    ///   - layers: Where it may be set.
    ///   - variables: Other environment variables, in precedence order.
    ///   - flags: Its flag and any deprecated aliases.
    ///   - defaultValue: The default, taken from the library that uses it.
    ///   - parser: Parses and validates a value.
    ///   - documentedDefault: The default as the table states it.
    ///   - documentation: One line of documentation.
    public init(
        _ key: String,
        layers: SettingLayers = .all,
        variables: [String] = [],
        flags: [String] = [],
        default defaultValue: Value,
        parser: SettingParser<Value>,
        documentedDefault: String? = nil,
        _ documentation: String
    ) {
        self.init(
            key, layers: layers, variables: variables, flags: flags, default: defaultValue, parser: parser,
            format: { $0.description }, documentedDefault: documentedDefault, documentation
        )
    }
}

extension Setting where Value == Duration {
    /// Declares a duration setting (`500ms`, `30s`, `2m`, `1h` or seconds) within `range`.
    /// - Parameters:
    ///   - key: The key, sections separated by dots.
    ///   - flags: Its flag and any deprecated aliases.
    ///   - defaultValue: The default, taken from the library that uses it.
    ///   - range: The values accepted.
    ///   - documentation: One line of documentation.
    public init(
        _ key: String,
        flags: [String] = [],
        default defaultValue: Duration,
        in range: ClosedRange<Duration>,
        _ documentation: String
    ) {
        self.init(
            key, flags: flags, default: defaultValue, parser: .duration(in: range),
            format: SettingParser<Duration>.format, documentation
        )
    }
}

/// A setting whatever its type: what the loader, `config check` and the reference need of a declaration.
public protocol AnySetting: Sendable {
    /// The key, such as `processing.maxInFlight`.
    var key: String { get }
    /// Where it may be set.
    var layers: SettingLayers { get }
    /// Whether `MIOCTX_...` sets it.
    var hasPrefixedVariable: Bool { get }
    /// Other environment variables that set it.
    var otherVariables: [String] { get }
    /// Its flag and deprecated aliases.
    var flags: [String] { get }
    /// How its value is shown.
    var secrecy: SettingSecrecy { get }
    /// The commands that need it.
    var requirement: SettingRequirement { get }
    /// One line of documentation.
    var documentation: String { get }
    /// The default as the reference table states it.
    var defaultText: String { get }
    /// Parses `text` into a value of the setting's type.
    func parseAny(_ text: String) -> Result<any Sendable, SettingParseFailure>
    /// The default value.
    var anyDefault: any Sendable { get }
    /// `value` (of the setting's type) as `config check` shows it, before redaction.
    func formatAny(_ value: any Sendable) -> String
}

extension Setting: AnySetting {
    /// The default as the table states it: ``documentedDefault``, else the formatted default.
    public var defaultText: String { documentedDefault ?? "`\(format(defaultValue))`" }

    /// Parses `text` with ``parser``.
    /// - Parameter text: A value as a layer delivered it.
    /// - Returns: The value, or why it was refused.
    public func parseAny(_ text: String) -> Result<any Sendable, SettingParseFailure> {
        parser.parse(text).map { $0 as any Sendable }
    }

    /// The default value.
    public var anyDefault: any Sendable { defaultValue }

    /// Formats a value of this setting's type.
    /// - Parameter value: A value of type `Value`.
    /// - Returns: Its text, or the default's when `value` has another type.
    public func formatAny(_ value: any Sendable) -> String {
        format(value as? Value ?? defaultValue)
    }
}

extension AnySetting {
    /// Whether the value is never shown.
    var isSecret: Bool {
        if case .secret = secrecy { return true }
        return false
    }

    /// `value` as `config check` shows it: `<redacted>` for a secret, redacted for a URL with a password.
    func display(_ value: any Sendable) -> String {
        switch secrecy {
        case .plain: formatAny(value)
        case .secret: EffectiveSettings.redacted
        case .redacted(let redact): redact(formatAny(value))
        }
    }
}

/// The librdkafka pass-through map: merged by property name across the file, the environment and the flag.
public struct PropertyMapSetting: AnySetting {
    /// The key, `kafka.properties`.
    public let key: String
    /// The file, the environment and the flag.
    public let layers = SettingLayers.all
    /// `MIOCTX_KAFKA_PROPERTIES` sets it, as `name=value,name=value`.
    public let hasPrefixedVariable = true
    /// No other variable.
    public let otherVariables: [String] = []
    /// The repeatable flags, `--kafka-property name=value` and kcat's `-X name=value`.
    public let flags: [String]
    /// Values are shown unless their name says they are secret (``isSecretProperty(_:)``).
    public let secrecy = SettingSecrecy.plain
    /// No command needs it.
    public let requirement: SettingRequirement = []
    /// One line of documentation.
    public let documentation: String
    /// No property by default.
    public let defaultText = "none"
    /// Properties that the program sets itself, with why they are refused.
    public let reserved: [String: String]

    /// Declares a property map.
    /// - Parameters:
    ///   - key: The key.
    ///   - flags: The repeatable flags taking `name=value`.
    ///   - reserved: Refused properties with the reason.
    ///   - documentation: One line of documentation.
    public init(_ key: String, flags: [String], reserved: [String: String], _ documentation: String) {
        self.key = key
        self.flags = flags
        self.reserved = reserved
        self.documentation = documentation
    }

    /// Whether a property's value is a secret by its name (passwords, keys, tokens, JAAS configs).
    /// - Parameter name: A librdkafka property name.
    /// - Returns: Whether `config check` redacts it.
    public static func isSecretProperty(_ name: String) -> Bool {
        let name = name.lowercased()
        return ["password", "secret", "key", "token", "sasl.jaas"].contains { name.contains($0) }
    }

    /// Not parsed as one value: the loader merges entries.
    /// - Parameter text: Unused.
    /// - Returns: A failure.
    public func parseAny(_ text: String) -> Result<any Sendable, SettingParseFailure> {
        .failure("must be a mapping of librdkafka property names to values")
    }

    /// An empty map.
    public var anyDefault: any Sendable { [String: String]() }

    /// Not shown as one value.
    /// - Parameter value: Unused.
    /// - Returns: `{}`.
    public func formatAny(_ value: any Sendable) -> String { "{}" }
}
