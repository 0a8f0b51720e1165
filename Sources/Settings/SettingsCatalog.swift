public import Pipeline
import KafkaPipeline
public import Foundation
import Kafka
public import Logging
import Mio
import MioTokens

/// Every setting of mioctx, declared once, in the order of the documentation.
///
/// A section is a struct whose stored properties are the declarations; ``SettingsCatalog/all`` walks them in
/// declaration order. Read a value with its key path: `settings[\.processing.maxInFlight]`. Adding a setting is
/// one declaration here plus its use; its key, variable, flag, default, validation, `config check` line and
/// row of docs/configuration.md follow from it. Defaults come from the libraries' configuration types.
public struct SettingsCatalog: Sendable {
    /// `kafka.*`: the consumer group and its topics.
    public struct Kafka: Sendable {
        /// The declaration of `kafka.bootstrapServers`.
        public let bootstrapServers = Setting<String>(
            "kafka.bootstrapServers", flags: ["--kafka-bootstrap-servers"], default: "127.0.0.1:9092",
            parser: .bootstrapServers, "librdkafka `bootstrap.servers`: `host:port,host:port`"
        )
        /// The declaration of `kafka.groupId`.
        public let groupID = Setting<String>(
            "kafka.groupId", flags: ["--group-id"], default: "mioctx", parser: .nonEmpty,
            "consumer group; all replicas of a deployment share it"
        )
        /// The declaration of `kafka.inputTopic`.
        public let inputTopic = Setting<String>(
            "kafka.inputTopic", flags: ["--input-topic"], default: "context-requests", parser: .topic,
            "topic of jobs `{id, userId, query}`"
        )
        /// The declaration of `kafka.outputTopic`.
        public let outputTopic = Setting<String>(
            "kafka.outputTopic", flags: ["--output-topic"], default: "context-results", parser: .topic,
            "one result per job, keyed by user id; must differ from the input topic"
        )
        /// The declaration of `kafka.deadLetterTopic`.
        public let deadLetterTopic = Setting<String>(
            "kafka.deadLetterTopic", flags: ["--dead-letter-topic"], default: "context-dead-letters", parser: .topic,
            "undecodable jobs with the reason in headers; must differ from the input topic"
        )
        /// The declaration of `kafka.topicPartitions`.
        public let topicPartitions = Setting<Int>(
            "kafka.topicPartitions", flags: ["--partitions"], default: 6, parser: .integer(in: 1...10_000),
            "partitions of each topic `mioctx topics` creates (1 to 10000; the most replicas that share the work)"
        )
        /// The declaration of `kafka.topicReplicationFactor`.
        public let topicReplicationFactor = Setting<Int>(
            "kafka.topicReplicationFactor", flags: ["--replication-factor"], default: -1,
            parser: .replicationFactor,
            "replicas of each partition `mioctx topics` creates (1 to 64; -1: the brokers' `default.replication.factor`)"
        )
        /// The declaration of `kafka.properties`.
        public let properties = PropertyMapSetting(
            "kafka.properties", flags: ["--kafka-property", SettingsArguments.shortPropertyFlag],
            reserved: [
                "bootstrap.servers": "is set by kafka.bootstrapServers, not as a property",
                "group.id": "is set by kafka.groupId, not as a property",
                "enable.auto.commit": "cannot be set: mioctx commits an offset only after its result is delivered (librdkafka auto-commits the offsets mioctx stores)",
                "enable.auto.offset.store":
                    "cannot be set: mioctx stores an offset only after its result is delivered",
                "acks": "cannot be set: mioctx commits a job's offset after the broker acknowledged its result, "
                    + "which means nothing with acks=0 or 1 (librdkafka's default, all, is used)",
                "enable.idempotence": "cannot be set: the producer's delivery guarantees are mioctx's own "
                    + "(acknowledged by all in-sync replicas, retried without reordering)",
            ],
            "any librdkafka property (SASL, SSL, tuning), see below"
        )
    }

