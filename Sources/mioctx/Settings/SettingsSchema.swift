import MioTokens

/// The settings' names: the keys a file may set, the sections that group them, and the flags.
///
/// Environment variable names are derived by swift-configuration's environment key encoding behind a `mioctx`
/// prefix: `MIOCTX_` + the key in UPPER_SNAKE_CASE, dots and camel-case humps becoming underscores
/// (`processing.maxInFlight` -> `MIOCTX_PROCESSING_MAX_IN_FLIGHT`, `mio.apiURL` -> `MIOCTX_MIO_API_URL`).
struct SettingsSchema: Sendable {
    /// The librdkafka pass-through map.
    static let kafkaPropertiesKey = "kafka.properties"

    /// Every key of the file with a single value, in documentation order.
    let fileKeys: [String] = [
        "kafka.bootstrapServers", "kafka.groupId", "kafka.inputTopic", "kafka.outputTopic", "kafka.deadLetterTopic",
        "mio.apiURL", "mio.dashboardURL", "mio.requestTimeout", "mio.maxConnections",
        "tokens.store", "tokens.keyFile", "tokens.proactiveRefreshThreshold",
        "processing.maxInFlight", "processing.maxInFlightPerUser", "processing.ordering",
        "processing.requestsPerSecond", "processing.retry.maxAttempts", "processing.retry.maxTimePerJob",
        "processing.retry.initialBackoff", "processing.retry.maxBackoff", "processing.commitInterval",
        "processing.shutdownGracePeriod", "processing.revocationGracePeriod",
        "http.host", "http.port", "log.level", "log.format",
    ]

    /// The command-line flag of each key that has one (`kafka.properties` has `--kafka-property`).
    static let flags: [String: String] = [
        "kafka.bootstrapServers": "--kafka-bootstrap-servers",
        "kafka.groupId": "--group-id",
        "kafka.inputTopic": "--input-topic",
        "kafka.outputTopic": "--output-topic",
        "kafka.deadLetterTopic": "--dead-letter-topic",
        "kafka.properties": "--kafka-property",
        "mio.apiURL": "--mio-api-url",
        "tokens.store": "--token-store",
        "processing.maxInFlight": "--max-in-flight",
        "processing.maxInFlightPerUser": "--max-in-flight-per-user",
        "processing.ordering": "--ordering",
        "processing.requestsPerSecond": "--requests-per-second",
        "processing.retry.maxAttempts": "--max-attempts",
        "processing.shutdownGracePeriod": "--shutdown-grace-period",
        "http.port": "--http-port",
        "log.level": "--log-level",
        "log.format": "--log-format",
    ]

    /// Other environment variables that set a key, after `MIOCTX_...` and before the file: the Mio SDK's own
    /// names, and the key file's older name that `mioctx tokens` reads.
    static let environmentAliases: [String: [String]] = [
        "mio.apiURL": ["MIO_API_URL"],
        "mio.dashboardURL": ["MIO_DASHBOARD_URL"],
        "tokens.keyFile": ["MIOCTX_TOKEN_KEY_FILE"],
    ]

    /// Settings read only from the environment, never from the file or a flag, with their variables.
    static let environmentOnly: [String: String] = [
        "mio.clientID": "MIO_CLIENT_ID",
        "mio.clientSecret": "MIO_CLIENT_SECRET",
        "mio.redirectURL": "MIO_REDIRECT_URL",
        "tokens.keys": TokenKeyring.keysEnvironmentVariable,
        "oauth.stateKey": MioctxSettings.OAuthSettings.stateKeyVariable,
    ]

    /// The environment variable that names the configuration file when `--config` is absent.
    static let configFileVariable = "MIOCTX_CONFIG"

    /// `kafka`, `mio`, `processing`, `processing.retry`, ...: every key's enclosing mappings (those of
    /// environment-only keys too, so that such a key in the file is named with the variable to use instead).
    var sections: Set<String> {
        var sections: Set<String> = []
        for key in fileKeys + [Self.kafkaPropertiesKey] + Self.environmentOnly.keys {
            let components = key.split(separator: ".")
            for length in 1..<components.count {
                sections.insert(components.prefix(length).joined(separator: "."))
            }
        }
        return sections
    }

    /// Why `key` is not accepted in the file, with the likely intended key when one is close.
    func unknownKeyMessage(_ key: String) -> String {
        if let variable = Self.environmentOnly[key] ?? Self.environmentOnly.first(where: {
            $0.key.lowercased() == key.lowercased()
        })?.value {
            return "not read from the file: it comes only from the environment variable \(variable)"
        }
        let candidates = fileKeys + [Self.kafkaPropertiesKey] + sections
        let best = candidates.map { ($0, Self.editDistance($0.lowercased(), key.lowercased())) }.min { $0.1 < $1.1 }
        if let (candidate, distance) = best, distance <= max(2, key.count / 5) {
            return "unknown key (did you mean \(candidate)?)"
        }
        return "unknown key"
    }

    /// Levenshtein distance.
    private static func editDistance(_ left: String, _ right: String) -> Int {
        let left = Array(left)
        let right = Array(right)
        var previous = Array(0...right.count)
        for (i, l) in left.enumerated() {
            var current = [i + 1]
            for (j, r) in right.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (l == r ? 0 : 1)))
            }
            previous = current
        }
        return previous[right.count]
    }
}
