import Pipeline
import Foundation
import Kafka
import Logging

/// The effective configuration of a worker: defaults, then the YAML file, then environment variables, then
/// command-line flags (each overrides the one before). See docs/configuration.md.
struct MioctxSettings: Sendable, Equatable {
    struct KafkaSettings: Sendable, Equatable {
        var bootstrapServers = "127.0.0.1:9092"
        var groupID = "mioctx"
        var inputTopic = "context-requests"
        var outputTopic = "context-results"
        var deadLetterTopic = "context-dead-letters"
        /// Any librdkafka property, passed through (SASL, SSL, tuning). Values may be secrets (passwords).
        var properties: [String: String] = [:]
    }

    struct MioSettings: Sendable, Equatable {
        var apiURL = "https://api.mio.xyz"
        var dashboardURL = "https://app.mio.xyz"
        /// From MIO_CLIENT_ID.
        var clientID = ""
        /// From MIO_CLIENT_SECRET. Never printed.
        var clientSecret = ""
        /// From MIO_REDIRECT_URL.
        var redirectURL = ""
        var requestTimeout: Duration = .seconds(30)
        var maxConnections = 256
    }

    struct TokenSettings: Sendable, Equatable {
        /// `sqlite:PATH` or `postgres://...` (the URL may hold a password: redacted when printed).
        var store = "sqlite:mioctx-tokens.sqlite"
        /// `kid:base64key,...` from MIOCTX_TOKEN_KEYS, or a key file. Never printed.
        var keys: String? = nil
        var keyFile: String? = nil
        var proactiveRefreshThreshold = 0.2
    }

    struct RetrySettings: Sendable, Equatable {
        var maxAttempts = 5
        var maxTimePerJob: Duration = .seconds(60)
        var initialBackoff: Duration = .milliseconds(200)
        var maxBackoff: Duration = .seconds(10)
    }

    struct ProcessingSettings: Sendable, Equatable {
        var maxInFlight = 256
        var maxInFlightPerUser = 4
        var ordering: SchedulingConfiguration.Ordering = .unordered
        /// nil: no cap.
        var requestsPerSecond: Double? = nil
        var retry = RetrySettings()
        var commitInterval: Duration = .seconds(1)
        var shutdownGracePeriod: Duration = .seconds(30)
        var revocationGracePeriod: Duration = .seconds(10)
    }

    struct HTTPSettings: Sendable, Equatable {
        var host = "0.0.0.0"
        var port = 8080
    }

    struct OAuthSettings: Sendable, Equatable {
        /// The HMAC key (base64, at least 32 bytes) that signs the OAuth `state` of `/oauth/connect`; from
        /// `MIOCTX_OAUTH_STATE_KEY` only. Replicas behind one load balancer must share it; `nil` gives each
        /// process a random key of its own.
        var stateKey: Data? = nil

        /// The environment variable of ``stateKey``.
        static let stateKeyVariable = "MIOCTX_OAUTH_STATE_KEY"
    }

    struct LogSettings: Sendable, Equatable {
        enum Format: String, Sendable, Equatable, CaseIterable {
            case json
            case text
        }

        var level: Logger.Level = .info
        /// nil: JSON, or text when standard error is a terminal.
        var format: Format? = nil
    }

    var kafka = KafkaSettings()
    var mio = MioSettings()
    var tokens = TokenSettings()
    var processing = ProcessingSettings()
    var http = HTTPSettings()
    var oauth = OAuthSettings()
    var log = LogSettings()
}
