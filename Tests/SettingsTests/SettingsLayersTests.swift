import Foundation
import MioctxTestSupport
import Logging
import MioTokens
import Settings
import Testing

/// Layers and requirements beyond `config check`'s: secrets mounted as files, the commands that need less.
@Suite struct SettingsLayersTests {
    static let tokenKey = "k1:" + Data((0..<32).map { UInt8($0 * 5 % 251) }).base64EncodedString()

    static func load(
        _ arguments: [String] = [],
        environment: [String: String],
        requiring requirements: SettingRequirement
    ) async throws -> EffectiveSettings {
        try await SettingsLoader(
            arguments: SettingsArguments.split(arguments).settings, environment: environment, requiring: requirements
        ).load()
    }

    @Test func secretsDirectoryFilesAreNamedLikeTheVariablesAndTheEnvironmentWinsOverThem() async throws {
        let directory = try TemporaryDirectory()
        _ = try directory.write("MIO_CLIENT_ID", "client-from-file\n")
        _ = try directory.write("MIO_CLIENT_SECRET", "secret-from-file-7q")
        _ = try directory.write("MIO_REDIRECT_URL", "https://ctx.example/oauth/callback")
        _ = try directory.write("MIOCTX_TOKEN_KEYS", Self.tokenKey)
        _ = try directory.write("MIOCTX_PROCESSING_MAX_IN_FLIGHT", "12")
        let settings = try await Self.load(
            environment: ["MIOCTX_SECRETS_DIRECTORY": directory.url.path, "MIO_CLIENT_ID": "client-from-env"],
            requiring: .worker
        )
        #expect(settings[\.mio.clientID] == "client-from-env")
        #expect(settings[\.mio.clientSecret] == "secret-from-file-7q")
        #expect(settings[\.tokens.keys]?.revealedValue == Self.tokenKey)
        #expect(settings[\.processing.maxInFlight] == 12)
        let secretFile = directory.url.appendingPathComponent("MIO_CLIENT_SECRET").path
        #expect(settings.source(of: \.mio.clientSecret) == .secretFile(path: secretFile))
        let description = settings.yamlDescription
        #expect(description.contains("clientSecret: <redacted>  # secrets \(secretFile)"))
        #expect(!description.contains("secret-from-file-7q"))
        #expect(!description.contains(Self.tokenKey))
    }

    @Test func anUnreadableSecretsDirectoryIsAProblemNamingIt() async throws {
        await #expect {
            _ = try await Self.load(["--secrets-directory", "/nonexistent/secrets"], environment: [:], requiring: [])
        } throws: { error in
            "\(error)".contains("secrets: the directory /nonexistent/secrets cannot be read (from --secrets-directory)")
        }
    }

    @Test func tokenCommandsNeedAKeyButNoMioCredentials() async throws {
        let settings = try await Self.load(
            ["--store", "sqlite:/tmp/t.sqlite"], environment: ["MIOCTX_TOKEN_KEYS": Self.tokenKey],
            requiring: .tokenKeys
        )
        #expect(settings[\.tokens.store] == "sqlite:/tmp/t.sqlite")
        #expect(settings.source(of: \.tokens.store) == .flag(name: "--store"))
        await #expect {
            _ = try await Self.load(environment: [:], requiring: .tokenKeys)
        } throws: { error in
            let text = "\(error)"
            return text.contains("tokens.keys: no token encryption key") && !text.contains("mio.clientID")
        }
    }

    @Test func storeAndKeyFileComeFromTheFileAndTheEnvironmentAsForTheWorker() async throws {
        let directory = try TemporaryDirectory()
        let keys = try directory.write("keys", Self.tokenKey + "\n")
        let file = try directory.write("mioctx.yaml", "tokens:\n  store: sqlite:/var/lib/from-file.sqlite\n")
        let fromFile = try await Self.load(
            ["--config", file], environment: ["MIOCTX_TOKENS_KEY_FILE": keys], requiring: .tokenKeys
        )
        #expect(fromFile[\.tokens.store] == "sqlite:/var/lib/from-file.sqlite")
        #expect(try fromFile.keyring().primaryKeyID == "k1")
        let fromEnvironment = try await Self.load(
            ["--config", file],
            environment: ["MIOCTX_TOKENS_STORE": "sqlite:/from-env.sqlite", "MIOCTX_TOKEN_KEYS": Self.tokenKey],
            requiring: .tokenKeys
        )
        #expect(fromEnvironment[\.tokens.store] == "sqlite:/from-env.sqlite")
    }

    @Test func aCommandWithoutRequirementsLoadsWithNothingSet() async throws {
        let settings = try await Self.load(["--log-level", "debug"], environment: [:], requiring: [])
        #expect(settings[\.log.level] == .debug)
        #expect(settings[\.mio.clientID] == "")
    }
}
