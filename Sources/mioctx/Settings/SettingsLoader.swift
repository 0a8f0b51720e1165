import Configuration
import Pipeline
import Foundation
import Logging
import MioTokens

/// The effective settings and the source of each one, as `mioctx config check` shows them.
struct EffectiveSettings: Sendable {
    /// The settings.
    var settings: MioctxSettings
    /// The source of each key (`processing.maxInFlight`, `mio.clientSecret`, ...).
    var sources: [String: SettingSource]
    /// The source of each librdkafka property, by name.
    var propertySources: [String: SettingSource]
    /// The configuration file read, if any.
    var configFile: String?
}

/// Loads ``MioctxSettings``: defaults < YAML file < environment variables < command-line flags.
///
/// The layers are swift-configuration providers: the file a `FileProvider<YAMLSnapshot>`, the environment an
/// `EnvironmentVariablesProvider` behind a `KeyMappingProvider` that adds the `mioctx` prefix (so its key encoding
/// yields `MIOCTX_PROCESSING_MAX_IN_FLIGHT`), the flags an `InMemoryProvider`. The loader asks them itself, in
/// precedence order, rather than through one `ConfigReader`, because it must know which layer supplied each value:
/// for `config check` and for messages that say where a bad value came from. Every value is read as text and
/// parsed here, so a bad value gets the same message whatever its source.
///
/// Loading never stops at the first problem: it collects them all and throws one ``SettingsError``.
struct SettingsLoader: Sendable {
    /// The configuration file and where its path came from; `nil` for none.
    var configFile: (path: String, source: SettingSource)?
    /// Flag values by key (`processing.maxInFlight`), as typed.
    var flagValues: [String: String]
    /// `--kafka-property name=value` entries, in order.
    var flagProperties: [String]
    /// The process environment.
    var environment: [String: String]

    private let schema = SettingsSchema()

    /// Creates a loader.
    init(
        configFile: (path: String, source: SettingSource)?,
        flagValues: [String: String],
        flagProperties: [String],
        environment: [String: String]
    ) {
        self.configFile = configFile
        self.flagValues = flagValues
        self.flagProperties = flagProperties
        self.environment = environment
    }

    /// Loads and validates the settings.
    /// - Returns: The settings with the source of each value.
    /// - Throws: ``SettingsError`` listing every problem: the configuration file's, then each setting's in
    ///   documentation order, then those that involve two settings.
    func load() async throws -> EffectiveSettings {
        var problems: [SettingsProblem] = []
        var file: SettingsFile?
        if let configFile {
            let loaded = await SettingsFile.load(path: configFile.path, pathSource: configFile.source, schema: schema)
            file = loaded.file
            problems += loaded.problems
        }
        var resolver = Resolver(layers: makeLayers(file: file))
        var settings = MioctxSettings()
        resolver.resolveKafka(into: &settings.kafka, file: file, flagProperties: flagProperties)
        resolver.resolveMio(into: &settings.mio)
        resolver.resolveTokens(into: &settings.tokens)
        resolver.resolveProcessing(into: &settings.processing)
        resolver.resolveHTTPAndLog(into: &settings)
        resolver.resolveOAuth(into: &settings.oauth)
        resolver.checkCombinations(&settings)
        problems += resolver.problems
        guard problems.isEmpty else {
            throw SettingsError(code: .invalidConfiguration, problems: problems)
        }
        return EffectiveSettings(
            settings: settings,
            sources: resolver.sources,
            propertySources: resolver.propertySources,
            configFile: configFile?.path
        )
    }

