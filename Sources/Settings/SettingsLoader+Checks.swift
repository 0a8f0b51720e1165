import Foundation
import MioTokens

extension Resolver {
    /// `kafka.properties`: the YAML file's map, then the properties file's (`--kafka-config`), then the
    /// environment's list, then the flags' entries, merged by name.
    mutating func resolveProperties(
        _ setting: PropertyMapSetting,
        file: SettingsFile?,
        kafkaConfig: (file: KafkaPropertiesFile, path: String)?,
        flagValues: [(flag: String, value: String)]
    ) {
        let key = setting.key
        func add(_ name: String, _ value: String, _ source: SettingSource) {
            properties[name] = value
            propertySources[name] = source
        }
        if let file {
            for (name, value) in file.properties { add(name, value, .file(path: file.path)) }
        }
        if let kafkaConfig {
            for (name, value) in kafkaConfig.file.properties { add(name, value, .file(path: kafkaConfig.path)) }
        }
        for variable in SettingsCatalog.variables(of: setting) {
            guard let list = layers.rawEnvironment[variable] else { continue }
            for (index, entry) in KafkaPropertyList.split(list).enumerated() {
                guard let (name, value) = KafkaPropertyList.property(entry) else {
                    report(key, "entry \(index + 1) must be name=value", .environment(variable: variable))
                    continue
                }
                add(name, value, .environment(variable: variable))
            }
        }
        for (index, entry) in flagValues.enumerated() {
            guard let (name, value) = KafkaPropertyList.property(entry.value) else {
                report(key, "entry \(index + 1) must be name=value", .flag(name: entry.flag))
                continue
            }
            guard !PropertyMapSetting.isSecretProperty(name) else {
                let variable = SettingsCatalog.variables(of: setting).first ?? key
                report(
                    "\(key).\(name)",
                    "is a secret and is not accepted on the command line (visible in /proc/*/cmdline and shell "
                        + "history): set it in \(variable), a properties file (\(SettingsCatalog.kafkaConfigFlag)) or the "
                        + "configuration file's \(key)",
                    .flag(name: entry.flag)
                )
                continue
            }
            add(name, value, .flag(name: entry.flag))
        }
        for name in properties.keys.sorted() {
            guard let reason = setting.reserved[name] else { continue }
            report("\(key).\(name)", reason, propertySources[name])
            properties[name] = nil
            propertySources[name] = nil
        }
        sources[key] = .default
    }

    /// Checks between settings, skipping any whose own value was refused.
    mutating func checkCombinations() {
        let catalog = SettingsCatalog.shared
        checkLimits(catalog.processing)
        checkBackoff(catalog.processing.retry)
        checkPlainHTTP(catalog.mio)
        let input = catalog.kafka.inputTopic
        for topic in [catalog.kafka.outputTopic, catalog.kafka.deadLetterTopic] where !refused.contains(topic.key) {
            guard value(topic) == value(input), !refused.contains(input.key) else { continue }
            report(topic.key, "must differ from \(input.key), got \(quote(value(topic)))", sources[topic.key])
        }
        if !requirements.isDisjoint(with: .tokenKeys) {
            checkTokenKeys(catalog.tokens)
        }
        checkStoreURLPassword(catalog.tokens.store)
        checkOAuthListener(catalog)
    }

    /// A PostgreSQL URL with a password is refused as a flag: the command line is visible to every local user.
    private mutating func checkStoreURLPassword(_ store: Setting<RedactingURL>) {
        guard case .flag(let flag) = sources[store.key], !refused.contains(store.key), value(store).hasPassword
        else { return }
        let variable = SettingsCatalog.variables(of: store).first ?? store.key
        report(
            store.key,
            "holds a password and is not accepted as \(flag) (visible in /proc/*/cmdline and shell history): set "
                + "\(variable), or the configuration file's \(store.key), or leave the password out and use PGPASSFILE",
            .flag(name: flag)
        )
    }

