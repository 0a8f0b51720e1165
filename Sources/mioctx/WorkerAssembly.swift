import KafkaPipeline
import Pipeline
import PipelineMioBridge
import Kafka
import Logging
import Mio
import MioTokens
import ServiceLifecycle
import Settings

/// Builds a worker's parts from settings: the Mio client, the token provider, the job handler, the worker.
/// Shared by `mioctx run` and `mioctx demo`, so the demo runs exactly the production pipeline.
struct WorkerAssembly {
    let mio: MioClient
    let tokens: TokenProvider
    let worker: KafkaWorker
    /// Mio's health as the worker's jobs see it: breaker, adaptive limit, a stopped line.
    let health: MioHealth?
    let shutdownGracePeriod: Duration

    init(settings: EffectiveSettings, store: any TokenStore, logger: Logger) throws {
        let (mio, tokens, handler) = try Self.makeHandler(settings: settings, store: store, logger: logger)
        var configuration = KafkaWorker.Configuration(
            kafka: KafkaConfiguration(
                bootstrapServers: settings[\.kafka.bootstrapServers], properties: settings.kafkaProperties
            ),
            groupID: settings[\.kafka.groupID],
            inputTopic: settings[\.kafka.inputTopic],
            outputTopic: settings[\.kafka.outputTopic],
            deadLetterTopic: settings[\.kafka.deadLetterTopic],
            engine: Self.engineConfiguration(settings)
        )
        configuration.commitInterval = settings[\.processing.commitInterval]
        configuration.shutdownGracePeriod = settings[\.processing.shutdownGracePeriod]
        configuration.revocationGracePeriod = settings[\.processing.revocationGracePeriod]
        configuration.maxBufferedBytes = settings[\.processing.maxBufferedBytes]
        try Self.checkResultLimit(settings)
        configuration.maxRunAhead = settings[\.processing.maxRunAhead]
        configuration.maxUncommittedTime = settings[\.processing.maxUncommittedTime]
        self.worker = try KafkaWorker(configuration: configuration, handler: handler, logger: logger)
        self.mio = mio
        self.tokens = tokens
        self.health = handler.health
        self.shutdownGracePeriod = settings[\.processing.shutdownGracePeriod]
    }

