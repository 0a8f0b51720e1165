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
    let shutdownGracePeriod: Duration

    init(settings: EffectiveSettings, store: any TokenStore, logger: Logger) throws {
        let (mio, tokens, handler) = Self.makeHandler(settings: settings, store: store, logger: logger)
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
        self.worker = try KafkaWorker(configuration: configuration, handler: handler, logger: logger)
        self.mio = mio
        self.tokens = tokens
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
    static func makeHandler(
        settings: EffectiveSettings,
        store: any TokenStore,
        logger: Logger
    ) -> (mio: MioClient, tokens: TokenProvider, handler: JobHandler) {
        let mio = MioClient(configuration: mioConfiguration(settings), logger: logger)
        let tokens = tokenProvider(settings: settings, store: store, refresher: mio, logger: logger)
        let handler = JobHandler(
            api: MioContextAPI(mio),
            tokens: MioTokenSource(tokens),
            configuration: JobHandler.Configuration(
                retry: RetryPolicy(
                    maxAttempts: settings[\.processing.retry.maxAttempts],
                    maxTimePerJob: settings[\.processing.retry.maxTimePerJob],
                    initialBackoff: settings[\.processing.retry.initialBackoff],
                    maxBackoff: settings[\.processing.retry.maxBackoff]
                )
            ),
            rateLimiter: settings[\.processing.requestsPerSecond].map {
                RateLimiter(permitsPerSecond: $0, burst: max(1, Int($0.rounded(.up))))
            },
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

    /// The Mio client's configuration (credentials may be empty for commands that do not call Mio's OAuth).
    static func mioConfiguration(_ settings: EffectiveSettings) -> MioClient.Configuration {
        MioClient.Configuration(
            clientID: settings[\.mio.clientID],
            clientSecret: settings[\.mio.clientSecret],
            redirectURL: settings[\.mio.redirectURL],
            apiURL: settings[\.mio.apiURL],
            dashboardURL: settings[\.mio.dashboardURL],
            requestTimeout: settings[\.mio.requestTimeout],
            // One connection per job in flight at most: fewer would queue requests inside the HTTP client,
            // where their timeouts run while they wait.
            maxConnections: max(settings[\.mio.maxConnections], settings[\.processing.maxInFlight])
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
            )
        )
    }
}