    private func makeLayers(file: SettingsFile?) -> Layers {
        // An empty variable counts as unset, as in the Mio SDK.
        let environment = self.environment.filter { !$0.value.isEmpty }
        let secretVariables: Set<String> = [
            "MIO_CLIENT_SECRET", TokenKeyring.keysEnvironmentVariable, "MIOCTX_KAFKA_PROPERTIES",
            MioctxSettings.OAuthSettings.stateKeyVariable,
        ]
        let environmentProvider = KeyMappingProvider(
            upstream: EnvironmentVariablesProvider(
                environmentVariables: environment,
                secretsSpecifier: .specific(secretVariables)
            ),
            keyMapper: { $0.prepending(["mioctx"]) }
        )
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, value) in self.flagValues {
            flagValues[Layers.configKey(key)] = ConfigValue(.string(value), isSecret: false)
        }
        return Layers(
            flags: InMemoryProvider(name: "flags", values: flagValues),
            environment: environmentProvider,
            rawEnvironment: environment,
            file: file
        )
    }
}

/// A value as one layer delivered it.
private struct RawSetting {
    var text: String
    var source: SettingSource
}

/// The providers, highest precedence first.
private struct Layers {
    let flags: InMemoryProvider
    let environment: KeyMappingProvider<EnvironmentVariablesProvider>
    let rawEnvironment: [String: String]
    let file: SettingsFile?

    static func configKey(_ key: String) -> AbsoluteConfigKey {
        AbsoluteConfigKey(key.split(separator: ".").map(String.init))
    }

    /// The value of `key` from the highest layer that sets it: flag, `MIOCTX_` variable, alias variable, file.
    func lookup(_ key: String) throws -> RawSetting? {
        let configKey = Self.configKey(key)
        if case .string(let text)? = try flags.value(forKey: configKey, type: .string).value?.content {
            return RawSetting(text: text, source: .flag(name: SettingsSchema.flags[key] ?? key))
        }
        let fromEnvironment = try environment.value(forKey: configKey, type: .string)
        if case .string(let text)? = fromEnvironment.value?.content {
            return RawSetting(text: text, source: .environment(variable: fromEnvironment.encodedKey))
        }
        for alias in SettingsSchema.environmentAliases[key] ?? [] {
            if let text = rawEnvironment[alias] {
                return RawSetting(text: text, source: .environment(variable: alias))
            }
        }
        if let file, let provider = file.provider, !file.keysWithoutValue.contains(key),
            case .string(let text)? = try provider.value(forKey: configKey, type: .string).value?.content
        {
            return RawSetting(text: text, source: .file(path: file.path))
        }
        return nil
    }

    /// The `MIOCTX_` variable of `key`, as swift-configuration encodes it.
    func environmentVariable(for key: String) -> String? {
        try? environment.value(forKey: Self.configKey(key), type: .string).encodedKey
    }
}

/// How a refused value is quoted in its message.
private enum Quoting {
    /// `got "value"`.
    case plain
    /// Not quoted at all.
    case secret
    /// Quoted after this redaction.
    case redacted(@Sendable (String) -> String)
}

/// Resolves each setting through the layers, collecting problems and sources.
private struct Resolver {
    let layers: Layers
    var problems: [SettingsProblem] = []
    var sources: [String: SettingSource] = [:]
    var propertySources: [String: SettingSource] = [:]
    /// The values that were set and parsed, for the checks that involve two settings.
    var accepted: [String: RawSetting] = [:]
    /// The keys whose value was refused (their default stands in, and is not checked against others).
    var refused: Set<String> = []

    init(layers: Layers) {
        self.layers = layers
    }

    mutating func report(_ key: String, _ message: String, _ source: SettingSource?) {
        problems.append(SettingsProblem(setting: key, message: message, source: source))
    }

