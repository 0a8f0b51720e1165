import ArgumentParser
import Foundation

/// The configuration flags every command that runs the worker shares: `--config PATH` and the overrides.
///
/// Embed it with `@OptionGroup var settings: SettingsOptions` and call ``load(environment:)``. Values are taken as
/// text and checked by the loader, so a bad flag is reported together with every other problem, in the same words
/// as the same mistake in the file or the environment.
struct SettingsOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp("A YAML configuration file (else MIOCTX_CONFIG; else defaults only).", valueName: "path")
    )
    var configFile: String?

    @Option(name: .customLong("kafka-bootstrap-servers"), help: ArgumentHelp("kafka.bootstrapServers", valueName: "host:port,..."))
    var kafkaBootstrapServers: String?

    @Option(name: .customLong("group-id"), help: ArgumentHelp("kafka.groupId: the consumer group.", valueName: "id"))
    var groupID: String?

    @Option(name: .customLong("input-topic"), help: ArgumentHelp("kafka.inputTopic", valueName: "topic"))
    var inputTopic: String?

    @Option(name: .customLong("output-topic"), help: ArgumentHelp("kafka.outputTopic", valueName: "topic"))
    var outputTopic: String?

    @Option(name: .customLong("dead-letter-topic"), help: ArgumentHelp("kafka.deadLetterTopic", valueName: "topic"))
    var deadLetterTopic: String?

    @Option(
        name: .customLong("kafka-property"),
        help: ArgumentHelp("A librdkafka property for kafka.properties (repeatable).", valueName: "name=value")
    )
    var kafkaProperties: [String] = []

    @Option(name: .customLong("mio-api-url"), help: ArgumentHelp("mio.apiURL", valueName: "url"))
    var mioAPIURL: String?

    @Option(
        name: .customLong("token-store"),
        help: ArgumentHelp("tokens.store: sqlite:PATH or postgres://user:password@host:port/db.", valueName: "location")
    )
    var tokenStore: String?

    @Option(name: .customLong("max-in-flight"), help: ArgumentHelp("processing.maxInFlight", valueName: "n"))
    var maxInFlight: String?

    @Option(
        name: .customLong("max-in-flight-per-user"),
        help: ArgumentHelp("processing.maxInFlightPerUser", valueName: "n")
    )
    var maxInFlightPerUser: String?

    @Option(name: .customLong("ordering"), help: ArgumentHelp("processing.ordering: unordered or key.", valueName: "mode"))
    var ordering: String?

    @Option(
        name: .customLong("requests-per-second"),
        help: ArgumentHelp("processing.requestsPerSecond: a cap on getContext calls, or unlimited.", valueName: "rate")
    )
    var requestsPerSecond: String?

    @Option(name: .customLong("max-attempts"), help: ArgumentHelp("processing.retry.maxAttempts", valueName: "n"))
    var maxAttempts: String?

    @Option(
        name: .customLong("shutdown-grace-period"),
        help: ArgumentHelp("processing.shutdownGracePeriod (500ms, 30s, 2m or seconds).", valueName: "duration")
    )
    var shutdownGracePeriod: String?

    @Option(name: .customLong("http-port"), help: ArgumentHelp("http.port", valueName: "port"))
    var httpPort: String?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp("log.level: trace, debug, info, notice, warning, error or critical.", valueName: "level")
    )
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: ArgumentHelp("log.format: json, text or auto.", valueName: "format"))
    var logFormat: String?

    init() {}

    /// The flags given, by setting key.
    var flagValues: [String: String] {
        let values: [(String, String?)] = [
            ("kafka.bootstrapServers", kafkaBootstrapServers),
            ("kafka.groupId", groupID),
            ("kafka.inputTopic", inputTopic),
            ("kafka.outputTopic", outputTopic),
            ("kafka.deadLetterTopic", deadLetterTopic),
            ("mio.apiURL", mioAPIURL),
            ("tokens.store", tokenStore),
            ("processing.maxInFlight", maxInFlight),
            ("processing.maxInFlightPerUser", maxInFlightPerUser),
            ("processing.ordering", ordering),
            ("processing.requestsPerSecond", requestsPerSecond),
            ("processing.retry.maxAttempts", maxAttempts),
            ("processing.shutdownGracePeriod", shutdownGracePeriod),
            ("http.port", httpPort),
            ("log.level", logLevel),
            ("log.format", logFormat),
        ]
        return Dictionary(uniqueKeysWithValues: values.compactMap { key, value in value.map { (key, $0) } })
    }

    /// The loader for these flags and `environment`.
    func loader(environment: [String: String]) -> SettingsLoader {
        let configFile: (path: String, source: SettingSource)?
        if let path = self.configFile {
            configFile = (path, .flag(name: "--config"))
        } else if let path = environment[SettingsSchema.configFileVariable], !path.isEmpty {
            configFile = (path, .environment(variable: SettingsSchema.configFileVariable))
        } else {
            configFile = nil
        }
        return SettingsLoader(
            configFile: configFile,
            flagValues: flagValues,
            flagProperties: kafkaProperties,
            environment: environment
        )
    }

    /// Loads and validates the settings (defaults < the YAML file < environment variables < these flags), with
    /// the source of each value (what `mioctx config check` prints).
    /// - Throws: ``SettingsError`` listing every problem, each naming the setting and where its value came from.
    func loadEffective(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> EffectiveSettings {
        try await loader(environment: environment).load()
    }

    /// Loads the settings for a command: on a ``SettingsError`` it writes each problem to standard error and
    /// exits with ``invalidConfigurationExitCode``.
    ///
    /// - Parameter environment: The environment to read, by default the process's.
    /// - Returns: The effective settings.
    /// - Throws: `ExitCode` after printing the problems; any other error unchanged.
    func loadOrExit(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> EffectiveSettings {
        do {
            return try await loadEffective(environment: environment)
        } catch let error as SettingsError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw Self.invalidConfigurationExitCode
        }
    }

    /// The exit status for an invalid configuration: 78, `EX_CONFIG` of sysexits.h.
    static let invalidConfigurationExitCode = ExitCode(78)
}
