import Configuration

extension SettingsCatalog {
    /// Every declaration, in the order they are declared (the documentation's order).
    public static let all: [any AnySetting] = declarations(in: SettingsCatalog())

    /// The environment variable that names the configuration file when `--config` is absent.
    public static let configFileVariable = "MIOCTX_CONFIG"
    /// The flag that names the configuration file.
    public static let configFileFlag = "--config"
    /// The environment variable that names a directory of secrets mounted as files.
    public static let secretsDirectoryVariable = "MIOCTX_SECRETS_DIRECTORY"
    /// The flag that names a directory of secrets mounted as files.
    public static let secretsDirectoryFlag = "--secrets-directory"
    /// The environment variable that names a librdkafka client properties file when `--kafka-config` is absent.
    public static let kafkaConfigVariable = "MIOCTX_KAFKA_CONFIG"
    /// The flag that names a librdkafka client properties file (``KafkaPropertiesFile``).
    public static let kafkaConfigFlag = "--kafka-config"

    private static func declarations(in value: Any) -> [any AnySetting] {
        Mirror(reflecting: value).children.flatMap { child -> [any AnySetting] in
            if let setting = child.value as? any AnySetting { return [setting] }
            return declarations(in: child.value)
        }
    }

    /// The declaration of `key`.
    static func setting(_ key: String) -> (any AnySetting)? {
        all.first { $0.key == key }
    }

    /// The setting of each flag (aliases included), and the flags that name the configuration itself.
    static let settingsByFlag: [String: any AnySetting] = {
        var flags: [String: any AnySetting] = [:]
        for setting in all {
            for flag in setting.flags { flags[flag] = setting }
        }
        return flags
    }()

    /// Every flag the settings read: the settings' own, `--config`, `--secrets-directory` and `--kafka-config`.
    public static var flags: Set<String> {
        Set(settingsByFlag.keys).union([configFileFlag, secretsDirectoryFlag, kafkaConfigFlag])
    }

    /// The environment variables of `setting`, in precedence order: `MIOCTX_` + the key as swift-configuration's
    /// `EnvironmentVariablesProvider` encodes it (`processing.maxInFlight` -> `MIOCTX_PROCESSING_MAX_IN_FLIGHT`),
    /// then the setting's other names.
    static func variables(of setting: any AnySetting) -> [String] {
        variablesByKey[setting.key] ?? encodedVariables(of: setting)
    }

    private static let variablesByKey: [String: [String]] = Dictionary(
        uniqueKeysWithValues: all.map { ($0.key, encodedVariables(of: $0)) }
    )

    private static func encodedVariables(of setting: any AnySetting) -> [String] {
        guard setting.hasPrefixedVariable else { return setting.otherVariables }
        let encoder = KeyMappingProvider(
            upstream: EnvironmentVariablesProvider(environmentVariables: [:]),
            keyMapper: { $0.prepending(["mioctx"]) }
        )
        let key = AbsoluteConfigKey(setting.key.split(separator: ".").map(String.init))
        let prefixed = (try? encoder.value(forKey: key, type: .string).encodedKey) ?? setting.key
        return [prefixed] + setting.otherVariables
    }

    /// The keys a file may set with one value.
    static var fileKeys: [String] {
        all.filter { $0.layers == .all && !($0 is PropertyMapSetting) }.map(\.key)
    }

    /// `kafka`, `mio`, `processing`, `processing.retry`, ...: every key's enclosing mappings (those of
    /// environment-only keys too, so that such a key in the file is named with the variable to use instead).
    static let sections: Set<String> = {
        var sections: Set<String> = []
        for setting in all {
            let components = setting.key.split(separator: ".")
            for length in 1..<components.count {
                sections.insert(components.prefix(length).joined(separator: "."))
            }
        }
        return sections
    }()

    /// Why `key` is not accepted in the file, with the likely intended key when one is close.
    static func unknownKeyMessage(_ key: String) -> String {
        let environmentOnly = all.filter { $0.layers == .environmentOnly }
        if let setting = environmentOnly.first(where: { $0.key.lowercased() == key.lowercased() }),
            let variable = variables(of: setting).first
        {
            return "not read from the file: it comes only from the environment variable \(variable)"
        }
        let candidates = all.filter { $0.layers == .all }.map(\.key) + sections
        let best = candidates.map { ($0, editDistance($0.lowercased(), key.lowercased())) }.min { $0.1 < $1.1 }
        if let (candidate, distance) = best, distance <= max(2, key.count / 5) {
            return "unknown key (did you mean \(candidate)?)"
        }
        return "unknown key"
    }

    /// Levenshtein distance.
    private static func editDistance(_ left: String, _ right: String) -> Int {
        let left = Array(left)
        let right = Array(right)
        var previous = Array(0...right.count)
        for (i, l) in left.enumerated() {
            var current = [i + 1]
            for (j, r) in right.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (l == r ? 0 : 1)))
            }
            previous = current
        }
        return previous[right.count]
    }
}