    /// `mio.*`: the Mio API and the OAuth application.
    public struct Mio: Sendable {
        /// The declaration of `mio.apiURL`.
        public let apiURL = Setting<String>(
            "mio.apiURL", variables: ["MIO_API_URL"], flags: ["--mio-api-url"],
            default: MioClient.Configuration.defaultAPIURL, parser: .httpURL,
            "Mio API base URL (https://; http:// only to a loopback address)"
        )
        /// The declaration of `mio.dashboardURL`.
        public let dashboardURL = Setting<String>(
            "mio.dashboardURL", variables: ["MIO_DASHBOARD_URL"], default: MioClient.Configuration.defaultDashboardURL,
            parser: .httpURL, "dashboard with the consent page users are sent to"
        )
        /// The declaration of `mio.plainHTTPHosts`.
        public let plainHTTPHosts = Setting<[String]>(
            "mio.plainHttpHosts", default: [], parser: .hostList, format: { $0.joined(separator: ",") },
            documentedDefault: "none",
            "hosts `mio.apiURL` and the redirect URL may reach over http:// besides loopback (a development network's "
                + "simulator, `mio-simulator`); never for Mio itself"
        )
        /// The declaration of `mio.requestTimeout`.
        public let requestTimeout = Setting<Duration>(
            "mio.requestTimeout", default: MioClient.Configuration.defaultRequestTimeout,
            in: .milliseconds(1) ... .seconds(600), "timeout of one HTTP request to Mio (1ms to 10m)"
        )
        /// The declaration of `mio.maxConnections`.
        public let maxConnections = Setting<Int>(
            "mio.maxConnections", default: MioClient.Configuration.defaultMaxConnections,
            parser: .integer(in: 1...10_000),
            "concurrent HTTP connections to Mio (1 to 10000; never fewer than processing.maxInFlight)"
        )
        /// The declaration of `mio.clientID`.
        public let clientID = Setting<String>(
            "mio.clientID", layers: .environmentOnly, variables: ["MIO_CLIENT_ID"], default: "",
            parser: .init { .success($0) }, format: { $0 }, requirement: .mioCredentials,
            documentedDefault: "required", "OAuth application id"
        )
        /// The declaration of `mio.clientSecret`.
        public let clientSecret = Setting<Secret<String>>(
            "mio.clientSecret", layers: .environmentOnly, variables: ["MIO_CLIENT_SECRET"], default: "",
            parser: .init { .success(Secret($0)) }, format: { $0.description }, secrecy: .secret,
            requirement: .mioCredentials,
            documentedDefault: "required", "OAuth client secret; never printed"
        )
        /// The declaration of `mio.redirectURL`.
        public let redirectURL = Setting<String>(
            "mio.redirectURL", layers: .environmentOnly, variables: ["MIO_REDIRECT_URL"], default: "",
            parser: .httpURL, format: { $0 }, requirement: .mioCredentials, documentedDefault: "required",
            "redirect URL registered in Mio (https://; http:// only to a loopback address)"
        )
    }

