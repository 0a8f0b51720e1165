import Foundation
import MioctxTestSupport
import MioSimulator
import MioTokens
import Testing

/// Runs `mioctx` to completion with this process's environment minus its token keys, plus `environment`;
/// returns exit status, stdout and stderr.
func runMioctx(_ arguments: [String], environment: [String: String] = [:], directory: URL) async throws
    -> (status: Int32, output: String, error: String)
{
    var base = ProcessInfo.processInfo.environment
    base["MIOCTX_TOKEN_KEYS"] = nil
    base["MIOCTX_TOKEN_KEY_FILE"] = nil
    let result = try await CapturedProcess(
        try mioctxExecutable(), arguments, environment: base.merging(environment) { $1 }, in: directory
    ).run()
    return (result.status, result.standardOutput, result.standardError)
}

@Suite struct TokensCommandTests {
    @Test func commandsRefuseToStartWithoutAKeyAndSayHowToMakeOne() async throws {
        try await withTemporaryDirectory { directory in
            let result = try await runMioctx(["tokens", "list"], directory: directory)
            #expect(result.status != 0)
            #expect(result.error.contains("mioctx tokens keygen"))
            #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("mioctx-tokens.sqlite").path))
        }
    }

    @Test func importReportsBadLinesByNumberAndImportsTheGoodOnes() async throws {
        try await withTemporaryDirectory { directory in
            let keygen = try await runMioctx(["tokens", "keygen", "--file", "keys"], directory: directory)
            #expect(keygen.status == 0)
            let environment = ["MIOCTX_TOKEN_KEY_FILE": directory.appendingPathComponent("keys").path]
            let lines = [
                #"{"userId":"u1","accessToken":"atk_SECRET1","refreshToken":"rtk_SECRET1","expiresIn":3600}"#,
                #"{"userId":"u2","accessToken":"atk_SECRET2","refreshToken":"rtk_SECRET2"}"#,
                "not json atk_SECRET3",
                "",
                #"{"userId":"u3","accessToken":"atk_SECRET4","refreshToken":"rtk_SECRET4","expiresAt":"2030-01-01T00:00:00Z"}"#,
                #"{"userId":"u4","accessToken":"atk_SECRET5","refreshToken":"rtk_SECRET5","expiresIn":-1}"#,
            ]
            try lines.joined(separator: "\n").write(
                to: directory.appendingPathComponent("tokens.jsonl"), atomically: true, encoding: .utf8
            )
            let imported = try await runMioctx(
                ["tokens", "import", "--file", "tokens.jsonl"], environment: environment, directory: directory
            )
            #expect(imported.status == 1)
            #expect(imported.output.contains("imported 2 user(s), rejected 3 line(s)"))
            #expect(imported.error.contains("line 2: missing expiresIn or expiresAt"))
            #expect(imported.error.contains("line 3: not a JSON object"))
            #expect(imported.error.contains("line 6: expiresIn must be a positive number"))
            #expect(!imported.error.contains("SECRET"))

            let list = try await runMioctx(["tokens", "list"], environment: environment, directory: directory)
            #expect(list.status == 0)
            #expect(list.output.contains("u1\tactive"))
            #expect(list.output.contains("u3\tactive\t2030-01-01T00:00:00Z"))
            #expect(!list.output.contains("u2") && !list.output.contains("SECRET"))

            let get = try await runMioctx(["tokens", "get", "u1"], environment: environment, directory: directory)
            #expect(get.output.contains("status:     active"))
            #expect(get.output.contains(TokenRecord.fingerprint(of: "atk_SECRET1")))
            #expect(!get.output.contains("SECRET"))
            let reveal = try await runMioctx(
                ["tokens", "get", "u1", "--reveal"], environment: environment, directory: directory
            )
            #expect(reveal.output.contains("atk_SECRET1") && reveal.output.contains("rtk_SECRET1"))

            let revoke = try await runMioctx(["tokens", "revoke", "u1"], environment: environment, directory: directory)
            #expect(revoke.status == 0)
            let revoked = try await runMioctx(
                ["tokens", "get", "u1", "--reveal"], environment: environment, directory: directory
            )
            #expect(revoked.output.contains("status:     revoked"))
            #expect(!revoked.output.contains("SECRET1"))
            let missing = try await runMioctx(["tokens", "get", "nobody"], environment: environment, directory: directory)
            #expect(missing.status == 1)
        }
    }

