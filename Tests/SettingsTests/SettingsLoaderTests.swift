import Foundation
import MioctxTestSupport
import Settings
import Testing

/// The settings loaded in process as `mioctx config check` loads them: precedence, validation messages, secrets,
/// property merging. (tests/MioctxCommandTests/ConfigCheckProcessTests.swift checks the process: exit status
/// and streams.)
@Suite struct SettingsLoaderTests {
    static let clientSecret = "cs-Zq8vYt3-client-secret"
    static let tokenKey = Data((0..<32).map { UInt8($0 * 7 % 251) }).base64EncodedString()
    static let stateKey = Data((0..<32).map { UInt8(200 - $0) }).base64EncodedString()

    /// Valid credentials and keys: a run with nothing else is valid.
    static let validEnvironment: [String: String] = [
        "MIO_CLIENT_ID": "client-123",
        "MIO_CLIENT_SECRET": clientSecret,
        "MIO_REDIRECT_URL": "http://127.0.0.1:8080/oauth/callback",
        "MIOCTX_TOKEN_KEYS": "k1:\(tokenKey)",
    ]

    static func environment(_ extra: [String: String] = [:], removing: [String] = []) -> [String: String] {
        var environment = validEnvironment.merging(extra) { _, new in new }
        for name in removing { environment[name] = nil }
        return environment
    }

    /// The line of `output` for `key` (the last component, indented under its section), e.g. `maxInFlight: 30  # flag`.
    static func line(_ output: String, _ name: String) -> String? {
        output.split(separator: "\n").map(String.init).first {
            $0.trimmingCharacters(in: .whitespaces).hasPrefix(name + ": ")
        }?.trimmingCharacters(in: .whitespaces)
    }

    @Test func defaultsAloneAreValidAndMarkedDefault() async throws {
        let output = try await ConfigCheck.run(["config", "check"], environment: Self.environment())
        #expect(output.status == 0, "\(output.standardError)")
        #expect(Self.line(output.standardOutput, "maxInFlight") == "maxInFlight: 256  # default")
        #expect(Self.line(output.standardOutput, "clientID") == "clientID: client-123  # env MIO_CLIENT_ID")
        #expect(Self.line(output.standardOutput, "maxTimePerJob") == "maxTimePerJob: 1m  # default")
        #expect(output.standardError.isEmpty)
    }

    @Test func flagOverridesEnvironmentWhichOverridesFileWhichOverridesDefault() async throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write(
            "mioctx.yaml",
            """
            kafka:
              groupId: group-from-file
              inputTopic: topic-from-file
            mio:
              apiURL: https://file.example:1
            processing:
              maxInFlight: 10
              retry:
                maxAttempts: 7
            """
        )
        let environment = Self.environment([
            "MIOCTX_KAFKA_GROUP_ID": "group-from-env",
            "MIOCTX_PROCESSING_MAX_IN_FLIGHT": "20",
            "MIO_API_URL": "https://sdk-env.example:2",
        ])
        let output = try await ConfigCheck.run(["config", "check", "--config", file, "--max-in-flight", "30"], environment: environment)
        #expect(output.status == 0, "\(output.standardError)")
        let text = output.standardOutput
        #expect(Self.line(text, "maxInFlight") == "maxInFlight: 30  # flag --max-in-flight")
        #expect(Self.line(text, "groupId") == "groupId: group-from-env  # env MIOCTX_KAFKA_GROUP_ID")
        #expect(Self.line(text, "inputTopic") == "inputTopic: topic-from-file  # file")
        #expect(Self.line(text, "maxAttempts") == "maxAttempts: 7  # file")
        #expect(Self.line(text, "outputTopic") == "outputTopic: context-results  # default")
        #expect(Self.line(text, "apiURL") == "apiURL: https://sdk-env.example:2  # env MIO_API_URL")
        #expect(text.contains("# configuration file: \(file)"))