    /// `tokens.*`: the token store and its encryption keys.
    public struct Tokens: Sendable {
        /// The declaration of `tokens.store`.
        public let store = Setting<RedactingURL>(
            "tokens.store", flags: ["--token-store", "--store"],
            default: RedactingURL(TokenStoreLocation.default.description), parser: .tokenStore,
            format: { $0.description }, secrecy: .redacted(RedactingURL.redact),
            "`sqlite:PATH` (one replica) or `postgres://user:password@host:port/db[?sslmode=MODE]` "
                + "(replicas share it; MODE `disable`, `prefer` or `require`; without it, TLS with a verified certificate unless the host is loopback)"
        )
        /// The declaration of `tokens.postgresRootCert`.
        public let postgresRootCert = Setting<String?>(
            "tokens.postgresRootCert", default: nil, parser: SettingParser<String>.nonEmpty.map { $0 },
            format: { $0 ?? "~" }, documentedDefault: "none (the system's roots)",
            "PEM file of the CA that signed the PostgreSQL server's certificate (the URL's `sslrootcert` wins); "
                + "without `sslmode` in the URL, a server that is not on loopback needs TLS with a verified certificate"
        )
        /// The declaration of `tokens.keys`.
        public let keys = Setting<Secret<String>?>(
            "tokens.keys", layers: .environmentOnly, variables: [TokenKeyring.keysEnvironmentVariable], default: nil,
            parser: .tokenKeys, format: { $0?.description ?? "~" }, secrecy: .secret, documentedDefault: "none",
            "`kid:base64key,...` (first is primary) encrypting tokens at rest; never printed"
        )
        /// The declaration of `tokens.keyFile`.
        public let keyFile = Setting<String?>(
            "tokens.keyFile", variables: [TokenKeyring.keyFileEnvironmentVariable], flags: ["--key-file"],
            default: nil, parser: SettingParser<String>.nonEmpty.map { $0 }, format: { $0 ?? "~" },
            documentedDefault: "none", "file of `kid:base64key` lines, used when `MIOCTX_TOKEN_KEYS` is unset"
        )
        /// The declaration of `tokens.proactiveRefreshThreshold`.
        public let proactiveRefreshThreshold = Setting<Double>(
            "tokens.proactiveRefreshThreshold", default: TokenProvider.Configuration().proactiveRefreshThreshold,
            parser: .number(in: 0...0.9), format: SettingParser<Double>.format,
            "refresh before use when less than this share of the token's lifetime is left (0 to 0.9; 0: never)"
        )
        /// The declaration of `tokens.proactiveRefreshJitter`.
        public let proactiveRefreshJitter = Setting<Double>(
            "tokens.proactiveRefreshJitter", default: 0.1, parser: .number(in: 0...0.5),
            format: SettingParser<Double>.format,
            "share of the lifetime spread over users on top of the threshold, so tokens issued together refresh "
                + "at different times (0 to 0.5)"
        )
        /// The declaration of `tokens.proactiveRefreshesPerSecond`.
        public let proactiveRefreshesPerSecond = Setting<Double?>(
            "tokens.proactiveRefreshesPerSecond", default: 50, parser: .rate,
            format: { $0.map(SettingParser<Double>.format) ?? "unlimited" },
            "budget of refreshes of still-valid tokens per second for this replica (over it the current token is "
                + "used); expired tokens always refresh (`unlimited`: no budget)"
        )
        /// The declaration of `tokens.revalidationInterval`.
        public let revalidationInterval = Setting<Duration>(
            "tokens.revalidationInterval", default: TokenProvider.Configuration().revalidationInterval,
            in: .seconds(1) ... .seconds(3600),
            "longest time a cached access token is used without checking the store: a revoked or reconnected "
                + "user takes effect on every replica within it (1s to 1h)"
        )
        /// The declaration of `tokens.storeReadTimeout`.
        public let storeReadTimeout = Setting<Duration>(
            "tokens.storeReadTimeout", default: TokenProvider.Configuration().storeReadTimeout,
            in: .milliseconds(100) ... .seconds(120),
            "a token store read that takes longer fails (retriable), and readiness reports the store (100ms to 2m)"
        )
        /// The declaration of `tokens.postgresPoolSize`.
        public let postgresPoolSize = Setting<Int>(
            "tokens.postgresPoolSize", default: TokenStoreLocation.defaultPostgresPoolSize,
            parser: .integer(in: 2...1_000),
            "PostgreSQL connections per replica (2 to 1000); a refresh holds none while it waits for Mio (a lease "
                + "on the row), so token reads never wait for a refresh"
        )
    }

