import Foundation
import Logging
import Mio
import MioSimulator
import MioctxTestSupport
import Testing

/// Runs `mioctx arguments...` with exactly `environment`, without blocking a thread of the cooperative pool (the
/// simulator this process hosts must keep answering the child). With `interruptOn`, sends SIGINT once the child's
/// standard error contains that text.
func runMioctx(
    _ arguments: [String],
    environment: [String: String],
    standardInput: String? = nil,
    interruptOn: String? = nil,
    in directory: URL
) async throws -> ProcessOutput {
    let child = try CapturedProcess(
        try mioctxExecutable(), arguments, environment: environment, in: directory, standardInput: standardInput
    )
    guard let interruptOn else { return try await child.run() }
    return try await child.run { child in
        while child.isRunning {
            if child.standardErrorSoFar.contains(interruptOn) {
                child.interrupt()
                return
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

@Suite("mioctx enrich as a process")
struct EnrichCommandTests {
    @Test func enrichProcessesAFileReportsProgressAndExitsByOutcome() async throws {
        var logger = Logger(label: "enrich-command-tests")
        logger.logLevel = .error
        var faults = MioSimulator.Faults()
        faults.latencyMs = 10
        faults.targets = [.context, .summary]
        let configuration = MioSimulator.Configuration(faults: faults, seed: 5)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("enrich-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        try await MioSimulator.withSimulator(configuration, logger: logger) { simulator in
            // Tokens issued by the simulator through the code exchange, imported with `mioctx tokens import`.
            let users = (0..<8).map { "cli-user-\($0)" }
            var secrets: [String] = [configuration.clientSecret]
            var tokenLines: [String] = []
            try await MioClient.withClient(
                configuration: MioClient.Configuration(
                    clientID: configuration.clientID,
                    clientSecret: configuration.clientSecret,
                    redirectURL: configuration.redirectURL,
                    apiURL: simulator.baseURL!
                ),
                logger: logger
            ) { client in
                for user in users {
                    let response = try await client.exchangeCodeForTokens(code: simulator.authorize(userID: user))
                    secrets += [response.accessToken, response.refreshToken]
                    let object: [String: Any] = [
                        "userId": user, "accessToken": response.accessToken, "refreshToken": response.refreshToken,
                        "expiresIn": 3600,
                    ]
                    tokenLines.append(String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
                }
            }
            try writeLines(tokenLines, to: path("tokens.jsonl"))

            let keygen = try await runMioctx(["tokens", "keygen"], environment: [:], in: directory)
            #expect(keygen.status == 0)
            let key = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            let store = "sqlite:" + path("tokens.sqlite")
            let imported = try await runMioctx(
                ["tokens", "import", "--store", store, "--file", path("tokens.jsonl")],
                environment: ["MIOCTX_TOKEN_KEYS": key],
                in: directory
            )
            #expect(imported.status == 0, "\(imported.standardError)")
            secrets.append(String(key.split(separator: ":").last ?? ""))

            let environment = [
                "MIO_API_URL": simulator.baseURL!,
                "MIO_CLIENT_ID": configuration.clientID,
                "MIO_CLIENT_SECRET": configuration.clientSecret,
                "MIO_REDIRECT_URL": configuration.redirectURL,
                "MIOCTX_TOKEN_KEYS": key,
            ]
            let jobs = jobLines(150, users: users, prefix: "cli")
            var lines = jobs.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }
            lines.insert("{not json", at: 1)
            try writeLines(lines, to: path("jobs.jsonl"))
            let arguments = [
                "enrich", "--input", path("jobs.jsonl"), "--output", path("results.jsonl"),
                "--rejects", path("rejects.jsonl"), "--token-store", store, "--max-in-flight", "4",
                "--progress", "lines", "--progress-interval", "0.05",
            ]

            // 150 jobs of at least 10 ms each, 4 at a time: at least 375 ms, so several progress lines.
            let first = try await runMioctx(arguments, environment: environment, in: directory)
            #expect(first.status == 1, "\(first.standardError)")
            #expect(first.standardError.contains("line 2: not_json"))
            let progressLines = first.standardError.split(separator: "\n").filter { $0.hasPrefix("enrich: ") && $0.contains("/151 lines") }
            #expect(progressLines.count >= 2, "\(first.standardError)")
            #expect(first.standardError.contains("enrich: done in"))
            #expect(first.standardError.contains("150 results (ok 150)"))
            for secret in secrets where !secret.isEmpty {
                #expect(!first.standardError.contains(secret))
                #expect(!first.standardOutput.contains(secret))
            }
            let (results, _) = try readObjects(path("results.jsonl"))
            #expect(results.count == 150)
            for (job, result) in zip(jobs.sorted { $0.id < $1.id }, results.sorted { ($0["id"] as! String) < ($1["id"] as! String) }) {
                #expect(result["context"] as? String == MioSimulator.expectedContent(userID: job.userID, query: job.query))
            }
            let rejected = try readObjects(path("rejects.jsonl")).objects
            #expect(rejected.count == 1)
            #expect(rejected.first?["line"] as? Int == 2)
            #expect(rejected.first?["raw"] as? String == "{not json")

            // Again: everything is done; the invalid line is still reported.
            let second = try await runMioctx(arguments, environment: environment, in: directory)
            #expect(second.status == 1)
            #expect(second.standardError.contains("0 results (none), 1 rejected, 150 already done"))
            #expect(try readObjects(path("results.jsonl")).objects.count == 150)

            // Only valid lines, standard input to standard output: 0.
            try writeLines(Array(lines.dropFirst(2).prefix(10)), to: path("valid.jsonl"))
            let piped = try await runMioctx(
                ["enrich", "--input", "-", "--output", "-", "--token-store", store, "--progress", "none"],
                environment: environment,
                standardInput: path("valid.jsonl"),
                in: directory
            )
            #expect(piped.status == 0, "\(piped.standardError)")
            #expect(piped.standardOutput.split(separator: "\n").count == 10)
            #expect(piped.standardError.contains("enrich: done in"))

            let missingInput = try await runMioctx(
                ["enrich", "--input", path("absent.jsonl"), "--output", path("out.jsonl"), "--token-store", store],
                environment: environment,
                in: directory
            )
            #expect(missingInput.status == 64)
            #expect(missingInput.standardError.contains("absent.jsonl"))

            // Interrupted after its first progress line (600 jobs of at least 10 ms, 2 at a time: 3 s at least),
            // then resumed: every job has exactly one result.
            let more = jobLines(600, users: users, prefix: "sigint")
            try writeLines(more.map { jobLine(id: $0.id, userID: $0.userID, query: $0.query) }, to: path("more.jsonl"))
            let slow = [
                "enrich", "--input", path("more.jsonl"), "--output", path("more-results.jsonl"), "--token-store", store,
                "--max-in-flight", "2", "--progress", "lines", "--progress-interval", "0.05",
            ]
            let interrupted = try await runMioctx(slow, environment: environment, interruptOn: "/600 lines", in: directory)
            #expect(interrupted.status == 4, "\(interrupted.standardError)")
            #expect(interrupted.standardError.contains("enrich: interrupted in"))
            let partial = try readObjects(path("more-results.jsonl")).objects.count
            #expect(partial < 600)
            let resumed = try await runMioctx(slow, environment: environment, in: directory)
            #expect(resumed.status == 0, "\(resumed.standardError)")
            #expect(resumed.standardError.contains("\(partial) already done"))
            let ids = try readObjects(path("more-results.jsonl")).objects.compactMap { $0["id"] as? String }
            #expect(ids.count == 600)
            #expect(Set(ids) == Set(more.map(\.id)))

            var unconfigured = environment
            unconfigured["MIO_CLIENT_ID"] = nil
            let badConfiguration = try await runMioctx(arguments, environment: unconfigured, in: directory)
            #expect(badConfiguration.status == 78)
        }
    }
}
