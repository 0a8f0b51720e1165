import ArgumentParser
import Foundation
import Settings

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
            let settings = try await SettingsLoader(
                arguments: arguments, environment: environment, requiring: requirements
            ).load()
            if !settings[\.process.coreDumps] {
                forbidCoreDumps()
            }
            return settings
        } catch let error as SettingsError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw invalidConfigurationExitCode
        }
    }

    /// Sets this process's core file size limit (soft and hard) to 0: a core dump would hold the tokens, the
    /// refresh tokens and the keys the process has in memory. Best effort: a failure leaves the limit as it was.
    static func forbidCoreDumps() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        #if canImport(Glibc)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)
        #else
        _ = setrlimit(RLIMIT_CORE, &none)
        #endif
    }
}