    @Test func tokensCommandsUseTheStoreAndKeysOfTheSettingsAsTheWorkerDoes() async throws {
        try await withTemporaryDirectory { directory in
            func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
            #expect(try await runMioctx(["tokens", "keygen", "--file", "keys"], directory: directory).status == 0)
            try #"{"userId":"u1","accessToken":"atk_L","refreshToken":"rtk_L","expiresIn":600}"#.write(
                to: directory.appendingPathComponent("t.jsonl"), atomically: true, encoding: .utf8
            )
            // The environment names the store and the key file: as in the worker's pod.
            let fromEnvironment = ["MIOCTX_TOKENS_STORE": "sqlite:env.sqlite", "MIOCTX_TOKENS_KEY_FILE": path("keys")]
            let imported = try await runMioctx(
                ["tokens", "import", "--file", "t.jsonl"], environment: fromEnvironment, directory: directory
            )
            #expect(imported.status == 0, "\(imported.error)")
            #expect(FileManager.default.fileExists(atPath: path("env.sqlite")))
            #expect(!FileManager.default.fileExists(atPath: path("mioctx-tokens.sqlite")))
            let keys = try String(contentsOfFile: path("keys"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let listed = try await runMioctx(
                ["tokens", "list"], environment: ["MIOCTX_TOKENS_STORE": "sqlite:env.sqlite", "MIOCTX_TOKEN_KEYS": keys],
                directory: directory
            )
            #expect(listed.status == 0, "\(listed.error)")
            #expect(listed.output.contains("u1\tactive"))

            // The configuration file names them: --config, as for `mioctx run`.
            try "tokens:\n  store: sqlite:file.sqlite\n  keyFile: \(path("keys"))\n".write(
                to: directory.appendingPathComponent("mioctx.yaml"), atomically: true, encoding: .utf8
            )
            let importedByFile = try await runMioctx(
                ["tokens", "import", "--config", "mioctx.yaml", "--file", "t.jsonl"], directory: directory
            )
            #expect(importedByFile.status == 0, "\(importedByFile.error)")
            #expect(FileManager.default.fileExists(atPath: path("file.sqlite")))
            let listedByFile = try await runMioctx(["tokens", "list", "--config", "mioctx.yaml"], directory: directory)
            #expect(listedByFile.output.contains("u1\tactive"))
            // The environment wins over the file, the flag over both.
            let emptyStore = try await runMioctx(
                ["tokens", "list", "--config", "mioctx.yaml"], environment: ["MIOCTX_TOKENS_STORE": "sqlite:empty.sqlite"],
                directory: directory
            )
            #expect(emptyStore.status == 0)
            #expect(!emptyStore.output.contains("u1"))
            let flagged = try await runMioctx(
                ["tokens", "list", "--config", "mioctx.yaml", "--token-store", "sqlite:env.sqlite"],
                environment: ["MIOCTX_TOKENS_STORE": "sqlite:empty.sqlite"], directory: directory
            )
            #expect(flagged.output.contains("u1\tactive"))

            // Every setting is read and checked, the Mio address too: a bad one is named, with its source.
            let badAPI = try await runMioctx(
                ["tokens", "import", "--config", "mioctx.yaml", "--file", "t.jsonl"],
                environment: ["MIO_API_URL": "not a url"], directory: directory
            )
            #expect(badAPI.status == 78)
            #expect(badAPI.error.contains(#"mio.apiURL: must be an absolute http:// or https:// URL, got "not a url" (from MIO_API_URL)"#))
        }
    }

    @Test func keygenThenRekeyLetsTheOldKeyGo() async throws {
        try await withTemporaryDirectory { directory in
            let keys = directory.appendingPathComponent("keys").path
            #expect(try await runMioctx(["tokens", "keygen", "--file", keys, "--key-id", "old"], directory: directory).status == 0)
            let environment = ["MIOCTX_TOKEN_KEY_FILE": keys]
            try #"{"userId":"u1","accessToken":"atk_X","refreshToken":"rtk_X","expiresIn":60}"#.write(
                to: directory.appendingPathComponent("t.jsonl"), atomically: true, encoding: .utf8
            )
            #expect(try await runMioctx(["tokens", "import", "--file", "t.jsonl"], environment: environment, directory: directory).status == 0)
            #expect(try await runMioctx(["tokens", "keygen", "--file", keys, "--key-id", "new"], directory: directory).status == 0)
            let rekey = try await runMioctx(["tokens", "rekey"], environment: environment, directory: directory)
            #expect(rekey.output.contains("re-encrypted 1 row(s)"))
            // Keep only the new key (the first line): the row still reads.
            let newKey = try String(contentsOfFile: keys, encoding: .utf8).split(separator: "\n")[0]
            #expect(newKey.hasPrefix("new:"))
            let get = try await runMioctx(
                ["tokens", "get", "u1", "--reveal"], environment: ["MIOCTX_TOKEN_KEYS": String(newKey)],
                directory: directory
            )
            #expect(get.status == 0)
            #expect(get.output.contains("atk_X"))
        }
    }