    /// The value of `key`, or `nil` when no layer sets it (or it is refused: then a problem is recorded).
    mutating func optional<T>(
        _ key: String,
        quoting: Quoting = .plain,
        _ parse: (String) -> Result<T, SettingParseFailure>
    ) -> T? {
        let raw: RawSetting?
        do {
            raw = try layers.lookup(key)
        } catch {
            report(key, "cannot be read: \(error)", nil)
            return nil
        }
        guard let raw else {
            sources[key] = .default
            return nil
        }
        sources[key] = raw.source
        switch parse(raw.text) {
        case .success(let value):
            accepted[key] = raw
            return value
        case .failure(let failure):
            let message: String
            switch quoting {
            case .plain: message = "\(failure.message), got \(quote(raw.text))"
            case .secret: message = failure.message
            case .redacted(let redact): message = "\(failure.message), got \(quote(redact(raw.text)))"
            }
            report(key, message, raw.source)
            refused.insert(key)
            return nil
        }
    }

    /// The value of `key`, else `defaultValue`.
    mutating func value<T>(
        _ key: String,
        default defaultValue: T,
        quoting: Quoting = .plain,
        _ parse: (String) -> Result<T, SettingParseFailure>
    ) -> T {
        optional(key, quoting: quoting, parse) ?? defaultValue
    }

    // MARK: Sections

    mutating func resolveKafka(into kafka: inout MioctxSettings.KafkaSettings, file: SettingsFile?, flagProperties: [String]) {
        kafka.bootstrapServers = value("kafka.bootstrapServers", default: kafka.bootstrapServers) {
            SettingValueParsing.bootstrapServers($0)
        }
        kafka.groupID = value("kafka.groupId", default: kafka.groupID) { SettingValueParsing.nonEmpty($0) }
        kafka.inputTopic = value("kafka.inputTopic", default: kafka.inputTopic) { SettingValueParsing.topic($0) }
        kafka.outputTopic = value("kafka.outputTopic", default: kafka.outputTopic) { SettingValueParsing.topic($0) }
        kafka.deadLetterTopic = value("kafka.deadLetterTopic", default: kafka.deadLetterTopic) {
            SettingValueParsing.topic($0)
        }
        kafka.properties = resolveProperties(file: file, flagProperties: flagProperties)
    }

    /// `kafka.properties`: the file's map, then `MIOCTX_KAFKA_PROPERTIES`, then `--kafka-property`, merged by name.
    private mutating func resolveProperties(file: SettingsFile?, flagProperties: [String]) -> [String: String] {
        let key = SettingsSchema.kafkaPropertiesKey
        var properties: [String: String] = [:]
        func add(_ name: String, _ value: String, _ source: SettingSource) {
            properties[name] = value
            propertySources[name] = source
        }
        if let file {
            for (name, value) in file.properties { add(name, value, .file(path: file.path)) }
        }
        let variable = layers.environmentVariable(for: key) ?? "MIOCTX_KAFKA_PROPERTIES"
        if let list = layers.rawEnvironment[variable] {
            for (index, entry) in Self.splitPropertyList(list).enumerated() {
                guard let (name, value) = Self.splitProperty(entry) else {
                    report(key, "entry \(index + 1) must be name=value", .environment(variable: variable))
                    continue
                }
                add(name, value, .environment(variable: variable))
            }
        }
        let flag = SettingsSchema.flags[key] ?? key
        for (index, entry) in flagProperties.enumerated() {
            guard let (name, value) = Self.splitProperty(entry) else {
                report(key, "entry \(index + 1) must be name=value", .flag(name: flag))
                continue
            }
            add(name, value, .flag(name: flag))
        }
        for name in properties.keys.sorted() {
            guard let reason = Self.reservedProperties[name] else { continue }
            report("\(key).\(name)", reason, propertySources[name])
            properties[name] = nil
            propertySources[name] = nil
        }
        if properties.isEmpty { sources[key] = .default }
        return properties
    }

    /// librdkafka properties that mioctx owns.
    static let reservedProperties: [String: String] = [
        "bootstrap.servers": "is set by kafka.bootstrapServers, not as a property",
        "group.id": "is set by kafka.groupId, not as a property",
        "enable.auto.commit": "cannot be set: mioctx commits an offset only after its result is delivered",
        "enable.auto.offset.store": "cannot be set: mioctx stores an offset only after its result is delivered",
    ]