        // Without the flag the environment wins; without the environment the file does.
        let withoutFlag = try await ConfigCheck.run(["config", "check", "--config", file], environment: environment)
        #expect(Self.line(withoutFlag.standardOutput, "maxInFlight") == "maxInFlight: 20  # env MIOCTX_PROCESSING_MAX_IN_FLIGHT")
        let fileOnly = try await ConfigCheck.run(["config", "check", "--config", file], environment: Self.environment())
        #expect(Self.line(fileOnly.standardOutput, "maxInFlight") == "maxInFlight: 10  # file")
        #expect(Self.line(fileOnly.standardOutput, "apiURL") == "apiURL: https://file.example:1  # file")
    }

    @Test func mioctxVariableWinsOverTheSDKVariableAndTheFlagOverBoth() async throws {
        let environment = Self.environment([
            "MIO_API_URL": "https://sdk.example", "MIOCTX_MIO_API_URL": "https://mioctx.example",
        ])
        let output = try await ConfigCheck.run(["config", "check"], environment: environment)
        #expect(Self.line(output.standardOutput, "apiURL") == "apiURL: https://mioctx.example  # env MIOCTX_MIO_API_URL")
        let flagged = try await ConfigCheck.run(["config", "check", "--mio-api-url", "https://flag.example"], environment: environment)
        #expect(Self.line(flagged.standardOutput, "apiURL") == "apiURL: https://flag.example  # flag --mio-api-url")
    }

    @Test(arguments: [
        ("MIOCTX_KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092", "bootstrapServers: b1:9092,b2:9092"),
        ("MIOCTX_KAFKA_DEAD_LETTER_TOPIC", "dlq", "deadLetterTopic: dlq"),
        ("MIOCTX_MIO_DASHBOARD_URL", "https://dash.example", "dashboardURL: https://dash.example"),
        ("MIOCTX_MIO_REQUEST_TIMEOUT", "2m", "requestTimeout: 2m"),
        ("MIOCTX_MIO_MAX_CONNECTIONS", "64", "maxConnections: 64"),
        ("MIOCTX_TOKENS_PROACTIVE_REFRESH_THRESHOLD", "0.5", "proactiveRefreshThreshold: 0.5"),
        ("MIOCTX_PROCESSING_MAX_IN_FLIGHT_PER_USER", "2", "maxInFlightPerUser: 2"),
        ("MIOCTX_PROCESSING_ORDERING", "key", "ordering: key"),
        ("MIOCTX_PROCESSING_REQUESTS_PER_SECOND", "12.5", "requestsPerSecond: 12.5"),
        ("MIOCTX_PROCESSING_RETRY_MAX_TIME_PER_JOB", "90", "maxTimePerJob: 90s"),
        ("MIOCTX_PROCESSING_RETRY_INITIAL_BACKOFF", "500ms", "initialBackoff: 500ms"),
        ("MIOCTX_PROCESSING_COMMIT_INTERVAL", "1.5s", "commitInterval: 1500ms"),
        ("MIOCTX_PROCESSING_REVOCATION_GRACE_PERIOD", "0", "revocationGracePeriod: 0s"),
        ("MIOCTX_PROCESSING_MAX_UNCOMMITTED_TIME", "750ms", "maxUncommittedTime: 750ms"),
        ("MIOCTX_PROCESSING_MAX_UNCOMMITTED_TIME", "off", "maxUncommittedTime: off"),
        ("MIOCTX_PROCESSING_MAX_UNCOMMITTED_TIME", "auto", "maxUncommittedTime: auto"),
        ("MIOCTX_HTTP_HOST", "127.0.0.1", "host: 127.0.0.1"),
        ("MIOCTX_HTTP_PORT", "9090", "port: 9090"),
        ("MIOCTX_LOG_LEVEL", "debug", "level: debug"),
        ("MIOCTX_LOG_FORMAT", "text", "format: text"),
    ])
    func environmentVariableNameIsThePrefixedKeyInUpperSnakeCase(variable: String, value: String, expected: String) async throws {
        let output = try await ConfigCheck.run(["config", "check"], environment: Self.environment([variable: value]))
        #expect(output.status == 0, "\(output.standardError)")
        let name = String(expected.prefix { $0 != ":" })
        #expect(Self.line(output.standardOutput, name) == "\(expected)  # env \(variable)")
    }

    @Test func kafkaPropertiesMergeByNameAcrossFileEnvironmentAndFlags() async throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write(
            "mioctx.yaml",
            """
            kafka:
              properties:
                "security.protocol": SASL_SSL
                sasl.mechanisms: PLAIN
                socket:
                  keepalive.enable: true
                client.id: from-file
                linger.ms: 5
            """
        )
        let environment = Self.environment([
            "MIOCTX_KAFKA_PROPERTIES": #"client.id=from-env,linger.ms=10,ssl.cipher.suites=A\,B"#,
        ])
        let output = try await ConfigCheck.run(
            ["config", "check", "--config", file, "--kafka-property", "linger.ms=20", "-X", "compression.type=lz4"],
            environment: environment
        )
        #expect(output.status == 0, "\(output.standardError)")
        let text = output.standardOutput
        #expect(Self.line(text, "security.protocol") == "security.protocol: SASL_SSL  # file")
        #expect(Self.line(text, "sasl.mechanisms") == "sasl.mechanisms: PLAIN  # file")
        #expect(Self.line(text, "socket.keepalive.enable") == "socket.keepalive.enable: true  # file")
        #expect(Self.line(text, "client.id") == "client.id: from-env  # env MIOCTX_KAFKA_PROPERTIES")
        #expect(Self.line(text, "ssl.cipher.suites") == "ssl.cipher.suites: A,B  # env MIOCTX_KAFKA_PROPERTIES")
        #expect(Self.line(text, "linger.ms") == "linger.ms: 20  # flag --kafka-property")
        #expect(Self.line(text, "compression.type") == "compression.type: lz4  # flag -X")
    }

    @Test func secretsNeverAppearInTheEffectiveConfiguration() async throws {
        let secrets = [
            Self.clientSecret, Self.tokenKey, "sasl-pw-from-file-9x", "sasl-pw-from-flag-7y", "jaas-from-env-5z",
            "pg-password-3w", "ssl-key-pw-1v", Self.stateKey,
        ]
        let directory = try TemporaryDirectory()
        let file = try directory.write(
            "mioctx.yaml",
            """
            kafka:
              properties:
                sasl.username: alice
                sasl.password: sasl-pw-from-file-9x
                ssl.key.password: ssl-key-pw-1v
            """
        )
        // Secrets are not accepted as flags (SecuritySettingsTests): here they come from a properties file and the
        // environment.
        let properties = try directory.write("client.properties", "sasl.password=sasl-pw-from-flag-7y\n")
        let environment = Self.environment([
            "MIOCTX_KAFKA_PROPERTIES": "sasl.jaas.config=jaas-from-env-5z",
            "MIOCTX_OAUTH_STATE_KEY": Self.stateKey,
            "MIOCTX_TOKENS_STORE": "postgres://mioctx:pg-password-3w@127.0.0.1:5432/tokens",
        ])
        let output = try await ConfigCheck.run(
            ["config", "check", "--config", file, "--kafka-config", properties],
            environment: environment
        )
        #expect(output.status == 0, "\(output.standardError)")
        for secret in secrets {
            #expect(!output.all.contains(secret), "\(secret) appears in the output")
        }
        let text = output.standardOutput
        #expect(Self.line(text, "clientSecret") == "clientSecret: <redacted>  # env MIO_CLIENT_SECRET")
        #expect(Self.line(text, "keys") == "keys: <redacted>  # env MIOCTX_TOKEN_KEYS")
        #expect(Self.line(text, "stateKey") == "stateKey: <redacted>  # env MIOCTX_OAUTH_STATE_KEY")
        #expect(Self.line(text, "sasl.password")?.hasPrefix("sasl.password: <redacted>  # file") == true)
        #expect(Self.line(text, "sasl.jaas.config") == "sasl.jaas.config: <redacted>  # env MIOCTX_KAFKA_PROPERTIES")
        #expect(Self.line(text, "sasl.username") == "sasl.username: alice  # file")
        #expect(text.contains("store: postgres://mioctx:***@127.0.0.1:5432/tokens  # env MIOCTX_TOKENS_STORE"))
    }

    @Test func secretsNeverAppearInProblems() async throws {
        let directory = try TemporaryDirectory()
        // Credentials in the file are refused without quoting them; so is a malformed line holding a password.
        let file = try directory.write(
            "mioctx.yaml",
            """
            mio:
              clientSecret: file-secret-4u
            kafka:
              properties:
                sasl.password: [not, a, scalar-secret-8t]
            """
        )
        let malformed = try directory.write("bad.yaml", "kafka:\n  properties:\n    sasl.password: \"quoted-secret-2s\n  x: [")
        let environment = Self.environment([
            "MIOCTX_TOKEN_KEYS": "k1:short-key-material-6r",
            "MIOCTX_KAFKA_PROPERTIES": "sasl.password",
        ])
        let secrets = ["file-secret-4u", "scalar-secret-8t", "quoted-secret-2s", "short-key-material-6r", "pg-bad-pw-0q"]
        for arguments in [
            ["config", "check", "--config", file, "--token-store", "postgres://u:pg-bad-pw-0q@/nohost"],
            ["config", "check", "--config", malformed],
        ] {
            let output = try await ConfigCheck.run(arguments, environment: environment)
            #expect(output.status == 78)
            #expect(output.standardOutput.isEmpty)
            for secret in secrets {
                #expect(!output.all.contains(secret), "\(secret) appears in: \(output.standardError)")
            }
        }
    }

    /// One invalid setting per case: the message names the setting and where the value came from.
    struct InvalidCase: Sendable, CustomTestStringConvertible {
        var name: String
        var arguments: [String] = []
        var environment: [String: String] = [:]
        var removing: [String] = []
        var yaml: String?
        /// Substrings of the expected message line ("FILE" stands for the file's path).
        var expected: [String]

        var testDescription: String { name }
    }

    static let invalidCases: [InvalidCase] = [
        InvalidCase(
            name: "unknown key in the file", yaml: "kafka:\n  bootstrapServer: b:1\n",
            expected: ["kafka.bootstrapServer: unknown key (did you mean kafka.bootstrapServers?) (from file FILE)"]
        ),
        InvalidCase(
            name: "unknown section in the file", yaml: "logging:\n  level: debug\n",
            expected: ["logging: unknown key", "(from file FILE)"]
        ),
        InvalidCase(
            name: "list where one value belongs", yaml: "processing:\n  maxInFlight: [1, 2]\n",
            expected: ["processing.maxInFlight: must be a single value, not a list (from file FILE)"]
        ),
        InvalidCase(
            name: "not a number", yaml: "processing:\n  retry:\n    maxAttempts: many\n",
            expected: [#"processing.retry.maxAttempts: must be a whole number between 1 and 100, got "many" (from file FILE)"#]
        ),
        InvalidCase(
            name: "out of range from the environment", environment: ["MIOCTX_PROCESSING_MAX_IN_FLIGHT": "0"],
            expected: [
                #"processing.maxInFlight: must be between 1 and 100000, got "0" (from MIOCTX_PROCESSING_MAX_IN_FLIGHT)"#
            ]
        ),
        InvalidCase(
            name: "port out of range from a flag", arguments: ["--http-port", "70000"],
            expected: [#"http.port: must be between 0 and 65535, got "70000" (from --http-port)"#]
        ),
        InvalidCase(
            name: "bad duration", arguments: ["--shutdown-grace-period", "soon"],
            expected: ["processing.shutdownGracePeriod: must be a duration", #"got "soon" (from --shutdown-grace-period)"#]
        ),
        InvalidCase(
            name: "negative duration", environment: ["MIOCTX_MIO_REQUEST_TIMEOUT": "-5s"],
            expected: ["mio.requestTimeout: must be a duration", #"got "-5s" (from MIOCTX_MIO_REQUEST_TIMEOUT)"#]
        ),
        InvalidCase(
            name: "ordering not in the set", arguments: ["--ordering", "fifo"],
            expected: [#"processing.ordering: must be one of unordered, key, got "fifo" (from --ordering)"#]
        ),
        InvalidCase(
            name: "bad store location", arguments: ["--token-store", "mysql://db"],
            expected: [
                #"tokens.store: must be sqlite:PATH or postgres://user:password@host:port/database, got "mysql://db" (from --token-store)"#
            ]
        ),
        InvalidCase(
            name: "missing config file", arguments: ["--config", "/nonexistent/mioctx.yaml"],
            expected: ["config: the configuration file /nonexistent/mioctx.yaml does not exist (from --config)"]
        ),
        InvalidCase(
            name: "missing config file from MIOCTX_CONFIG", environment: ["MIOCTX_CONFIG": "/nonexistent/m.yaml"],
            expected: ["config: the configuration file /nonexistent/m.yaml does not exist (from MIOCTX_CONFIG)"]
        ),
        InvalidCase(
            name: "malformed YAML", yaml: "kafka:\n  groupId: [unclosed\n",
            expected: ["config: the configuration file FILE is not valid YAML:", "line 3", "(from --config)"]
        ),
        InvalidCase(
            name: "file that is not a mapping", yaml: "- a\n- b\n",
            expected: ["config: the configuration file FILE must hold a mapping of settings"]
        ),
        InvalidCase(
            name: "missing client id", removing: ["MIO_CLIENT_ID"],
            expected: ["mio.clientID: is required: set the environment variable MIO_CLIENT_ID"]
        ),
        InvalidCase(
            name: "missing client secret", removing: ["MIO_CLIENT_SECRET"],
            expected: ["mio.clientSecret: is required: set the environment variable MIO_CLIENT_SECRET"]
        ),
        InvalidCase(
            name: "missing redirect URL", environment: ["MIO_REDIRECT_URL": ""],
            expected: ["mio.redirectURL: is required: set the environment variable MIO_REDIRECT_URL"]
        ),
        InvalidCase(
            name: "per-user limit above the total", arguments: ["--max-in-flight", "8", "--max-in-flight-per-user", "9"],
            expected: [
                #"processing.maxInFlightPerUser: must not exceed processing.maxInFlight (8), got "9" (from --max-in-flight-per-user)"#
            ]
        ),
        InvalidCase(
            name: "unreadable uncommitted time", environment: ["MIOCTX_PROCESSING_MAX_UNCOMMITTED_TIME": "soon"],
            expected: [
                #"processing.maxUncommittedTime: must be `auto`, `off` or a duration from 10ms to 1h (such as 2s), got "soon""#,
                "(from MIOCTX_PROCESSING_MAX_UNCOMMITTED_TIME)",
            ]
        ),
        InvalidCase(
            name: "zero requests per second", arguments: ["--requests-per-second", "0"],
            expected: [#"processing.requestsPerSecond: must be greater than 0"#, #"got "0" (from --requests-per-second)"#]
        ),
        InvalidCase(
            name: "negative requests per second", environment: ["MIOCTX_PROCESSING_REQUESTS_PER_SECOND": "-3"],
            expected: [#"processing.requestsPerSecond: must be greater than 0"#, "(from MIOCTX_PROCESSING_REQUESTS_PER_SECOND)"]
        ),
        InvalidCase(
            name: "max backoff below initial backoff", yaml: "processing:\n  retry:\n    initialBackoff: 5s\n    maxBackoff: 1s\n",
            expected: [#"processing.retry.maxBackoff: must be at least processing.retry.initialBackoff (5s), got "1s" (from file FILE)"#]
        ),
        InvalidCase(
            name: "bad log level", environment: ["MIOCTX_LOG_LEVEL": "verbose"],
            expected: [#"log.level: must be one of trace, debug, info, notice, warning, error, critical, got "verbose""#]
        ),
        InvalidCase(
            name: "bad log format", arguments: ["--log-format", "xml"],
            expected: [#"log.format: must be one of json, text, auto, got "xml" (from --log-format)"#]
        ),
        InvalidCase(
            name: "bad topic name", arguments: ["--input-topic", "a topic"],
            expected: [#"kafka.inputTopic: must be a Kafka topic name"#, #"got "a topic" (from --input-topic)"#]
        ),
        InvalidCase(
            name: "output topic equal to input topic", arguments: ["--output-topic", "context-requests"],
            expected: [#"kafka.outputTopic: must differ from kafka.inputTopic, got "context-requests" (from --output-topic)"#]
        ),
        InvalidCase(
            name: "property without a value", arguments: ["--kafka-property", "acks"],
            expected: ["kafka.properties: entry 1 must be name=value (from --kafka-property)"]
        ),
        InvalidCase(
            name: "property that mioctx owns", environment: ["MIOCTX_KAFKA_PROPERTIES": "enable.auto.commit=true"],
            expected: ["kafka.properties.enable.auto.commit: cannot be set", "(from MIOCTX_KAFKA_PROPERTIES)"]
        ),
        InvalidCase(
            name: "malformed token keys", environment: ["MIOCTX_TOKEN_KEYS": "nocolon"],
            expected: ["tokens.keys: key entry 1 is not of the form kid:base64key (from MIOCTX_TOKEN_KEYS)"]
        ),
        InvalidCase(
            name: "short OAuth state key", environment: ["MIOCTX_OAUTH_STATE_KEY": "c2hvcnQta2V5"],
            expected: [
                "oauth.stateKey: must be base64 of at least 32 random bytes",
                "(from MIOCTX_OAUTH_STATE_KEY)",
            ]
        ),
        InvalidCase(
            name: "OAuth state key in the file", yaml: "oauth:\n  stateKey: x\n",
            expected: ["oauth.stateKey: not read from the file: it comes only from the environment variable MIOCTX_OAUTH_STATE_KEY"]
        ),
        InvalidCase(
            name: "no token keys at all", removing: ["MIOCTX_TOKEN_KEYS"],
            expected: ["tokens.keys: no token encryption key: set MIOCTX_TOKEN_KEYS"]
        ),
        InvalidCase(
            name: "missing key file", removing: ["MIOCTX_TOKEN_KEYS"], yaml: "tokens:\n  keyFile: /nonexistent/keys\n",
            expected: ["tokens.keyFile: cannot read the key file /nonexistent/keys", "(from file FILE)"]
        ),
        InvalidCase(
            name: "credential in the file", yaml: "mio:\n  clientSecret: x\n",
            expected: ["mio.clientSecret: not read from the file: it comes only from the environment variable MIO_CLIENT_SECRET"]
        ),
    ]

    @Test(arguments: invalidCases)
    func invalidSettingIsNamedWithItsSourceAndFailsTheCheck(_ invalid: InvalidCase) async throws {
        let directory = try TemporaryDirectory()
        var arguments = ["config", "check"]
        var path = ""
        if let yaml = invalid.yaml {
            path = try directory.write("mioctx.yaml", yaml)
            arguments += ["--config", path]
        }
        arguments += invalid.arguments
        let output = try await ConfigCheck.run(
            arguments,
            environment: Self.environment(invalid.environment, removing: invalid.removing)
        )
        #expect(output.status == 78)
        #expect(output.standardOutput.isEmpty)
        let lines = output.standardError.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("invalid configuration (") == true)
        let expected = invalid.expected.map { $0.replacingOccurrences(of: "FILE", with: path) }
        #expect(
            lines.contains { line in expected.allSatisfy { line.contains($0) } },
            "no line holds \(expected) in:\n\(output.standardError)"
        )
    }

    @Test func everyProblemIsReportedInOneRun() async throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write(
            "mioctx.yaml",
            """
            kafka:
              groupid: x
            processing:
              maxInFlight: 0
              ordering: random
            """
        )
        let output = try await ConfigCheck.run(
            ["config", "check", "--config", file, "--http-port=-1", "--requests-per-second", "0"],
            environment: Self.environment(["MIOCTX_LOG_LEVEL": "loud"], removing: ["MIO_CLIENT_SECRET"])
        )
        #expect(output.status == 78)
        let settings = [
            "kafka.groupid", "processing.maxInFlight", "processing.ordering", "http.port",
            "processing.requestsPerSecond", "log.level", "mio.clientSecret",
        ]
        for setting in settings {
            #expect(output.standardError.contains("\n  \(setting): "), "\(setting) missing in:\n\(output.standardError)")
        }
        #expect(output.standardError.hasPrefix("invalid configuration (\(settings.count) problems):"))
    }

    @Test func keyFileSuppliesTheKeysThroughItsOlderVariableName() async throws {
        let directory = try TemporaryDirectory()
        let keyFile = try directory.write("keys", "k9:\(Self.tokenKey)\n")
        let output = try await ConfigCheck.run(
            ["config", "check"],
            environment: Self.environment(["MIOCTX_TOKEN_KEY_FILE": keyFile], removing: ["MIOCTX_TOKEN_KEYS"])
        )
        #expect(output.status == 0, "\(output.standardError)")
        #expect(Self.line(output.standardOutput, "keyFile") == "keyFile: \(keyFile)  # env MIOCTX_TOKEN_KEY_FILE")
        #expect(!output.all.contains(Self.tokenKey))
    }

    @Test func emptyFileAndNullValuesLeaveTheDefaults() async throws {
        let directory = try TemporaryDirectory()
        let empty = try directory.write("empty.yaml", "# nothing set yet\n")
        let nulls = try directory.write("nulls.yaml", "processing:\n  maxInFlight:\n  requestsPerSecond: ~\nhttp:\n")
        for file in [empty, nulls] {
            let output = try await ConfigCheck.run(["config", "check", "--config", file], environment: Self.environment())
            #expect(output.status == 0, "\(output.standardError)")
            #expect(Self.line(output.standardOutput, "maxInFlight") == "maxInFlight: 256  # default")
        }
    }

    @Test func totalBelowThePerUserDefaultLowersThePerUserLimit() async throws {
        let output = try await ConfigCheck.run(["config", "check", "--max-in-flight", "2"], environment: Self.environment())
        #expect(output.status == 0, "\(output.standardError)")
        #expect(Self.line(output.standardOutput, "maxInFlightPerUser") == "maxInFlightPerUser: 2  # default")
    }

    @Test func exampleConfigurationFileIsValidAndHoldsTheDefaults() async throws {
        let example = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/mioctx.yaml")
        let withFile = try await ConfigCheck.run(["config", "check", "--config", example.path], environment: Self.environment())
        #expect(withFile.status == 0, "\(withFile.standardError)")
        let defaults = try await ConfigCheck.run(["config", "check"], environment: Self.environment())
        func values(_ text: String) -> [String] {
            text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { String($0.split(separator: "#")[0]) }
        }
        #expect(values(withFile.standardOutput) == values(defaults.standardOutput))
    }
}
