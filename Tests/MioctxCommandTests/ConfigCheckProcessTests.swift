import Foundation
import MioctxTestSupport
import Testing

/// What needs the process: `config check`'s exit status and streams, `config docs`, and settings flags that every
/// command takes wherever they stand. The loading itself is tested in process (Tests/SettingsTests).
@Suite struct ConfigCheckProcessTests {
    static let environment: [String: String] = [
        "MIO_CLIENT_ID": "client-123",
        "MIO_CLIENT_SECRET": "cs-process-secret-5k",
        "MIO_REDIRECT_URL": "http://127.0.0.1:8080/oauth/callback",
        "MIOCTX_TOKEN_KEYS": "k1:" + Data((0..<32).map { UInt8($0 * 7 % 251) }).base64EncodedString(),
    ]

    /// The line of `output` for `key` (the last component, indented under its section), e.g. `maxInFlight: 30  # flag`.
    static func line(_ output: String, _ name: String) -> String? {
        output.split(separator: "\n").map(String.init).first {
            $0.trimmingCharacters(in: .whitespaces).hasPrefix(name + ": ")
        }?.trimmingCharacters(in: .whitespaces)
    }

    @Test func validConfigurationIsPrintedOnStandardOutputAndExitsZero() throws {
        let output = try MioctxProcess.run(
            ["config", "--max-in-flight", "30", "check", "--log-level=debug"], environment: Self.environment
        )
        #expect(output.status == 0, "\(output.standardError)")
        #expect(output.standardError.isEmpty)
        #expect(output.standardOutput.contains("  maxInFlight: 30  # flag --max-in-flight\n"))
        #expect(output.standardOutput.contains("  level: debug  # flag --log-level\n"))
        #expect(output.standardOutput.contains("clientSecret: <redacted>  # env MIO_CLIENT_SECRET"))
        #expect(!output.all.contains("cs-process-secret-5k"))
    }

    @Test func invalidConfigurationListsEveryProblemOnStandardErrorAndExits78() throws {
        var environment = Self.environment
        environment["MIO_CLIENT_SECRET"] = nil
        let output = try MioctxProcess.run(["config", "check", "--http-port", "70000"], environment: environment)
        #expect(output.status == 78)
        #expect(output.standardOutput.isEmpty)
        #expect(output.standardError.hasPrefix("invalid configuration (2 problems):\n"))
        #expect(output.standardError.contains(#"  http.port: must be between 0 and 65535, got "70000" (from --http-port)"#))
        #expect(output.standardError.contains("  mio.clientSecret: is required: set the environment variable MIO_CLIENT_SECRET"))
    }

    @Test func configDocsPrintsTheReferenceTable() throws {
        let output = try MioctxProcess.run(["config", "docs"], environment: [:])
        #expect(output.status == 0)
        #expect(output.standardOutput.hasPrefix("| key | environment variable | flag | default | meaning |"))
        #expect(output.standardOutput.contains("| `processing.maxInFlight` | `MIOCTX_PROCESSING_MAX_IN_FLIGHT` |"))
    }

    @Test func anUnknownFlagIsStillAUsageError() throws {
        let output = try MioctxProcess.run(["config", "check", "--max-in-flite", "3"], environment: Self.environment)
        #expect(output.status == 64)
        #expect(output.standardError.contains("--max-in-flite"))
    }
}
