import Configuration
import Foundation
import Synchronization

/// Loads the settings of ``SettingsCatalog``: defaults < YAML file < secrets directory < environment < flags.
///
/// Each layer is a swift-configuration provider: the file a `FileProvider<YAMLSnapshot>`, secrets mounted as files
/// a `DirectoryFilesProvider` (a file per setting, named like its first environment variable), the environment an
/// `EnvironmentVariablesProvider`, the flags an `InMemoryProvider`. A setting is read through one `ConfigReader`
/// over the layers that may set it, in precedence order; its access reporter tells which layer supplied the value,
/// for `config check` and for messages that say where a bad value came from. Every value is read as text and
/// parsed by the setting's declaration, so a bad value gets the same message whatever its source.
///
/// Loading never stops at the first problem: it collects them all and throws one ``SettingsError``.
public struct SettingsLoader: Sendable {
    /// The settings flags given on the command line.
    public var arguments: SettingsArguments
    /// The process environment.
    public var environment: [String: String]
    /// What the command cannot do without (Mio credentials, token keys).
    public var requirements: SettingRequirement

    /// Creates a loader.
    /// - Parameters:
    ///   - arguments: The settings flags given.
    ///   - environment: The environment; an empty variable counts as unset, as in the Mio SDK.
    ///   - requirements: What the command needs; a missing required setting is a problem.
    public init(
        arguments: SettingsArguments = SettingsArguments(),
        environment: [String: String],
        requiring requirements: SettingRequirement
    ) {
        self.arguments = arguments
        self.environment = environment.filter { !$0.value.isEmpty }
        self.requirements = requirements
    }

    /// Loads and validates the settings.
    /// - Returns: The settings with the source of each value.
    /// - Throws: ``SettingsError`` listing every problem: the configuration file's, then each setting's in
    ///   documentation order, then those that involve two settings.
    public func load() async throws -> EffectiveSettings {
        var problems: [SettingsProblem] = []
        let configFile = location(flag: SettingsCatalog.configFileFlag, variable: SettingsCatalog.configFileVariable)
        var file: SettingsFile?
        if let configFile {
            let loaded = await SettingsFile.load(path: configFile.path, pathSource: configFile.source)
            file = loaded.file
            problems += loaded.problems
        }
        var layers = Layers(arguments: arguments, environment: environment, file: file)
        if let directory = location(
            flag: SettingsCatalog.secretsDirectoryFlag, variable: SettingsCatalog.secretsDirectoryVariable
        ) {
            do {
                layers.secrets = (try await Self.secretsProvider(directory.path), directory.path)
            } catch {
                problems.append(
                    SettingsProblem(
                        setting: "secrets", message: "the directory \(directory.path) cannot be read",
                        source: directory.source
                    )
                )
            }
        }
        var kafkaConfig: (file: KafkaPropertiesFile, path: String)?
        if let location = location(flag: SettingsCatalog.kafkaConfigFlag, variable: SettingsCatalog.kafkaConfigVariable) {
            switch Self.loadKafkaConfig(location.path) {
            case .success(let file): kafkaConfig = (file, location.path)
            case .failure(let problem):
                problems.append(SettingsProblem(setting: "kafka-config", message: problem.message, source: location.source))
            }
        }
        var resolver = Resolver(layers: layers, requirements: requirements)
        for setting in SettingsCatalog.all {
            if let properties = setting as? PropertyMapSetting {
                resolver.resolveProperties(
                    properties, file: file, kafkaConfig: kafkaConfig, flagValues: arguments.values(of: properties.flags)
                )
            } else {
                resolver.resolve(setting)
            }
        }
        resolver.checkCombinations()
        problems += resolver.problems
        guard problems.isEmpty else {
            throw SettingsError(code: .invalidConfiguration, problems: problems)
        }
        return resolver.settings(configFile: configFile?.path)
    }

    /// Reads a librdkafka properties file, or says what is wrong with it.
    private static func loadKafkaConfig(_ path: String) -> Result<KafkaPropertiesFile, KafkaConfigProblem> {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return .failure(KafkaConfigProblem("the librdkafka properties file \(path) does not exist"))
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path),
            let text = String(data: data, encoding: .utf8)
        else {
            return .failure(KafkaConfigProblem("the librdkafka properties file \(path) cannot be read as UTF-8 text"))
        }
        do {
            return .success(try KafkaPropertiesFile(parsing: text))
        } catch {
            return .failure(KafkaConfigProblem("the librdkafka properties file \(path): \(error)"))
        }
    }

    /// A path given by `flag`, else by `variable`.
    private func location(flag: String, variable: String) -> (path: String, source: SettingSource)? {
        if let path = arguments.values(of: [flag]).last {
            return (path.value, .flag(name: path.flag))
        }
        if let path = environment[variable] {
            return (path, .environment(variable: variable))
        }
        return nil
    }

    /// swift-configuration's provider for a directory of secrets (its path is read through a `ConfigReader`,
    /// sparing a dependency on swift-system's `FilePath`).
    private static func secretsProvider(_ path: String) async throws -> DirectoryFilesProvider {
        let location = InMemoryProvider(values: ["directoryPath": ConfigValue(.string(path), isSecret: false)])
        return try await DirectoryFilesProvider(
            directoryPath: ConfigReader(provider: location).requiredString(forKey: "directoryPath")
        )
    }
}

/// The providers, and where each one's values come from.
struct Layers {
    let flags: InMemoryProvider
    /// The flag given for each key (the last one, when a setting's flag and its alias are both given).
    let flagNames: [String: String]
    let environment: EnvironmentVariablesProvider
    let rawEnvironment: [String: String]
    let file: SettingsFile?
    var secrets: (provider: DirectoryFilesProvider, path: String)?

