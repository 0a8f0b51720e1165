import Pipeline
import Foundation
import Logging
import MioTokens

extension EffectiveSettings {
    /// The text that stands for a secret value.
    static let redacted = "<redacted>"

    /// Whether a librdkafka property's value is a secret by its name (passwords, keys, tokens, JAAS configs).
    static func isSecretProperty(_ name: String) -> Bool {
        let name = name.lowercased()
        return ["password", "secret", "key", "token", "sasl.jaas"].contains { name.contains($0) }
    }

    /// The settings as YAML, each value followed by its source (`# default`, `# file`, `# env NAME`,
    /// `# flag --name`); secrets show as `<redacted>` and a PostgreSQL URL's password as `***`.
    var yamlDescription: String {
        let settings = self.settings
        let duration = SettingValueParsing.format(_:) as (Duration) -> String
        let entries: [(key: String, value: String)] = [
            ("kafka.bootstrapServers", settings.kafka.bootstrapServers),
            ("kafka.groupId", settings.kafka.groupID),
            ("kafka.inputTopic", settings.kafka.inputTopic),
            ("kafka.outputTopic", settings.kafka.outputTopic),
            ("kafka.deadLetterTopic", settings.kafka.deadLetterTopic),
            ("kafka.properties", ""),
            ("mio.apiURL", settings.mio.apiURL),
            ("mio.dashboardURL", settings.mio.dashboardURL),
            ("mio.clientID", settings.mio.clientID),
            ("mio.clientSecret", Self.redacted),
            ("mio.redirectURL", settings.mio.redirectURL),
            ("mio.requestTimeout", duration(settings.mio.requestTimeout)),
            ("mio.maxConnections", String(settings.mio.maxConnections)),
            ("tokens.store", TokenStoreLocation.postgresRedacted(settings.tokens.store)),
            ("tokens.keys", settings.tokens.keys == nil ? "~" : Self.redacted),
            ("tokens.keyFile", settings.tokens.keyFile ?? "~"),
            ("tokens.proactiveRefreshThreshold", SettingValueParsing.format(settings.tokens.proactiveRefreshThreshold)),
            ("processing.maxInFlight", String(settings.processing.maxInFlight)),
            ("processing.maxInFlightPerUser", String(settings.processing.maxInFlightPerUser)),
            ("processing.ordering", settings.processing.ordering.rawValue),
            ("processing.requestsPerSecond", settings.processing.requestsPerSecond.map(SettingValueParsing.format) ?? "unlimited"),
            ("processing.retry.maxAttempts", String(settings.processing.retry.maxAttempts)),
            ("processing.retry.maxTimePerJob", duration(settings.processing.retry.maxTimePerJob)),
            ("processing.retry.initialBackoff", duration(settings.processing.retry.initialBackoff)),
            ("processing.retry.maxBackoff", duration(settings.processing.retry.maxBackoff)),
            ("processing.commitInterval", duration(settings.processing.commitInterval)),
            ("processing.shutdownGracePeriod", duration(settings.processing.shutdownGracePeriod)),
            ("processing.revocationGracePeriod", duration(settings.processing.revocationGracePeriod)),
            ("http.host", settings.http.host),
            ("http.port", String(settings.http.port)),
            ("oauth.stateKey", settings.oauth.stateKey == nil ? "~" : Self.redacted),
            ("log.level", settings.log.level.rawValue),
            ("log.format", settings.log.format?.rawValue ?? "auto"),
        ]
        var lines = [
            "# mioctx effective configuration: each value is followed by its source (default, file, env, flag).",
            "# configuration file: \(configFile ?? "none")",
        ]
        var openSections: [String] = []
        for entry in entries {
            let components = entry.key.split(separator: ".").map(String.init)
            let sections = Array(components.dropLast())
            var common = 0
            while common < min(sections.count, openSections.count), sections[common] == openSections[common] {
                common += 1
            }
            for depth in common..<sections.count {
                lines.append(String(repeating: "  ", count: depth) + sections[depth] + ":")
            }
            openSections = sections
            let indent = String(repeating: "  ", count: sections.count)
            let name = components[components.count - 1]
            if entry.key == SettingsSchema.kafkaPropertiesKey {
                lines += propertyLines(indent: indent, name: name)
                continue
            }
            let source = sources[entry.key].map(Self.annotation) ?? "default"
            lines.append("\(indent)\(name): \(Self.yamlScalar(entry.value))  # \(source)")
        }
        return lines.joined(separator: "\n")
    }

    private func propertyLines(indent: String, name: String) -> [String] {
        let properties = settings.kafka.properties
        guard !properties.isEmpty else { return ["\(indent)\(name): {}  # default"] }
        var lines = ["\(indent)\(name):"]
        for (property, value) in properties.sorted(by: { $0.key < $1.key }) {
            let shown = Self.isSecretProperty(property) ? Self.redacted : value
            let source = propertySources[property].map(Self.annotation) ?? "default"
            lines.append("\(indent)  \(Self.yamlScalar(property)): \(Self.yamlScalar(shown))  # \(source)")
        }
        return lines
    }

    /// `default`, `file`, `env NAME` or `flag --name`.
    private static func annotation(_ source: SettingSource) -> String {
        switch source {
        case .default: "default"
        case .file: "file"
        case .environment(let variable): "env \(variable)"
        case .flag(let name): "flag \(name)"
        }
    }

    /// `text`, double-quoted when YAML would read it otherwise (empty, special characters, comment markers).
    static func yamlScalar(_ text: String) -> String {
        let special = Set("#{}[],&*!|>'\"%@`")
        let needsQuotes =
            text.isEmpty || text.contains(": ") || text.contains(" #") || text.hasSuffix(":")
            || text.first.map { special.contains($0) || $0 == "-" || $0 == "?" || $0.isWhitespace } == true
            || text.last?.isWhitespace == true || text.contains(where: \.isNewline)
        guard needsQuotes, text != "~" else { return text }
        let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"\(escaped)\""
    }
}

extension TokenStoreLocation {
    /// `text` with the password of a PostgreSQL URL replaced by `***` (other locations unchanged).
    static func postgresRedacted(_ text: String) -> String {
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else { return text }
        return TokenStoreLocation.postgres(url: text).description
    }
}
