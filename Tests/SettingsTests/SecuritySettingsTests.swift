import Foundation
import MioTokens
import Settings
import Testing

/// Settings that keep secrets off the command line, plain HTTP off the network, and the OAuth listener apart.
@Suite struct SecuritySettingsTests {
    static let tokenKey = "k1:" + Data((0..<32).map { UInt8($0 * 5 % 251) }).base64EncodedString()
    static let stateKey = Data((0..<32).map { UInt8($0 * 7 % 251) }).base64EncodedString()

    static func load(_ arguments: [String] = [], environment: [String: String]) async throws -> EffectiveSettings {
        try await SettingsLoader(
            arguments: SettingsArguments.split(arguments).settings, environment: environment, requiring: []
        ).load()
    }

    /// The problems' text, or "" when the settings load.
    static func problems(_ arguments: [String] = [], environment: [String: String] = [:]) async -> String {
        do {
            _ = try await load(arguments, environment: environment)
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func secretKafkaPropertiesAndAStoreURLWithAPasswordAreRefusedAsFlagsNamingWhereTheyGo() async throws {
        let sasl = await Self.problems(["--kafka-property", "sasl.password=hunter2-kafka"])
        #expect(sasl.contains("kafka.properties.sasl.password"), "\(sasl)")
        #expect(sasl.contains("MIOCTX_KAFKA_PROPERTIES"))
        #expect(!sasl.contains("hunter2-kafka"))
        // The same property from the environment is accepted.
        let fromEnvironment = try await Self.load(environment: ["MIOCTX_KAFKA_PROPERTIES": "sasl.password=hunter2-kafka"])
        #expect(fromEnvironment.kafkaProperties["sasl.password"] == "hunter2-kafka")
        // A property that is no secret is still accepted as a flag.
        let plain = try await Self.load(["--kafka-property", "linger.ms=5"], environment: [:])
        #expect(plain.kafkaProperties["linger.ms"] == "5")

        let store = await Self.problems(["--token-store", "postgres://u:hunter2-pg@db.example.com/t"])
        #expect(store.contains("tokens.store"), "\(store)")
        #expect(store.contains("MIOCTX_TOKENS_STORE"))
        #expect(!store.contains("hunter2-pg"))
        #expect(await Self.problems(["--token-store", "postgres://u@db.example.com/t"]) == "")
        #expect(await Self.problems(environment: ["MIOCTX_TOKENS_STORE": "postgres://u:pw@db.example.com/t"]) == "")
    }

    @Test func acksAndIdempotenceAreReservedProducerProperties() async throws {
        for property in ["acks=0", "enable.idempotence=false"] {
            let problems = await Self.problems(environment: ["MIOCTX_KAFKA_PROPERTIES": property])
            let name = String(property.prefix { $0 != "=" })
            #expect(problems.contains("kafka.properties.\(name)"), "\(problems)")
            #expect(problems.contains("cannot be set"))
        }
    }

    @Test func mioAndRedirectURLsRefusePlainHTTPExceptToLoopback() async throws {
        for variable in ["MIO_API_URL", "MIO_REDIRECT_URL"] {
            let remote = await Self.problems(environment: [variable: "http://mio.example.com"])
            #expect(remote.contains("must be https://"), "\(variable): \(remote)")
            for url in ["https://mio.example.com", "http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9"] {
                #expect(await Self.problems(environment: [variable: url]) == "", "\(variable)=\(url)")
            }
            // A simulator on a container network, said out loud.
            let allowed = await Self.problems(
                environment: [variable: "http://mio-simulator:8090", "MIOCTX_MIO_PLAIN_HTTP_HOSTS": "mio-simulator"]
            )
            #expect(allowed == "", "\(allowed)")
        }
    }

    @Test func theOAuthListenerIsOffByDefaultAndNeedsTheStateKeyAndAPortOfItsOwn() async throws {
        let defaults = try await Self.load(environment: [:])
        #expect(defaults[\.oauth.enabled] == false)
        #expect(defaults[\.oauth.port] != defaults[\.http.port])
        let noKey = await Self.problems(environment: ["MIOCTX_OAUTH_ENABLED": "true"])
        #expect(noKey.contains("oauth.stateKey"), "\(noKey)")
        #expect(noKey.contains("MIOCTX_OAUTH_STATE_KEY"))
        let samePort = await Self.problems(environment: [
            "MIOCTX_OAUTH_ENABLED": "true", "MIOCTX_OAUTH_STATE_KEY": Self.stateKey,
            "MIOCTX_OAUTH_PORT": "9000", "MIOCTX_HTTP_PORT": "9000",
        ])
        #expect(samePort.contains("oauth.port"), "\(samePort)")
        let enabled = try await Self.load(environment: [
            "MIOCTX_OAUTH_ENABLED": "true", "MIOCTX_OAUTH_STATE_KEY": Self.stateKey, "MIOCTX_OAUTH_PORT": "9001",
        ])
        #expect(enabled[\.oauth.enabled])
    }

    @Test func theRootCertificateSettingReachesThePostgresURL() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID().uuidString).pem")
        try Data("-----BEGIN CERTIFICATE-----\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let settings = try await Self.load(environment: [
            "MIOCTX_TOKENS_STORE": "postgres://u@db.example.com/t", "MIOCTX_TOKENS_POSTGRES_ROOT_CERT": file.path,
        ])
        guard case .postgres(let url) = try settings.tokenStoreLocation() else {
            Issue.record("expected a PostgreSQL location")
            return
        }
        #expect(url.contains("sslrootcert=\(file.path)"))
    }
}