    init(arguments: SettingsArguments, environment: [String: String], file: SettingsFile?) {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        var flagNames: [String: String] = [:]
        for (flag, value) in arguments.values {
            guard let setting = SettingsCatalog.settingsByFlag[flag], !(setting is PropertyMapSetting) else { continue }
            values[Self.configKey(setting.key)] = ConfigValue(.string(value), isSecret: setting.isSecret)
            flagNames[setting.key] = flag
        }
        self.flags = InMemoryProvider(name: "flags", values: values)
        self.flagNames = flagNames
        let secretVariables = SettingsCatalog.all.filter { $0.isSecret }.flatMap { SettingsCatalog.variables(of: $0) }
        self.environment = EnvironmentVariablesProvider(
            environmentVariables: environment,
            secretsSpecifier: .specific(Set(secretVariables + ["MIOCTX_KAFKA_PROPERTIES"]))
        )
        self.rawEnvironment = environment
        self.file = file
    }

    static func configKey(_ key: String) -> AbsoluteConfigKey {
        AbsoluteConfigKey(key.split(separator: ".").map(String.init))
    }

    /// The layers that may set `setting`, highest precedence first, each with the source it stands for.
    func providers(for setting: any AnySetting) -> [(provider: any ConfigProvider, source: SettingSource)] {
        var providers: [(provider: any ConfigProvider, source: SettingSource)] = []
        if let flag = flagNames[setting.key] {
            providers.append((flags, .flag(name: flag)))
        }
        let variables = SettingsCatalog.variables(of: setting)
        for variable in variables {
            let named = KeyMappingProvider(upstream: environment) { _ in AbsoluteConfigKey([variable]) }
            providers.append((named, .environment(variable: variable)))
        }
        if let secrets, let variable = variables.first {
            let named = KeyMappingProvider(upstream: secrets.provider) { _ in AbsoluteConfigKey([variable]) }
            let path = URL(fileURLWithPath: secrets.path).appendingPathComponent(variable).path
            providers.append((named, .secretFile(path: path)))
        }
        if setting.layers == .all, let file, let provider = file.provider, !file.keysWithoutValue.contains(setting.key) {
            providers.append((provider, .file(path: file.path)))
        }
        return providers
    }
}

/// Keeps the last access event of a `ConfigReader`: which of its providers supplied the value.
private final class LastAccess: AccessReporter, Sendable {
    private let event = Mutex<AccessEvent?>(nil)

    func report(_ event: AccessEvent) {
        self.event.withLock { $0 = event }
    }

    var last: AccessEvent? { event.withLock { $0 } }
}

/// A value as one layer delivered it.
struct RawSetting {
    var text: String
    var source: SettingSource
}

/// Resolves each setting through the layers, collecting values, sources and problems.
struct Resolver {
    let layers: Layers
    let requirements: SettingRequirement
    var problems: [SettingsProblem] = []
    var values: [String: any Sendable] = [:]
    var sources: [String: SettingSource] = [:]
    var properties: [String: String] = [:]
    var propertySources: [String: SettingSource] = [:]
    /// The values that were set and parsed, for the checks that involve two settings.
    var accepted: [String: RawSetting] = [:]
    /// The keys whose value was refused (their default stands in, and is not checked against others).
    var refused: Set<String> = []

    init(layers: Layers, requirements: SettingRequirement) {
        self.layers = layers
        self.requirements = requirements
    }

    mutating func report(_ key: String, _ message: String, _ source: SettingSource?) {
        problems.append(SettingsProblem(setting: key, message: message, source: source))
    }

    /// The text of `setting` from the highest layer that sets it, and that layer.
    mutating func lookup(_ setting: any AnySetting) -> RawSetting? {
        let providers = layers.providers(for: setting)
        guard !providers.isEmpty else { return nil }
        let access = LastAccess()
        let reader = ConfigReader(providers: providers.map(\.provider), accessReporter: access)
        let text = reader.string(forKey: ConfigKey(setting.key.split(separator: ".").map(String.init)))
        guard let event = access.last else { return nil }
        if case .failure(let error) = event.result {
            report(setting.key, "cannot be read: \(type(of: error))", nil)
            return nil
        }
        guard let text, let index = event.providerResults.lastIndex(where: { result in
            if case .success(let lookup) = result.result { return lookup.value != nil }
            return false
        }), index < providers.count
        else {
            return nil
        }
        return RawSetting(text: text, source: providers[index].source)
    }

    /// Reads, parses and records `setting`.
    mutating func resolve(_ setting: any AnySetting) {
        guard let raw = lookup(setting) else {
            sources[setting.key] = .default
            if !setting.requirement.isDisjoint(with: requirements) {
                let variable = SettingsCatalog.variables(of: setting).first ?? setting.key
                report(setting.key, "is required: set the environment variable \(variable)", nil)
            }
            return
        }
        sources[setting.key] = raw.source
        switch setting.parseAny(raw.text) {
        case .success(let value):
            values[setting.key] = value
            accepted[setting.key] = raw
        case .failure(let failure):
            let message: String
            switch setting.secrecy {
            case .plain: message = "\(failure.message), got \(quote(raw.text))"
            case .secret: message = failure.message
            case .redacted(let redact): message = "\(failure.message), got \(quote(redact(raw.text)))"
            }
            report(setting.key, message, raw.source)
            refused.insert(setting.key)
        }
    }

    /// The effective settings.
    func settings(configFile: String?) -> EffectiveSettings {
        EffectiveSettings(
            values: values, sources: sources, kafkaProperties: properties, propertySources: propertySources,
            configFile: configFile
        )
    }
}

/// `"text"` with quotes and backslashes escaped.
func quote(_ text: String) -> String {
    "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

/// Why a librdkafka properties file cannot be used.
struct KafkaConfigProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