    /// `processing.retry.*`: retries of a job after a retriable failure.
    public struct Retry: Sendable {
        /// The declaration of `processing.retry.maxAttempts`.
        public let maxAttempts = Setting<Int>(
            "processing.retry.maxAttempts", flags: ["--max-attempts"], default: RetryPolicy().maxAttempts,
            parser: .integer(in: 1...100),
            "calls per job, the first included (1 to 100); the one retry after a token refresh is extra"
        )
        /// The declaration of `processing.retry.maxTimePerJob`.
        public let maxTimePerJob = Setting<Duration>(
            "processing.retry.maxTimePerJob", default: RetryPolicy().maxTimePerJob,
            in: .milliseconds(100) ... .seconds(3600), "no retry starts after a job has run this long (100ms to 1h)"
        )
        /// The declaration of `processing.retry.initialBackoff`.
        public let initialBackoff = Setting<Duration>(
            "processing.retry.initialBackoff", default: RetryPolicy().initialBackoff,
            in: .milliseconds(1) ... .seconds(60),
            "backoff cap before the first retry, doubling per attempt, full jitter (1ms to 1m)"
        )
        /// The declaration of `processing.retry.maxBackoff`.
        public let maxBackoff = Setting<Duration>(
            "processing.retry.maxBackoff", default: RetryPolicy().maxBackoff, in: .milliseconds(1) ... .seconds(600),
            "largest backoff cap, at least initialBackoff (up to 10m); a longer `Retry-After` is honoured"
        )
        /// The declaration of `processing.retry.maxTimeRateLimited`.
        public let maxTimeRateLimited = Setting<Duration>(
            "processing.retry.maxTimeRateLimited", default: .seconds(600), in: .seconds(1) ... .seconds(86_400),
            "429s do not use up attempts: a job ends `rate_limited` only after this long of them (1s to 24h)"
        )
    }

    /// `processing.breaker.*`: the circuit breaker over Mio's health and the adaptive concurrency limit.
    public struct Breaker: Sendable {
        /// The declaration of `processing.breaker.failureThreshold`.
        public let failureThreshold = Setting<Int>(
            "processing.breaker.failureThreshold", default: MioHealth.Configuration().failureThreshold,
            parser: .integer(in: 1...100_000),
            "failed Mio attempts (5xx, timeouts, connection failures) in the window that open the breaker (1 to 100000)"
        )
        /// The declaration of `processing.breaker.failureRatio`.
        public let failureRatio = Setting<Double>(
            "processing.breaker.failureRatio", default: MioHealth.Configuration().failureRatio,
            parser: .number(in: 0...1), format: SettingParser<Double>.format,
            "share of failed attempts in the window that opens the breaker, with the threshold (0 to 1)"
        )
        /// The declaration of `processing.breaker.window`.
        public let window = Setting<Duration>(
            "processing.breaker.window", default: MioHealth.Configuration().window,
            in: .seconds(1) ... .seconds(600), "sliding window of Mio attempts the breaker judges (1s to 10m)"
        )
        /// The declaration of `processing.breaker.probeInterval`.
        public let probeInterval = Setting<Duration>(
            "processing.breaker.probeInterval", default: MioHealth.Configuration().probeInterval,
            in: .milliseconds(10) ... .seconds(600),
            "wait before one probe tests Mio after the breaker opened, doubling per failed probe (10ms to 10m)"
        )
        /// The declaration of `processing.breaker.maxProbeInterval`.
        public let maxProbeInterval = Setting<Duration>(
            "processing.breaker.maxProbeInterval", default: MioHealth.Configuration().maxProbeInterval,
            in: .milliseconds(10) ... .seconds(3600),
            "longest wait between probes, at least probeInterval (10ms to 1h)"
        )
        /// The declaration of `processing.breaker.haltProbeInterval`.
        public let haltProbeInterval = Setting<Duration>(
            "processing.breaker.haltProbeInterval", default: MioHealth.Configuration().haltProbeInterval,
            in: .milliseconds(10) ... .seconds(3600),
            "with the line stopped by a deployment fault (wrong secret or key), wait between tries (10ms to 1h)"
        )
        /// The declaration of `processing.breaker.adaptiveConcurrency`.
        public let adaptiveConcurrency = Setting<Bool>(
            "processing.breaker.adaptiveConcurrency", default: MioHealth.Configuration().adaptiveConcurrency,
            parser: .boolean, format: { String($0) },
            "429s and timeouts halve the limit of Mio calls in flight, answers raise it by one per round trip"
        )
        /// The declaration of `processing.breaker.initialConcurrency`.
        public let initialConcurrency = Setting<Int>(
            "processing.breaker.initialConcurrency", default: 16, parser: .integer(in: 1...100_000),
            "Mio calls in flight of a fresh worker, growing 1.5 times per round trip until the first 429 or timeout, up to "
                + "processing.maxInFlight (slow start; 1 to 100000)"
        )
        /// The declaration of `processing.breaker.rateDecrease`.
        public let rateDecrease = Setting<Double>(
            "processing.breaker.rateDecrease", default: MioHealth.Configuration().rateDecrease,
            parser: .number(in: 0.5...1), format: SettingParser<Double>.format,
            "share of the Mio calls per second (answers of the last second at the first 429) that a 429 leaves as the "
                + "pace (0.5 to 1)"
        )
        /// The declaration of `processing.breaker.rateIncrease`.
        public let rateIncrease = Setting<Double>(
            "processing.breaker.rateIncrease", default: MioHealth.Configuration().rateIncrease,
            parser: .number(in: 0...1), format: SettingParser<Double>.format,
            "growth of that pace per second while it holds calls back, as a share of itself, right after a 429; it "
                + "doubles with each second of growth without a 429, never grows during a Retry-After pause (0 to 1)"
        )
        /// The declaration of `processing.breaker.maxRateIncrease`.
        public let maxRateIncrease = Setting<Double>(
            "processing.breaker.maxRateIncrease", default: MioHealth.Configuration().maxRateIncrease,
            parser: .number(in: 0...1), format: SettingParser<Double>.format,
            "highest growth of the pace per second that the doubling of rateIncrease reaches, as a share of itself "
                + "(rateIncrease or less: no doubling; 0 to 1)"
        )
    }

