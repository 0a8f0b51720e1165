/// Where an effective setting came from.
enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    /// The built-in default.
    case `default`
    /// The YAML configuration file at `path`.
    case file(path: String)
    /// An environment variable.
    case environment(variable: String)
    /// A command-line flag, with its leading dashes (`--max-in-flight`).
    case flag(name: String)

    /// `default`, `file /etc/mioctx.yaml`, `MIOCTX_HTTP_PORT` or `--http-port`: the text after "from" in a message.
    var description: String {
        switch self {
        case .default: "default"
        case .file(let path): "file \(path)"
        case .environment(let variable): variable
        case .flag(let name): name
        }
    }
}

/// One thing wrong with the configuration: the setting, what is wrong, and where the bad value came from.
struct SettingsProblem: Sendable, Equatable, CustomStringConvertible {
    /// The setting's key (`processing.maxInFlight`), or the file for problems with the file as a whole.
    var setting: String
    /// What is wrong, for example `must be between 1 and 100000, got "0"`. Never holds a secret.
    var message: String
    /// Where the value came from; `nil` when no source supplied it (a missing required setting).
    var source: SettingSource?

    /// `setting: message (from source)`.
    var description: String {
        guard let source, source != .default else { return "\(setting): \(message)" }
        return "\(setting): \(message) (from \(source))"
    }
}

/// The configuration could not be loaded: every problem found, one per line.
///
/// Loading collects all problems before it throws, so one run of `mioctx config check` shows everything to fix.
/// No message carries a secret: values of secret settings are never quoted.
struct SettingsError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case invalidConfiguration = "invalid configuration"
        }

        private let value: Value

        /// One or more settings are missing, malformed or out of range, or the file is missing or malformed.
        static let invalidConfiguration = Code(value: .invalidConfiguration)

        var description: String { value.rawValue }
    }

    /// What failed.
    var code: Code
    /// Every problem, in the order the settings are documented.
    var problems: [SettingsProblem]

    /// A heading line and one problem per line.
    var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        return (["\(code) (\(count)):"] + problems.map { "  \($0)" }).joined(separator: "\n")
    }
}
