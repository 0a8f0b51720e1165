import Foundation
import MioctxTestSupport
import Settings

/// `mioctx config check` in process: the settings loaded as the command loads them, with what it would print.
enum ConfigCheck {
    /// What the command prints and its exit status.
    struct Output {
        var status: Int32
        var standardOutput: String
        var standardError: String

        /// Both streams.
        var all: String { standardOutput + standardError }
    }

    /// Runs `mioctx config check` on `arguments` (the words `config` and `check` first, as on the command line)
    /// with exactly `environment`.
    static func run(_ arguments: [String], environment: [String: String]) async throws -> Output {
        precondition(arguments.starts(with: ["config", "check"]))
        let split = SettingsArguments.split(Array(arguments.dropFirst(2)))
        precondition(split.remaining.isEmpty, "not a settings flag: \(split.remaining)")
        do {
            let settings = try await SettingsLoader(
                arguments: split.settings, environment: environment, requiring: .worker
            ).load()
            return Output(status: 0, standardOutput: settings.yamlDescription + "\n", standardError: "")
        } catch let error as SettingsError {
            return Output(status: 78, standardOutput: "", standardError: error.description + "\n")
        }
    }
}