    /// `processing.*`: limits, ordering, commits and grace periods.
    public struct Processing: Sendable {
        /// The declaration of `processing.maxInFlight`.
        public let maxInFlight = Setting<Int>(
            "processing.maxInFlight", flags: ["--max-in-flight"], default: SchedulingConfiguration().maxInFlight,
            parser: .integer(in: 1...100_000),
            "jobs started and not finished (1 to 100000); at the limit the consumer pauses"
        )
        /// The declaration of `processing.maxInFlightPerUser`.
        public let maxInFlightPerUser = Setting<Int>(
            "processing.maxInFlightPerUser", flags: ["--max-in-flight-per-user"],
            default: SchedulingConfiguration().maxInFlightPerUser, parser: .integer(in: 1...100_000),
            "jobs in flight for one user (1 to maxInFlight; when only maxInFlight is set below the default, "
                + "it follows it down)"
        )
        /// The declaration of `processing.ordering`.
        public let ordering = Setting<SchedulingConfiguration.Ordering>(
            "processing.ordering", flags: ["--ordering"], default: SchedulingConfiguration().ordering,
            parser: .cases, format: { $0.rawValue },
            "`unordered`, or `key`: jobs with the same Kafka key (else user id) run one at a time, in order"
        )
        /// The declaration of `processing.requestsPerSecond`.
        public let requestsPerSecond = Setting<Double?>(
            "processing.requestsPerSecond", flags: ["--requests-per-second"], default: nil, parser: .rate,
            format: { $0.map(SettingParser<Double>.format) ?? "unlimited" }, documentedDefault: "unlimited",
            "cap on getContext calls per second for this replica (> 0, at most 1000000; `unlimited`: no cap)"
        )
        /// The declaration of `processing.maxResultBytes`.
        public let maxResultBytes = Setting<Int>(
            "processing.maxResultBytes", default: ProcessingEngine.Configuration.defaultMaxResultBytes,
            parser: .integer(in: 1024...1_000_000_000),
            "largest result in bytes; a larger Mio answer gives a `too_large` result without it. `run` refuses a "
                + "value that does not fit the producer's `message.max.bytes` with 16 KiB to spare"
        )
        /// The declaration of `processing.maxBufferedBytes`.
        public let maxBufferedBytes = Setting<Int>(
            "processing.maxBufferedBytes", default: SettingsCatalog.workerDefaults.maxBufferedBytes,
            parser: .integer(in: 1_048_576...4_294_967_296),
            "bytes of input messages the consumer holds for the engine (1 MiB to 4 GiB); above it, fetching pauses"
        )
        /// The declaration of `processing.maxOutage`.
        public let maxOutage = Setting<Duration>(
            "processing.maxOutage", default: ProcessingEngine.Configuration().maxOutage,
            in: .seconds(1) ... .seconds(86_400),
            "how long no result may reach Kafka (no broker takes any) before the worker stops (1s to 24h); also "
                + "the producer's `message.timeout.ms` unless set"
        )
        /// `processing.retry.*`.
        public let retry = Retry()
        /// `processing.breaker.*`.
        public let breaker = Breaker()
        /// The declaration of `processing.commitInterval`.
        public let commitInterval = Setting<Duration>(
            "processing.commitInterval", default: SettingsCatalog.workerDefaults.commitInterval,
            in: .milliseconds(10) ... .seconds(60),
            "how often librdkafka commits the finished offsets (10ms to 1m); revoked partitions also at once"
        )
        /// The declaration of `processing.shutdownGracePeriod`.
        public let shutdownGracePeriod = Setting<Duration>(
            "processing.shutdownGracePeriod", flags: ["--shutdown-grace-period"],
            default: SettingsCatalog.workerDefaults.shutdownGracePeriod, in: .zero ... .seconds(3600),
            "on SIGTERM/SIGINT, time for in-flight jobs to finish and their offsets to be committed (0 to 1h)"
        )
        /// The declaration of `processing.revocationGracePeriod`.
        public let revocationGracePeriod = Setting<Duration>(
            "processing.revocationGracePeriod", default: SettingsCatalog.workerDefaults.revocationGracePeriod,
            in: .zero ... .seconds(600),
            "on a partition revoke, time for its in-flight jobs to finish (0 to 10m; shortened to fit half the "
                + "group's rebalance window, docs/kafka.md)"
        )
        /// The declaration of `processing.maxRunAhead`.
        public let maxRunAhead = Setting<Int?>(
            "processing.maxRunAhead", default: nil, parser: .runAhead,
            format: { $0.map(String.init) ?? "maxInFlight" }, documentedDefault: "maxInFlight",
            "offsets a partition's work may run past its committable mark before the partition pauses (1 to "
                + "1000000, or `maxInFlight`); bounds what a crash repeats behind one slow job"
        )
        /// The declaration of `processing.maxUncommittedTime`.
        public let maxUncommittedTime = Setting<Duration?>(
            "processing.maxUncommittedTime", default: nil, parser: .uncommittedTime,
            format: { $0.map { $0 == .zero ? "off" : SettingValueParsing.format($0) } ?? "auto" }, documentedDefault: "auto",
            "how long finished jobs may wait for their commit (a rebalance, failing commits) before the worker takes "
                + "no new job until a commit succeeds (10ms to 1h; `auto`: 1.25 × `processing.commitInterval`; `off`: no "
                + "bound); bounds what a crash during a rebalance repeats"
        )
    }