    /// The OAuth listener needs the state key (the application's backend signs connect links with it) and a port
    /// of its own.
    private mutating func checkOAuthListener(_ catalog: SettingsCatalog) {
        let oauth = catalog.oauth
        guard value(oauth.enabled), !refused.contains(oauth.enabled.key) else { return }
        if value(oauth.stateKey) == nil, !refused.contains(oauth.stateKey.key) {
            let variable = SettingsCatalog.variables(of: oauth.stateKey).first ?? oauth.stateKey.key
            report(
                oauth.stateKey.key,
                "is required when \(oauth.enabled.key) is true: set \(variable) to the key the application's "
                    + "backend signs connect links with (`openssl rand -base64 32`)",
                nil
            )
        }
        if value(oauth.port) != 0, value(oauth.port) == value(catalog.http.port),
            refused.isDisjoint(with: [oauth.port.key, catalog.http.port.key])
        {
            report(
                oauth.port.key, "must differ from \(catalog.http.port.key) (\(value(catalog.http.port))): the OAuth "
                    + "listener is apart from the operations listener", sources[oauth.port.key]
            )
        }
    }

    /// `mio.apiURL` and `mio.redirectURL` over https, or http only to loopback or a host of `mio.plainHTTPHosts`.
    private mutating func checkPlainHTTP(_ mio: SettingsCatalog.Mio) {
        let plainHosts = value(mio.plainHTTPHosts)
        for setting in [mio.apiURL, mio.redirectURL] where !refused.contains(setting.key) {
            guard let given = accepted[setting.key],
                case .failure(let failure) = SettingValueParsing.secureURL(given.text, plainHosts: plainHosts)
            else { continue }
            report(
                setting.key,
                failure.message + "; a development network's simulator may be named in \(mio.plainHTTPHosts.key), "
                    + "got \(quote(given.text))",
                given.source
            )
        }
    }

    /// The value of `setting` so far: accepted, else its default.
    func value<Value>(_ setting: Setting<Value>) -> Value {
        values[setting.key] as? Value ?? setting.defaultValue
    }

    private mutating func checkLimits(_ processing: SettingsCatalog.Processing) {
        let total = processing.maxInFlight
        let perUser = processing.maxInFlightPerUser
        guard value(perUser) > value(total), refused.isDisjoint(with: [total.key, perUser.key]) else { return }
        if let given = accepted[perUser.key] {
            report(
                perUser.key, "must not exceed \(total.key) (\(value(total))), got \(quote(given.text))", given.source
            )
        } else {
            // Only the total was set, below the per-user default: the default follows it down.
            values[perUser.key] = value(total)
        }
    }

    private mutating func checkBackoff(_ retry: SettingsCatalog.Retry) {
        let initial = retry.initialBackoff
        let maximum = retry.maxBackoff
        guard value(maximum) < value(initial), refused.isDisjoint(with: [initial.key, maximum.key]) else { return }
        if let given = accepted[maximum.key] {
            let bound = initial.format(value(initial))
            report(maximum.key, "must be at least \(initial.key) (\(bound)), got \(quote(given.text))", given.source)
        } else if let given = accepted[initial.key] {
            let bound = maximum.format(value(maximum))
            report(initial.key, "must not exceed \(maximum.key) (\(bound)), got \(quote(given.text))", given.source)
        }
    }

    /// A key is needed: `tokens.keys`, else a readable `tokens.keyFile`.
    private mutating func checkTokenKeys(_ tokens: SettingsCatalog.Tokens) {
        guard sources[tokens.keys.key] == .default, !refused.contains(tokens.keys.key) else { return }
        if let keyFile = value(tokens.keyFile) {
            do {
                _ = try TokenKeyring.load(environment: [:], keyFile: keyFile)
            } catch let error as TokenError {
                report(tokens.keyFile.key, error.detail ?? "is not a valid key file", sources[tokens.keyFile.key])
            } catch {
                report(tokens.keyFile.key, "is not a valid key file", sources[tokens.keyFile.key])
            }
        } else if !refused.contains(tokens.keyFile.key) {
            let variable = SettingsCatalog.variables(of: tokens.keys).first ?? tokens.keys.key
            report(
                tokens.keys.key,
                "no token encryption key: set \(variable)=kid:base64key or \(tokens.keyFile.key) "
                    + "(create a key with `mioctx tokens keygen`)",
                nil
            )
        }
    }
}

/// `MIOCTX_KAFKA_PROPERTIES` and `--kafka-property` entries.
enum KafkaPropertyList {
    /// Splits `a=1,b=2` at commas not preceded by a backslash (and at new lines); `\,` stands for a comma.
    static func split(_ list: String) -> [String] {
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
    static func property(_ entry: String) -> (String, String)? {
        guard let equals = entry.firstIndex(of: "=") else { return nil }
        let name = entry[..<equals].trimmingCharacters(in: .whitespaces)
        let value = entry[entry.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, !value.isEmpty, !name.contains(" ") else { return nil }
        return (name, value)
    }
}