    /// The parts in dependency order after the token store, each a service: the Mio client, the token provider,
    /// and the worker, started once `gate` opens (the store is ready; in the demo, the jobs are produced). A group
    /// shuts them down in reverse.
    func services(startingWorkerAfter gate: StartGate) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        [
            .init(service: MioClientService(client: mio)),
            .init(service: TokenProviderService(provider: tokens, gracePeriod: shutdownGracePeriod)),
            .init(
                service: StartsAfter(gate: gate, base: worker),
                successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup
            ),
        ]
    }

    /// The Mio client, the token provider over `store`, and the job handler using both, as `settings` say.
    /// Shared by the Kafka worker and `mioctx enrich`. Shut the client down when done.
    /// - Throws: `MioError` when the client cannot make any request (``makeMioClient(_:logger:)``).
    static func makeHandler(
        settings: EffectiveSettings,
        store: any TokenStore,
        logger: Logger
    ) throws -> (mio: MioClient, tokens: TokenProvider, handler: JobHandler) {
        let mio = try makeMioClient(settings, logger: logger)
        let tokens = tokenProvider(settings: settings, store: store, refresher: mio, logger: logger)
        let handler = JobHandler(
            api: MioContextAPI(mio),
            tokens: MioTokenSource(tokens),
            configuration: JobHandler.Configuration(
                retry: RetryPolicy(
                    maxAttempts: settings[\.processing.retry.maxAttempts],
                    maxTimePerJob: settings[\.processing.retry.maxTimePerJob],
                    initialBackoff: settings[\.processing.retry.initialBackoff],
                    maxBackoff: settings[\.processing.retry.maxBackoff],
                    maxTimeRateLimited: settings[\.processing.retry.maxTimeRateLimited]
                )
            ),
            rateLimiter: settings[\.processing.requestsPerSecond].map {
                RateLimiter(permitsPerSecond: $0, burst: max(1, Int($0.rounded(.up))))
            },
            health: MioHealth(configuration: healthConfiguration(settings), logger: logger),
            logger: logger
        )
        return (mio, tokens, handler)
    }

    /// The token provider over `store`, refreshing through `refresher`, as `settings` say.
    static func tokenProvider(
        settings: EffectiveSettings,
        store: any TokenStore,
        refresher: MioClient,
        logger: Logger
    ) -> TokenProvider {
        TokenProvider(
            store: store,
            refresher: refresher,
            configuration: TokenProvider.Configuration(
                proactiveRefreshThreshold: settings[\.tokens.proactiveRefreshThreshold],
                proactiveRefreshJitter: settings[\.tokens.proactiveRefreshJitter],
                proactiveRefreshesPerSecond: settings[\.tokens.proactiveRefreshesPerSecond],
                revalidationInterval: settings[\.tokens.revalidationInterval],
                storeReadTimeout: settings[\.tokens.storeReadTimeout]
            ),
            logger: logger
        )
    }

    /// A Mio client as `settings` configure it, refused at once when it could make no request (an https
    /// `mio.apiURL` in a build without TLS, such as the demo's): every job would otherwise end in that error.
    /// - Throws: the client's `MioError` (such a client has no connection pool, so nothing to shut down).
    static func makeMioClient(_ settings: EffectiveSettings, logger: Logger) throws -> MioClient {
        let mio = MioClient(configuration: mioConfiguration(settings), logger: logger)
        if let error = mio.configurationError { throw error }
        return mio
    }

    /// The Mio client's configuration (credentials may be empty for commands that do not call Mio's OAuth).
    static func mioConfiguration(_ settings: EffectiveSettings) -> MioClient.Configuration {
        MioClient.Configuration(
            clientID: settings[\.mio.clientID],
            clientSecret: settings[\.mio.clientSecret].revealedValue,
            redirectURL: settings[\.mio.redirectURL],
            apiURL: settings[\.mio.apiURL],
            dashboardURL: settings[\.mio.dashboardURL],
            requestTimeout: settings[\.mio.requestTimeout],
            // One connection per job in flight at most: fewer would queue requests inside the HTTP client,
            // where their timeouts run while they wait.
            maxConnections: max(settings[\.mio.maxConnections], settings[\.processing.maxInFlight])
        )
    }

    /// Room left in a Kafka message besides the result: the key (a user id), the headers (job id, trace
    /// context) and the record's framing.
    static let resultEnvelopeBytes = 16 * 1024

    /// librdkafka's default `message.max.bytes`.
    static let defaultMessageMaxBytes = 1_000_000

    /// Refuses a result limit that the producer's `message.max.bytes` (the passthrough value, else librdkafka's
    /// default) cannot carry with ``resultEnvelopeBytes`` to spare: every result at the limit would be refused.
    static func checkResultLimit(_ settings: EffectiveSettings) throws {
        let limit = settings[\.processing.maxResultBytes]
        let given = settings.kafkaProperties["message.max.bytes"]
        let messageMaxBytes = given.flatMap { Int($0.filter { $0 != " " }) } ?? defaultMessageMaxBytes
        guard limit + resultEnvelopeBytes > messageMaxBytes else { return }
        let source = given == nil ? "librdkafka's default" : "kafka.properties"
        throw ResultLimitError(
            message: "processing.maxResultBytes (\(limit)) does not fit Kafka's message.max.bytes (\(messageMaxBytes), "
                + "\(source)) with \(resultEnvelopeBytes) bytes for the key, headers and framing: lower "
                + "processing.maxResultBytes to at most \(messageMaxBytes - resultEnvelopeBytes), or raise "
                + "kafka.properties message.max.bytes (and the output topic's max.message.bytes)"
        )
    }

    /// The breaker's and the adaptive limit's settings.
    static func healthConfiguration(_ settings: EffectiveSettings) -> MioHealth.Configuration {
        MioHealth.Configuration(
            window: settings[\.processing.breaker.window],
            failureThreshold: settings[\.processing.breaker.failureThreshold],
            failureRatio: settings[\.processing.breaker.failureRatio],
            probeInterval: settings[\.processing.breaker.probeInterval],
            maxProbeInterval: settings[\.processing.breaker.maxProbeInterval],
            haltProbeInterval: settings[\.processing.breaker.haltProbeInterval],
            adaptiveConcurrency: settings[\.processing.breaker.adaptiveConcurrency],
            maxConcurrency: settings[\.processing.maxInFlight],
            // Slow start: a fresh worker reaches 256 in flight within 4 round trips, instead of sending them all at
            // once into a quota that may allow far fewer (each one over it a 429).
            initialConcurrency: min(settings[\.processing.breaker.initialConcurrency],
                                    settings[\.processing.maxInFlight]),
            rateDecrease: settings[\.processing.breaker.rateDecrease],
            rateIncrease: settings[\.processing.breaker.rateIncrease],
            maxRateIncrease: settings[\.processing.breaker.maxRateIncrease]
        )
    }

    /// The engine's limits from the processing settings.
    static func engineConfiguration(_ settings: EffectiveSettings) -> ProcessingEngine.Configuration {
        let maxInFlight = settings[\.processing.maxInFlight]
        return ProcessingEngine.Configuration(
            scheduling: SchedulingConfiguration(
                maxInFlight: maxInFlight,
                maxInFlightPerUser: settings[\.processing.maxInFlightPerUser],
                ordering: settings[\.processing.ordering],
                // Resume reading a little below the limit, not at the first free slot, so the input does
                // not flip between paused and resumed with every finished job.
                readahead: max(16, maxInFlight / 4)
            ),
            maxResultBytes: settings[\.processing.maxResultBytes],
            maxOutage: settings[\.processing.maxOutage]
        )
    }
}

/// `processing.maxResultBytes` cannot fit the producer's `message.max.bytes`.
struct ResultLimitError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