    /// `http.*`: the operations listener.
    public struct HTTP: Sendable {
        /// The declaration of `http.host`.
        public let host = Setting<String>(
            "http.host", default: "0.0.0.0", parser: .nonEmpty,
            "address of the operations listener (`/healthz`, `/readyz`, `/metrics`)"
        )
        /// The declaration of `http.port`.
        public let port = Setting<Int>(
            "http.port", flags: ["--http-port"], default: 8080, parser: .integer(in: 0...65_535),
            "its port (0 to 65535; 0: any free port)"
        )
    }

    /// `oauth.*`: the OAuth connect listener.
    public struct OAuth: Sendable {
        /// The declaration of `oauth.enabled`.
        public let enabled = Setting<Bool>(
            "oauth.enabled", default: false, parser: .boolean, format: { String($0) },
            "serve `/oauth/connect` and `/oauth/callback` on a listener of their own (needs oauth.stateKey)"
        )
        /// The declaration of `oauth.host`.
        public let host = Setting<String>(
            "oauth.host", default: "0.0.0.0", parser: .nonEmpty, "address of the OAuth connect listener"
        )
        /// The declaration of `oauth.port`.
        public let port = Setting<Int>(
            "oauth.port", default: 8081, parser: .integer(in: 0...65_535),
            "its port (0 to 65535; 0: any free port); must differ from http.port"
        )
        /// The declaration of `oauth.stateKey`.
        public let stateKey = Setting<Secret<Data>?>(
            "oauth.stateKey", layers: .environmentOnly, variables: ["MIOCTX_OAUTH_STATE_KEY"], default: nil,
            parser: .stateKey, format: { $0?.description ?? "~" }, secrecy: .secret,
            documentedDefault: "none",
            "base64 of at least 32 random bytes (`openssl rand -base64 32`) signing connect links (the "
                + "application's backend has it too) and the `state` of `/oauth/connect`; every replica shares it; "
                + "never printed"
        )
    }