    @Test func connectExchangesTheCodeAndStoresTheTokens() async throws {
        try await MioSimulator.withSimulator(Sim.configuration(), logger: Sim.quietLogger) { simulator in
            try await withTemporaryDirectory { directory in
                let environment = Sim.environment(baseURL: simulator.baseURL!)
                    .merging(["MIOCTX_TOKEN_KEYS": TokenKeyring.generateEntry()]) { $1 }
                let code = simulator.authorize(userID: "mio-u1")
                // A code on the command line is refused, naming where it goes instead, and nothing is exchanged.
                let flag = try await runMioctx(
                    ["tokens", "connect", "--user", "u1", "--code", code, "--store", "sqlite:t.sqlite"],
                    environment: environment, directory: directory
                )
                #expect(flag.status != 0)
                #expect(flag.error.contains("MIOCTX_AUTHORIZATION_CODE"), "\(flag.error)")
                #expect(flag.error.contains("--code-file"))
                #expect(simulator.stats().tokensIssued == 0)
                let connect = try await runMioctx(
                    ["tokens", "connect", "--user", "u1", "--store", "sqlite:t.sqlite"],
                    environment: environment.merging(["MIOCTX_AUTHORIZATION_CODE": code]) { $1 }, directory: directory
                )
                #expect(connect.status == 0, "\(connect.error)")
                #expect(connect.output.contains("connected u1"))
                let get = try await runMioctx(
                    ["tokens", "get", "u1", "--store", "sqlite:t.sqlite"], environment: environment, directory: directory
                )
                #expect(get.output.contains("status:     active"))
                // The code is single use: a second connect fails with Mio's reason and stores nothing new.
                let codeFile = directory.appendingPathComponent("code.txt")
                try Data((code + "\n").utf8).write(to: codeFile)
                let again = try await runMioctx(
                    ["tokens", "connect", "--user", "u2", "--code-file", codeFile.path, "--store", "sqlite:t.sqlite"],
                    environment: environment, directory: directory
                )
                #expect(again.status != 0)
                #expect(again.error.contains("invalid_grant"))
                #expect(!again.error.contains(code))
            }
        }
    }
}
