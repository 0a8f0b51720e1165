import ArgumentParser
import Foundation
import Settings

/// The settings flags of this process's command line, taken off it by ``Mioctx/main()`` before the command's own
/// options are parsed (they are declared with their settings, in the Settings library).
enum CommandSettings {
    @TaskLocal static var arguments = SettingsArguments()

    /// The exit status for an invalid configuration: 78, `EX_CONFIG` of sysexits.h.
    static let invalidConfigurationExitCode = ExitCode(78)

    /// Loads the settings as every command does (defaults < YAML file < secrets directory < environment < flags):
    /// on a ``SettingsError`` it writes each problem to standard error and exits with
    /// ``invalidConfigurationExitCode``.
    ///
    /// - Parameters:
    ///   - requirements: What the command cannot do without.
    ///   - environment: The environment to read, by default the process's.
    /// - Returns: The effective settings.
    /// - Throws: `ExitCode` after printing the problems.
    static func load(
        requiring requirements: SettingRequirement,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> EffectiveSettings {
        do {
            return try await SettingsLoader(arguments: arguments, environment: environment, requiring: requirements)
                .load()
        } catch let error as SettingsError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw invalidConfigurationExitCode
        }
    }
}