    /// `log.*`: the process's log lines on standard error.
    public struct Log: Sendable {
        /// The declaration of `log.level`.
        public let level = Setting<Logger.Level>(
            "log.level", flags: ["--log-level"], default: .info, parser: .cases, format: { $0.rawValue },
            "`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`"
        )
        /// The declaration of `log.format`.
        public let format = Setting<LogFormat?>(
            "log.format", flags: ["--log-format"], default: nil,
            parser: .choice([("json", .json), ("text", .text), ("auto", nil)]), format: { $0?.rawValue ?? "auto" },
            "`json`, `text`, or `auto` (json, or text when standard error is a terminal)"
        )
    }

    /// `tracing.*`: export of the spans over OTLP/HTTP (swift-otel), off unless an endpoint is set.
    ///
    /// The OpenTelemetry SDK variables are these settings' variables; swift-otel also reads the other `OTEL_*`
    /// variables of its traces exporter (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_TRACES_SAMPLER`,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, ...) when export is on, and they win over these settings.
    public struct Tracing: Sendable {
        /// The declaration of `tracing.otlpEndpoint`.
        public let otlpEndpoint = Setting<String?>(
            "tracing.otlpEndpoint", variables: ["OTEL_EXPORTER_OTLP_ENDPOINT"], flags: ["--otlp-endpoint"],
            default: nil, parser: SettingParser<String>.httpURL.map { $0 }, format: { $0 ?? "~" },
            documentedDefault: "none (no export)",
            "OTLP/HTTP collector base URL (`http://otel-collector:4318`); spans go to its `/v1/traces`. Unset, and "
                + "without `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, nothing is exported"
        )
        /// The declaration of `tracing.serviceName`.
        public let serviceName = Setting<String>(
            "tracing.serviceName", variables: ["OTEL_SERVICE_NAME"], default: "mioctx", parser: .nonEmpty,
            "`service.name` of the exported spans"
        )
        /// The declaration of `tracing.sampleRatio`.
        public let sampleRatio = Setting<Double>(
            "tracing.sampleRatio", default: 1, parser: .number(in: 0...1), format: SettingParser<Double>.format,
            "share of traces sampled when the input message carries no sampled `traceparent` (0 to 1; a parent's "
                + "decision is followed)"
        )
    }

    /// `process.*`: the process itself.
    public struct Process: Sendable {
        /// The declaration of `process.coreDumps`.
        public let coreDumps = Setting<Bool>(
            "process.coreDumps", default: false, parser: .boolean, format: { String($0) },
            "allow core dumps (they hold tokens and keys in memory: off sets RLIMIT_CORE to 0 at start)"
        )
    }

