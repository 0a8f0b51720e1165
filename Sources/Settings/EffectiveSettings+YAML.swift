import Foundation

extension EffectiveSettings {
    /// The settings as YAML, each value followed by its source (`# default`, `# file`, `# env NAME`,
    /// `# flag --name`, `# secrets FILE`); a secret that a layer set shows as `<redacted>`, a PostgreSQL URL's
    /// password as `***`. What `mioctx config check` prints.
    public var yamlDescription: String {
        var lines = [
            "# mioctx effective configuration: each value is followed by its source (default, file, env, flag).",
            "# configuration file: \(configFile ?? "none")",
        ]
        var openSections: [String] = []
        for setting in SettingsCatalog.all {
            let components = setting.key.split(separator: ".").map(String.init)
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
            if setting is PropertyMapSetting {
                lines += propertyLines(indent: indent, name: name)
                continue
            }
            let source = sources[setting.key] ?? .default
            // A secret shows as such only when a layer set it; its default (none) shows as it is.
            let value = anyValue(setting)
            let shown = source == .default ? setting.formatAny(value) : setting.display(value)
            lines.append("\(indent)\(name): \(Self.yamlScalar(shown))  # \(Self.annotation(source))")
        }
        return lines.joined(separator: "\n")
    }

    private func propertyLines(indent: String, name: String) -> [String] {
        guard !kafkaProperties.isEmpty else { return ["\(indent)\(name): {}  # default"] }
        var lines = ["\(indent)\(name):"]
        for (property, value) in kafkaProperties.sorted(by: { $0.key < $1.key }) {
            let shown = PropertyMapSetting.isSecretProperty(property) ? Self.redacted : value
            let source = propertySources[property].map(Self.annotation) ?? "default"
            lines.append("\(indent)  \(Self.yamlScalar(property)): \(Self.yamlScalar(shown))  # \(source)")
        }
        return lines
    }

    /// `default`, `file`, `env NAME`, `flag --name` or `secrets FILE`.
    private static func annotation(_ source: SettingSource) -> String {
        switch source {
        case .default: "default"
        case .file: "file"
        case .environment(let variable): "env \(variable)"
        case .flag(let name): "flag \(name)"
        case .secretFile(let path): "secrets \(path)"
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
