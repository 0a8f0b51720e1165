import Foundation
import MioctxTestSupport
import Testing
import Yams

/// The shipped deployment files (config/mioctx.yaml, the container image, compose and Kubernetes) checked
/// against the program: every configuration they give passes `mioctx config check` with the variables they
/// name, and the ports, paths and grace periods they state agree with each other and with the configuration.
/// (No container engine runs here: what is checked is what the files tell the program and each other.)
@Suite struct DeploymentFilesTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Values for the secrets the deployment files leave to the operator.
    static let secrets: [String: String] = [
        "MIO_CLIENT_ID": "deploy-client",
        "MIO_CLIENT_SECRET": "deploy-secret-8c1f",
        "MIO_REDIRECT_URL": "https://app.example.com/oauth/callback",
        "MIOCTX_TOKEN_KEYS": "k1:" + Data((0..<32).map { UInt8($0 * 5 % 251) }).base64EncodedString(),
        "MIOCTX_OAUTH_STATE_KEY": Data((0..<32).map { UInt8(255 - $0) }).base64EncodedString(),
        "MIOCTX_TOKENS_STORE": "postgres://mioctx:PASSWORD@postgres:5432/mioctx",
    ]

    /// The value `config check` shows for `name`, without its source comment.
    static func value(_ output: String, _ name: String) -> String? {
        ConfigCheckProcessTests.line(output, name).map { line in
            let value = line.dropFirst(name.count + 2)
            return String(value.components(separatedBy: "  #").first ?? String(value))
        }
    }

    @Test func theImagesConfigurationIsValidAndServesOnTheExposedPort() throws {
        let dockerfile = try Self.text("deploy/Dockerfile")
        #expect(dockerfile.contains("COPY config/mioctx.yaml /etc/mioctx/mioctx.yaml"))
        #expect(dockerfile.contains(#"CMD ["run", "--config", "/etc/mioctx/mioctx.yaml"]"#))
        let directory = try TemporaryDirectory()
        let file = try directory.write("mioctx.yaml", try Self.text("config/mioctx.yaml"))
        let output = try MioctxProcess.run(["config", "check", "--config", file], environment: Self.secrets)
        #expect(output.status == 0, "\(output.standardError)")
        let port = try #require(Self.value(output.standardOutput, "port"))
        #expect(dockerfile.contains("EXPOSE \(port)"))
    }

    /// `kubectl kustomize` of an overlay, as objects.
    static func kustomize(_ overlay: String) throws -> [[String: Any]] {
        let output = try MioctxProcess.runTool(
            "kubectl", ["kustomize", root.appendingPathComponent("deploy/kubernetes/overlays/\(overlay)").path]
        )
        #expect(output.status == 0, "kubectl kustomize \(overlay): \(output.standardError)")
        return try Yams.load_all(yaml: output.standardOutput).compactMap { $0 as? [String: Any] }
    }

    @Test(arguments: ["production", "development"])
    func theKubernetesConfigMapIsValidWithTheSecretItNamesAndMatchesThePodSpec(overlay: String) throws {
        let documents = try Self.kustomize(overlay)
        let configMap = try #require(documents.first { $0["kind"] as? String == "ConfigMap" })
        let deployment = try #require(
            documents.first { $0["kind"] as? String == "Deployment" && Self.name($0) == "mioctx" }
        )
        let data = try #require(configMap["data"] as? [String: String])
        let (key, configuration) = try #require(data.first)

        // The Secret's keys, from the `kubectl create secret` lines of the overlay's header.
        let header = try Self.text("deploy/kubernetes/overlays/\(overlay)/kustomization.yaml")
        let secretNames = header.components(separatedBy: "--from-").dropFirst().compactMap {
            $0.drop { $0 != "=" }.dropFirst().split(separator: "=").first.map(String.init)
        }
        #expect(Set(secretNames).isSubset(of: Set(Self.secrets.keys)), "\(secretNames)")
        #expect(Set(secretNames).isSuperset(of: ["MIO_CLIENT_ID", "MIO_CLIENT_SECRET", "MIO_REDIRECT_URL", "MIOCTX_TOKEN_KEYS"]))
        var secrets = Self.secrets.filter { secretNames.contains($0.key) }
        let containerSpec = try #require(
            (((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        )
        for variable in (containerSpec["containers"] as? [[String: Any]])?.first?["env"] as? [[String: Any]] ?? [] {
            if let name = variable["name"] as? String, let value = variable["value"] as? String { secrets[name] = value }
        }

        let directory = try TemporaryDirectory()
        let file = try directory.write("mioctx.yaml", configuration)
        let output = try MioctxProcess.run(["config", "check", "--config", file], environment: secrets)
        #expect(output.status == 0, "\(output.standardError)")
        let store = Self.value(output.standardOutput, "store") ?? ""
        #expect(store.contains(overlay == "production" ? "postgres://" : "sqlite:"), "\(store)")
        #expect(!output.standardOutput.contains("PASSWORD"), "the store's password is redacted")

        let pod = try #require(((deployment["spec"] as? [String: Any])?["template"] as? [String: Any]))
        let podSpec = try #require(pod["spec"] as? [String: Any])
        let container = try #require((podSpec["containers"] as? [[String: Any]])?.first)
        // The container reads the mounted ConfigMap, and the Secret as files.
        let mounts = try #require(container["volumeMounts"] as? [[String: Any]])
        let mount = try #require(mounts.first { $0["name"] as? String == "config" }?["mountPath"] as? String)
        let secretMount = try #require(mounts.first { $0["name"] as? String == "secrets" }?["mountPath"] as? String)
        #expect(
            container["args"] as? [String]
                == ["run", "--config", "\(mount)/\(key)", "--secrets-directory", secretMount]
        )
        #expect(container["envFrom"] == nil, "secrets are files, not variables")
        // Probes, scraping and the container port are the configured HTTP port.
        let port = try #require(Self.value(output.standardOutput, "port").flatMap { Int($0) })
        let ports = try #require(container["ports"] as? [[String: Any]])
        #expect(ports.first?["containerPort"] as? Int == port)
        let monitor = try #require(documents.first { $0["kind"] as? String == "PodMonitor" })
        let endpoint = (((monitor["spec"] as? [String: Any])?["podMetricsEndpoints"]) as? [[String: Any]])?.first
        #expect(endpoint?["port"] as? String == ports.first?["name"] as? String)
        #expect(endpoint?["path"] as? String == "/metrics")
        let liveness = (container["livenessProbe"] as? [String: Any])?["httpGet"] as? [String: Any]
        let readiness = (container["readinessProbe"] as? [String: Any])?["httpGet"] as? [String: Any]
        #expect(liveness?["path"] as? String == "/healthz")
        #expect(readiness?["path"] as? String == "/readyz")
        // Kubernetes waits longer than the worker's own drain before it kills the pod.
        let grace = try #require(Self.value(output.standardOutput, "shutdownGracePeriod"))
        let graceSeconds = try #require(Self.seconds(grace), "unreadable grace period \(grace)")
        let termination = try #require(podSpec["terminationGracePeriodSeconds"] as? Int)
        #expect(termination > graceSeconds, "terminationGracePeriodSeconds \(termination) ≤ grace \(graceSeconds)")
    }

    @Test func theComposeWorkersEnvironmentConfiguresTheImagesConfiguration() throws {
        let compose = try #require(try Yams.load(yaml: try Self.text("deploy/compose.yaml")) as? [String: Any])
        let services = try #require(compose["services"] as? [String: Any])
        let worker = try #require(services["worker-1"] as? [String: Any])
        var environment = try #require(worker["environment"] as? [String: Any]).mapValues { "\($0)" }
        // `${MIOCTX_TOKEN_KEYS:?...}` and `${MIOCTX_OAUTH_STATE_KEY:?...}` are the operator's own keys, one for
        // both workers.
        for name in ["MIOCTX_TOKEN_KEYS", "MIOCTX_OAUTH_STATE_KEY"] {
            #expect(environment[name]?.hasPrefix("${\(name):?") == true, "\(name)")
            environment[name] = Self.secrets[name]
        }
        let second = try #require(services["worker-2"] as? [String: Any])
        let secondEnvironment = (second["environment"] as? [String: Any])?.mapValues { "\($0)" }
        #expect(secondEnvironment == (worker["environment"] as? [String: Any])?.mapValues { "\($0)" })
        // One image, built once: only one service builds it, the others use it.
        let builders = services.filter { ($0.value as? [String: Any])?["build"] != nil }
        #expect(builders.count == 1, "\(builders.keys)")
        // The workers start after the topics exist, and come back after a crash.
        let dependencies = worker["depends_on"] as? [String: [String: String]]
        #expect(dependencies?["topics"]?["condition"] == "service_completed_successfully")
        #expect(worker["restart"] as? String == "unless-stopped")
        let topics = try #require(services["topics"] as? [String: Any])
        #expect((topics["command"] as? [String])?.first == "topics")

        let directory = try TemporaryDirectory()
        let file = try directory.write("mioctx.yaml", try Self.text("config/mioctx.yaml"))
        let output = try MioctxProcess.run(["config", "check", "--config", file], environment: environment)
        #expect(output.status == 0, "\(output.standardError)")
        #expect(Self.value(output.standardOutput, "bootstrapServers") == "kafka:9092")
        #expect(Self.value(output.standardOutput, "apiURL") == "http://mio-simulator:8090")
        #expect(Self.value(output.standardOutput, "clientID") == "compose-client")

        // The simulator listens where the workers look for it, with the workers' client.
        let simulator = try #require(services["mio-simulator"] as? [String: Any])
        let command = try #require(simulator["command"] as? [String])
        #expect(command.first == "sim")
        #expect(command.firstIndex(of: "--port").map { command[$0 + 1] } == "8090")
        let simulatorEnvironment = (simulator["environment"] as? [String: Any])?.mapValues { "\($0)" }
        #expect(simulatorEnvironment?["MIO_CLIENT_ID"] == environment["MIO_CLIENT_ID"])
        #expect(simulatorEnvironment?["MIO_CLIENT_SECRET"] == environment["MIO_CLIENT_SECRET"])
        // The health check is mioctx's own probe of the configured port (ComposeHealthcheckTests runs it with
        // /bin/sh against a live worker); the first worker publishes that port.
        let port = try #require(Self.value(output.standardOutput, "port"))
        let check = (worker["healthcheck"] as? [String: Any])?["test"] as? [String]
        #expect(check == ["CMD-SHELL", "mioctx healthcheck"])
        #expect((worker["ports"] as? [String])?.contains("\(port):\(port)") == true)
    }

    static func name(_ object: [String: Any]) -> String? {
        (object["metadata"] as? [String: Any])?["name"] as? String
    }

    /// Seconds of a duration as `config check` prints it (`30s`, `1m`, `1m30s`).
    static func seconds(_ text: String) -> Int? {
        var total = 0
        var number = ""
        for character in text {
            if character.isNumber {
                number.append(character)
            } else {
                guard let value = Int(number) else { return nil }
                switch character {
                case "h": total += value * 3600
                case "m": total += value * 60
                case "s": total += value
                default: return nil
                }
                number = ""
            }
        }
        return number.isEmpty ? total : nil
    }
}
