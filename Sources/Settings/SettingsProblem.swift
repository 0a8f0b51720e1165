/// Where an effective setting came from.
public enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    /// The built-in default.
    case `default`
    /// The YAML configuration file at `path`.
    case file(path: String)
    /// An environment variable.
    case environment(variable: String)
    /// A command-line flag, with its leading dashes (`--max-in-flight`).
    case flag(name: String)
    /// A file of the secrets directory (`/run/secrets/MIO_CLIENT_SECRET`).
    case secretFile(path: String)

    /// `default`, `file /etc/mioctx.yaml`, `MIOCTX_HTTP_PORT` or `--http-port`: the text after "from" in a message.
    public var description: String {
        switch self {
        case .default: "default"
        case .file(let path): "file \(path)"
        case .environment(let variable): variable
        case .flag(let name): name
        case .secretFile(let path): "file \(path)"
        }
    }
}

/// One thing wrong with the configuration: the setting, what is wrong, and where the bad value came from.
public struct SettingsProblem: Sendable, Equatable, CustomStringConvertible {
    /// The setting's key (`processing.maxInFlight`), or the file for problems with the file as a whole.
    public var setting: String
    /// What is wrong, for example `must be between 1 and 100000, got "0"`. Never holds a secret.
    public var message: String
    /// Where the value came from; `nil` when no source supplied it (a missing required setting).
    public var source: SettingSource?

    /// Creates a problem.
    /// - Parameters:
    ///   - setting: The setting's key.
    ///   - message: What is wrong.
    ///   - source: Where the value came from.
    public init(setting: String, message: String, source: SettingSource?) {
        self.setting = setting
        self.message = message
        self.source = source
    }

    /// `setting: message (from source)`.
    public var description: String {
        guard let source, source != .default else { return "\(setting): \(message)" }
        return "\(setting): \(message) (from \(source))"
    }
}

/// The configuration could not be loaded: every problem found, one per line.
///
/// Loading collects all problems before it throws, so one run of `mioctx config check` shows everything to fix.
/// No message carries a secret: values of secret settings are never quoted.
public struct SettingsError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case invalidConfiguration = "invalid configuration"
        }

        private let value: Value

        /// One or more settings are missing, malformed or out of range, or the file is missing or malformed.
        public static let invalidConfiguration = Code(value: .invalidConfiguration)

        public var description: String { value.rawValue }
    }

    /// What failed.
    public var code: Code
    /// Every problem, in the order the settings are documented.
    public var problems: [SettingsProblem]

    /// A heading line and one problem per line.
    public var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        return (["\(code) (\(count)):"] + problems.map { "  \($0)" }).joined(separator: "\n")
    }
}