    /// Splits `a=1,b=2` at commas not preceded by a backslash (and at new lines); `\,` stands for a comma.
    static func splitPropertyList(_ list: String) -> [String] {
        var entries: [String] = []
        var current = ""
        var escaped = false
        for character in list {
            if escaped {
                if character != "," { current.append("\\") }
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "," || character == "\n" {
                entries.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        if escaped { current.append("\\") }
        entries.append(current)
        return entries.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }

    /// `name=value` (the value may hold `=`), with a non-empty name and value.
    static func splitProperty(_ entry: String) -> (String, String)? {
        guard let equals = entry.firstIndex(of: "=") else { return nil }
        let name = entry[..<equals].trimmingCharacters(in: .whitespaces)
        let value = entry[entry.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, !value.isEmpty, !name.contains(" ") else { return nil }
        return (name, value)
    }

    mutating func resolveMio(into mio: inout MioctxSettings.MioSettings) {
        mio.apiURL = value("mio.apiURL", default: mio.apiURL) { SettingValueParsing.httpURL($0) }
        mio.dashboardURL = value("mio.dashboardURL", default: mio.dashboardURL) { SettingValueParsing.httpURL($0) }
        mio.requestTimeout = value("mio.requestTimeout", default: mio.requestTimeout) {
            SettingValueParsing.duration($0, in: .milliseconds(1) ... .seconds(600))
        }
        mio.maxConnections = value("mio.maxConnections", default: mio.maxConnections) {
            SettingValueParsing.integer($0, in: 1...10_000)
        }
        mio.clientID = credential("mio.clientID") ?? ""
        mio.clientSecret = credential("mio.clientSecret") ?? ""
        if let redirectURL = credential("mio.redirectURL") {
            switch SettingValueParsing.httpURL(redirectURL) {
            case .success(let url): mio.redirectURL = url
            case .failure(let failure):
                report("mio.redirectURL", "\(failure.message), got \(quote(redirectURL))", sources["mio.redirectURL"])
            }
        }
    }

    /// A Mio credential: only from the SDK's environment variable, and required.
    private mutating func credential(_ key: String) -> String? {
        let variable = SettingsSchema.environmentOnly[key] ?? key
        guard let value = layers.rawEnvironment[variable] else {
            report(key, "is required: set the environment variable \(variable)", nil)
            return nil
        }
        sources[key] = .environment(variable: variable)
        return value
    }

    mutating func resolveTokens(into tokens: inout MioctxSettings.TokenSettings) {
        tokens.store = value("tokens.store", default: tokens.store, quoting: .redacted(Self.redactStore)) { text in
            let text = text.trimmingCharacters(in: .whitespaces)
            let expected = "must be sqlite:PATH or postgres://user:password@host:port/database"
            do {
                _ = try TokenStoreLocation(parsing: text)
                return .success(text)
            } catch let error as TokenError where text.hasPrefix("postgres") || text.hasPrefix("sqlite:") {
                return .failure(SettingParseFailure(error.detail ?? expected))
            } catch {
                return .failure(SettingParseFailure(expected))
            }
        }
        tokens.keyFile = optional("tokens.keyFile") { SettingValueParsing.nonEmpty($0) }
        tokens.proactiveRefreshThreshold = value(
            "tokens.proactiveRefreshThreshold", default: tokens.proactiveRefreshThreshold
        ) { SettingValueParsing.number($0, in: 0...0.9) }
        let keysVariable = TokenKeyring.keysEnvironmentVariable
        if let keys = layers.rawEnvironment[keysVariable] {
            sources["tokens.keys"] = .environment(variable: keysVariable)
            do {
                _ = try TokenKeyring(parsing: keys)
                tokens.keys = keys
            } catch let error as TokenError {
                report("tokens.keys", error.detail ?? "is not a valid key list", .environment(variable: keysVariable))
            } catch {
                report("tokens.keys", "is not a valid key list", .environment(variable: keysVariable))
            }
        } else if let keyFile = tokens.keyFile {
            do {
                _ = try TokenKeyring.load(environment: [:], keyFile: keyFile)
            } catch let error as TokenError {
                report("tokens.keyFile", error.detail ?? "is not a valid key file", sources["tokens.keyFile"])
            } catch {
                report("tokens.keyFile", "is not a valid key file", sources["tokens.keyFile"])
            }
        } else if !problems.contains(where: { $0.setting == "tokens.keyFile" }) {
            report(
                "tokens.keys",
                "no token encryption key: set \(keysVariable)=kid:base64key or tokens.keyFile "
                    + "(create a key with `mioctx tokens keygen`)",
                nil
            )
        }
    }

    /// A store location with the password of a PostgreSQL URL hidden.
    static let redactStore: @Sendable (String) -> String = { TokenStoreLocation.postgresRedacted($0) }

    mutating func resolveProcessing(into processing: inout MioctxSettings.ProcessingSettings) {
        processing.maxInFlight = value("processing.maxInFlight", default: processing.maxInFlight) {
            SettingValueParsing.integer($0, in: 1...100_000)
        }
        processing.maxInFlightPerUser = value("processing.maxInFlightPerUser", default: processing.maxInFlightPerUser) {
            SettingValueParsing.integer($0, in: 1...100_000)
        }
        processing.ordering = value("processing.ordering", default: processing.ordering) {
            SettingValueParsing.choice($0, SchedulingConfiguration.Ordering.allCases.map { ($0.rawValue, $0) })
        }
        processing.requestsPerSecond = optional("processing.requestsPerSecond") { text in
            if text.trimmingCharacters(in: .whitespaces) == "unlimited" { return .success(nil) }
            guard let rate = Double(text.trimmingCharacters(in: .whitespaces)), rate.isFinite else {
                return .failure("must be a number of requests per second greater than 0, or unlimited")
            }
            guard rate > 0 else { return .failure("must be greater than 0 (leave it unset, or unlimited, for no cap)") }
            guard rate <= 1_000_000 else { return .failure("must be at most 1000000") }
            return .success(rate)
        } ?? nil
        let retry = processing.retry
        processing.retry.maxAttempts = value("processing.retry.maxAttempts", default: retry.maxAttempts) {
            SettingValueParsing.integer($0, in: 1...100)
        }
        processing.retry.maxTimePerJob = value("processing.retry.maxTimePerJob", default: retry.maxTimePerJob) {
            SettingValueParsing.duration($0, in: .milliseconds(100) ... .seconds(3600))
        }
        processing.retry.initialBackoff = value("processing.retry.initialBackoff", default: retry.initialBackoff) {
            SettingValueParsing.duration($0, in: .milliseconds(1) ... .seconds(60))
        }
        processing.retry.maxBackoff = value("processing.retry.maxBackoff", default: retry.maxBackoff) {
            SettingValueParsing.duration($0, in: .milliseconds(1) ... .seconds(600))
        }
        processing.commitInterval = value("processing.commitInterval", default: processing.commitInterval) {
            SettingValueParsing.duration($0, in: .milliseconds(10) ... .seconds(60))
        }
        processing.shutdownGracePeriod = value(
            "processing.shutdownGracePeriod", default: processing.shutdownGracePeriod
        ) { SettingValueParsing.duration($0, in: .zero ... .seconds(3600)) }
        processing.revocationGracePeriod = value(
            "processing.revocationGracePeriod", default: processing.revocationGracePeriod
        ) { SettingValueParsing.duration($0, in: .zero ... .seconds(600)) }
    }

    mutating func resolveHTTPAndLog(into settings: inout MioctxSettings) {
        settings.http.host = value("http.host", default: settings.http.host) { SettingValueParsing.nonEmpty($0) }
        settings.http.port = value("http.port", default: settings.http.port) {
            SettingValueParsing.integer($0, in: 0...65_535)
        }
        settings.log.level = value("log.level", default: settings.log.level) {
            SettingValueParsing.choice($0, Logger.Level.allCases.map { ($0.rawValue, $0) })
        }
        settings.log.format = optional("log.format") {
            SettingValueParsing.choice(
                $0, [("json", .json), ("text", .text), ("auto", nil)] as [(String, MioctxSettings.LogSettings.Format?)]
            )
        } ?? nil
    }

    /// The OAuth state key: from the environment only, base64 of at least 32 bytes; never quoted.
    mutating func resolveOAuth(into oauth: inout MioctxSettings.OAuthSettings) {
        let variable = MioctxSettings.OAuthSettings.stateKeyVariable
        guard let text = layers.rawEnvironment[variable] else { return }
        sources["oauth.stateKey"] = .environment(variable: variable)
        guard let key = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)), key.count >= 32 else {
            report(
                "oauth.stateKey",
                "must be base64 of at least 32 random bytes (create one with `openssl rand -base64 32`)",
                .environment(variable: variable)
            )
            return
        }
        oauth.stateKey = key
    }

    /// Checks between settings, skipping any whose own value was refused.
    mutating func checkCombinations(_ settings: inout MioctxSettings) {
        let processing = settings.processing
        if processing.maxInFlightPerUser > processing.maxInFlight,
            refused.isDisjoint(with: ["processing.maxInFlight", "processing.maxInFlightPerUser"])
        {
            if let perUser = accepted["processing.maxInFlightPerUser"] {
                report(
                    "processing.maxInFlightPerUser",
                    "must not exceed processing.maxInFlight (\(processing.maxInFlight)), got \(quote(perUser.text))",
                    perUser.source
                )
            } else {
                // Only the total was set, below the per-user default: the default follows it down.
                settings.processing.maxInFlightPerUser = processing.maxInFlight
            }
        }
        if processing.retry.maxBackoff < processing.retry.initialBackoff,
            refused.isDisjoint(with: ["processing.retry.maxBackoff", "processing.retry.initialBackoff"])
        {
            if let maxBackoff = accepted["processing.retry.maxBackoff"] {
                let initial = SettingValueParsing.format(processing.retry.initialBackoff)
                report(
                    "processing.retry.maxBackoff",
                    "must be at least processing.retry.initialBackoff (\(initial)), got \(quote(maxBackoff.text))",
                    maxBackoff.source
                )
            } else if let initialBackoff = accepted["processing.retry.initialBackoff"] {
                let maximum = SettingValueParsing.format(processing.retry.maxBackoff)
                report(
                    "processing.retry.initialBackoff",
                    "must not exceed processing.retry.maxBackoff (\(maximum)), got \(quote(initialBackoff.text))",
                    initialBackoff.source
                )
            }
        }
        for key in ["kafka.outputTopic", "kafka.deadLetterTopic"] where !refused.contains(key) {
            let topic = key == "kafka.outputTopic" ? settings.kafka.outputTopic : settings.kafka.deadLetterTopic
            guard topic == settings.kafka.inputTopic, !refused.contains("kafka.inputTopic") else { continue }
            report(key, "must differ from kafka.inputTopic, got \(quote(topic))", sources[key])
        }
    }
}

/// `"text"` with quotes and backslashes escaped.
private func quote(_ text: String) -> String {
    "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

extension MioctxSettings.TokenSettings {
    /// The encryption keys: ``keys`` (from `MIOCTX_TOKEN_KEYS`) when set, else those of ``keyFile``.
    /// - Throws: `TokenError` when neither holds a valid key (loading has already checked this).
    func keyring() throws -> TokenKeyring {
        if let keys { return try TokenKeyring(parsing: keys) }
        return try TokenKeyring.load(environment: [:], keyFile: keyFile)
    }
}
