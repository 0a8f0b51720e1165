import Foundation
import MioctxTestSupport
import Testing
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// deploy/compose.yaml's worker health check, run as compose runs a `CMD-SHELL` check (`/bin/sh -c`, dash on
/// Debian) against a live `mioctx run`: it fails before the worker listens and passes once the worker is ready.
@Suite struct ComposeHealthcheckTests {
    static let composeFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("deploy/compose.yaml")

    /// The `test:` of each mioctx worker service's health check.
    static func workerChecks() throws -> [String: [String]] {
        let compose = try #require(try Yams.load(yaml: String(contentsOf: composeFile, encoding: .utf8)) as? [String: Any])
        let services = try #require(compose["services"] as? [String: Any])
        var checks: [String: [String]] = [:]
        for (name, service) in services where name.hasPrefix("worker") {
            let healthcheck = (service as? [String: Any])?["healthcheck"] as? [String: Any]
            guard let test = healthcheck?["test"] as? [String] else {
                Issue.record("\(name) has no health check")
                continue
            }
            checks[name] = test
        }
        return checks
    }

    /// A port nothing listens on now (the kernel's pick for an ephemeral bind, released at once).
    static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(socket, pointer, length) == 0 && getsockname(socket, pointer, &length) == 0
            }
        }
        try #require(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a compose `test:` as compose does: `CMD-SHELL` through `/bin/sh -c`, `CMD` as is; `mioctx` found on
    /// `PATH` as in the image, where it is /usr/local/bin/mioctx.
    static func run(_ test: [String], port: Int) throws -> CommandResult {
        let binDirectory = try mioctxExecutable().deletingLastPathComponent().path
        let environment = ["PATH": "\(binDirectory):/usr/bin:/bin", "MIOCTX_HTTP_PORT": "\(port)"]
        switch test.first {
        case "CMD-SHELL":
            return try runCommand(URL(fileURLWithPath: "/bin/sh"), ["-c", test.dropFirst().joined(separator: " ")],
                environment: environment)
        case "CMD":
            let arguments = Array(test.dropFirst(2))
            let name = try #require(test.dropFirst().first)
            return try runCommand(URL(fileURLWithPath: "\(binDirectory)/\(name)"), arguments, environment: environment)
        default:
            throw UnknownCheckForm(test: test)
        }
    }

    struct UnknownCheckForm: Error {
        let test: [String]
    }

    @Test func theWorkersHealthCheckFailsBeforeTheWorkerListensAndPassesOnceItIsReady() async throws {
        let checks = try Self.workerChecks()
        #expect(checks.count >= 2, "two workers in compose")
        let test = try #require(checks["worker-1"])
        #expect(checks.values.allSatisfy { $0 == test }, "the workers check alike")
        try await WorkerProcessTests.withSetup { setup in
            let port = try Self.freePort()
            let before = try Self.run(test, port: port)
            #expect(before.status != 0, "nothing listens yet: \(before.output) \(before.error)")
            #expect(!before.error.contains("cannot create"), "the shell ran the check: \(before.error)")

            let worker = try setup.startWorker(httpPort: port)
            try await waitUntil("the compose health check to pass against the live worker") {
                try Self.run(test, port: port).status == 0
            }
            let after = try Self.run(test, port: port)
            #expect(after.output.contains("200"), "\(after.output)")
            #expect(await worker.stop() == 0)
        }
    }
}
