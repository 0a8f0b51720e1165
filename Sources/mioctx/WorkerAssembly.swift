import KafkaPipeline
import Pipeline
import PipelineMioBridge
import Kafka
import Logging
import Mio
import MioTokens

/// Builds a worker's parts from settings: the Mio client, the token provider, the job handler, the worker.
/// Shared by `mioctx run` and `mioctx demo`, so the demo runs exactly the production pipeline.
struct WorkerAssembly {
    let mio: MioClient
    let tokens: TokenProvider
    let worker: KafkaWorker

    init(settings: MioctxSettings, store: any TokenStore, logger: Logger) throws {
        let (mio, tokens, handler) = Self.makeHandler(settings: settings, store: store, logger: logger)
        let processing = settings.processing
        var configuration = KafkaWorker.Configuration(
            kafka: KafkaConfiguration(bootstrapServers: settings.kafka.bootstrapServers, properties: settings.kafka.properties),
            groupID: settings.kafka.groupID,
            inputTopic: settings.kafka.inputTopic,
            outputTopic: settings.kafka.outputTopic,
            deadLetterTopic: settings.kafka.deadLetterTopic,
            engine: Self.engineConfiguration(processing)
        )
        configuration.commitInterval = processing.commitInterval
        configuration.shutdownGracePeriod = processing.shutdownGracePeriod
        configuration.revocationGracePeriod = processing.revocationGracePeriod
        self.worker = try KafkaWorker(configuration: configuration, handler: handler, logger: logger)
        self.mio = mio
        self.tokens = tokens
    }

    /// The Mio client, the token provider over `store`, and the job handler using both, as `settings` say.
    /// Shared by the Kafka worker and `mioctx enrich`. Shut the client down when done.
    static func makeHandler(
        settings: MioctxSettings,
        store: any TokenStore,
        logger: Logger
    ) -> (mio: MioClient, tokens: TokenProvider, handler: JobHandler) {
        let mio = MioClient(
            configuration: MioClient.Configuration(
                clientID: settings.mio.clientID,
                clientSecret: settings.mio.clientSecret,
                redirectURL: settings.mio.redirectURL,
                apiURL: settings.mio.apiURL,
                dashboardURL: settings.mio.dashboardURL,
                requestTimeout: settings.mio.requestTimeout,
                // One connection per job in flight at most: fewer would queue requests inside the HTTP client,
                // where their timeouts run while they wait.
                maxConnections: max(settings.mio.maxConnections, settings.processing.maxInFlight)
            ),
            logger: logger
        )
        let tokens = TokenProvider(
            store: store,
            refresher: mio,
            configuration: TokenProvider.Configuration(proactiveRefreshThreshold: settings.tokens.proactiveRefreshThreshold),
            logger: logger
        )
        let processing = settings.processing
        let handler = JobHandler(
            api: MioContextAPI(mio),
            tokens: MioTokenSource(tokens),
            configuration: JobHandler.Configuration(
                retry: RetryPolicy(
                    maxAttempts: processing.retry.maxAttempts,
                    maxTimePerJob: processing.retry.maxTimePerJob,
                    initialBackoff: processing.retry.initialBackoff,
                    maxBackoff: processing.retry.maxBackoff
                )
            ),
            rateLimiter: processing.requestsPerSecond.map {
                RateLimiter(permitsPerSecond: $0, burst: max(1, Int($0.rounded(.up))))
            },
            logger: logger
        )
        return (mio, tokens, handler)
    }

    /// The engine's limits from the processing settings.
    static func engineConfiguration(_ processing: MioctxSettings.ProcessingSettings) -> ProcessingEngine.Configuration {
        ProcessingEngine.Configuration(
            scheduling: SchedulingConfiguration(
                maxInFlight: processing.maxInFlight,
                maxInFlightPerUser: processing.maxInFlightPerUser,
                ordering: processing.ordering,
                // Resume reading a little below the limit, not at the first free slot, so the input does
                // not flip between paused and resumed with every finished job.
                readahead: max(16, processing.maxInFlight / 4)
            )
        )
    }
}
