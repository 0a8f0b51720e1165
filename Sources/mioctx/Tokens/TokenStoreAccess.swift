import Foundation
import Logging
import Mio
import MioTokens
import Settings

/// The token store as the settings name it, for the `tokens` subcommands.
enum TokenStoreAccess {
    /// Loads the settings (a token key is required, and the Mio credentials when `requirements` say so), opens
    /// the store with the configured keys, and runs `body`.
    static func withStore<T: Sendable>(
        requiring requirements: SettingRequirement = .tokenKeys,
        _ body: (any TokenStore, EffectiveSettings) async throws -> T
    ) async throws -> T {
        var settings = try await CommandSettings.load(requiring: requirements.union(.tokenKeys))
        let location = try settings.tokenStoreLocation()
        if let exposure = settings.keyFileExposure {
            FileHandle.standardError.write(Data("warning: \(exposure)\n".utf8))
        }
        let keyring = try settings.takeKeyring()
        // Errors reach the operator as the command's own message; the pool's startup notices are noise here.
        var logger = Logger(label: "mioctx.tokens")
        logger.logLevel = .error
        return try await location.withStore(keyring: keyring, logger: logger) { try await body($0, settings) }
    }

    /// Opens the store as ``withStore(requiring:_:)`` does, with a Mio client as the settings configure it
    /// (shut down afterwards, whether `body` succeeds or not).
    static func withStoreAndMio<T: Sendable>(
        _ body: (any TokenStore, MioClient, EffectiveSettings) async throws -> T
    ) async throws -> T {
        try await withStore(requiring: .mioCredentials) { store, settings in
            let mio = try WorkerAssembly.makeMioClient(settings, logger: Logger(label: "mio"))
            do {
                let result = try await body(store, mio, settings)
                try await mio.shutdown()
                return result
            } catch {
                try? await mio.shutdown()
                throw error
            }
        }
    }
}