    /// `kafka.*`.
    public let kafka = Kafka()
    /// `mio.*`.
    public let mio = Mio()
    /// `tokens.*`.
    public let tokens = Tokens()
    /// `processing.*`.
    public let processing = Processing()
    /// `http.*`.
    public let http = HTTP()
    /// `oauth.*`.
    public let oauth = OAuth()
    /// `log.*`.
    public let log = Log()
    /// `tracing.*`.
    public let tracing = Tracing()
    /// `process.*`.
    public let process = Process()

    /// The catalog.
    public init() {}

    /// The worker's own defaults (commit interval, grace periods).
    static let workerDefaults = KafkaWorker.Configuration(
        kafka: KafkaConfiguration(bootstrapServers: ""), groupID: "", inputTopic: "", outputTopic: "",
        deadLetterTopic: ""
    )
}

/// The format of log lines.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    /// One JSON object per line.
    case json
    /// swift-log's text lines.
    case text
}

extension SettingParser where Value == RedactingURL {
    /// `sqlite:PATH` or a PostgreSQL URL.
    static var tokenStore: Self {
        Self { text in
            let text = text.trimmingCharacters(in: .whitespaces)
            let expected = "must be sqlite:PATH or postgres://user:password@host:port/database"
            do {
                _ = try TokenStoreLocation(parsing: text)
                return .success(RedactingURL(text))
            } catch let error as TokenError where text.hasPrefix("postgres") || text.hasPrefix("sqlite:") {
                return .failure(SettingParseFailure(error.detail ?? expected))
            } catch {
                return .failure(SettingParseFailure(expected))
            }
        }
    }
}

extension SettingParser where Value == Secret<String>? {
    /// A key list `kid:base64key,...`; a problem names the entry, never the key.
    static var tokenKeys: Self {
        Self { text in
            do {
                _ = try TokenKeyring(parsing: text)
                return .success(Secret(text))
            } catch let error as TokenError {
                return .failure(SettingParseFailure(error.detail ?? "is not a valid key list"))
            } catch {
                return .failure("is not a valid key list")
            }
        }
    }
}

extension SettingParser where Value == Int? {
    /// A run-ahead cap in offsets, or `maxInFlight` (nil) for the in-flight limit.
    static var runAhead: Self {
        Self { text in
            let text = text.trimmingCharacters(in: .whitespaces)
            if text == "maxInFlight" { return .success(nil) }
            return SettingValueParsing.integer(text, in: 1...1_000_000).map { $0 }
        }
    }
}

extension SettingParser where Value == Duration? {
    /// `auto` (nil: 1.25 times the commit interval), `off` (zero: no bound) or a duration from 10 ms to 1 h.
    static var uncommittedTime: Self {
        Self { text in
            switch text.trimmingCharacters(in: .whitespaces) {
            case "auto": return .success(nil)
            case "off": return .success(.zero)
            case let text:
                return SettingValueParsing.duration(text, in: .milliseconds(10) ... .seconds(3600)).map { $0 }
                    .mapError { _ in SettingParseFailure("must be `auto`, `off` or a duration from 10ms to 1h (such as 2s), got \"\(text)\"") }
            }
        }
    }
}

extension SettingParser where Value == Double? {
    /// A number of requests per second greater than 0, or `unlimited`.
    static var rate: Self {
        Self { text in
            let text = text.trimmingCharacters(in: .whitespaces)
            if text == "unlimited" { return .success(nil) }
            guard let rate = Double(text), rate.isFinite else {
                return .failure("must be a number of requests per second greater than 0, or unlimited")
            }
            guard rate > 0 else { return .failure("must be greater than 0 (leave it unset, or unlimited, for no cap)") }
            guard rate <= 1_000_000 else { return .failure("must be at most 1000000") }
            return .success(rate)
        }
    }
}

extension SettingParser where Value == Secret<Data>? {
    /// Base64 of at least 32 bytes.
    static var stateKey: Self {
        Self { text in
            guard let key = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)), key.count >= 32 else {
                return .failure("must be base64 of at least 32 random bytes (create one with `openssl rand -base64 32`)")
            }
            return .success(Secret(key))
        }
    }
}
