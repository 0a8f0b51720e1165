import ArgumentParser
import KafkaPipeline
import Pipeline
import Foundation
import HTTPEndpoints
import Hummingbird
import Logging
import Mio
import MioTokens
import Prometheus
import ServiceLifecycle
import Settings
import UnixSignals

/// `mioctx run`: one worker, a member of the consumer group.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one worker of the consumer group until SIGTERM or SIGINT.",
        discussion: """
            Start as many as you like: they share the input topic's partitions. Configuration: a YAML file \
            (--config), environment variables over it, flags over both (see `mioctx config check` and \
            docs/configuration.md). An invalid setting stops it before it connects, naming the setting. It \
            exits 0 after a graceful shutdown, non-zero when a result could not be delivered.


            """ + SettingsReference.flagsHelp
    )

    func run() async throws {
        var settings = try await CommandSettings.load(requiring: .worker)
        do {
            try WorkerAssembly.checkResultLimit(settings)
        } catch {
            // Before anything connects, like an invalid setting: every result at the limit would be refused.
            FileHandle.standardError.write(Data("invalid configuration (1 problem):\n  \(error)\n".utf8))
            throw CommandSettings.invalidConfigurationExitCode
        }
        // Before anything is built: parts capture the metrics factory when they are created.
        let registry = bootstrapObservability(log: LogSetup(settings))
        let logger = LogSetup(settings).makeLogger(label: "mioctx")
        // Also before anything is built: the worker and the Mio client capture `InstrumentationSystem.tracer`.
        let tracing = try TracingExport(settings).bootstrap(logger: logger)
        // One group in dependency order: token store, Mio client, token provider, worker, HTTP server. It shuts
        // them down in reverse, each awaited: the listener closes, the worker drains and commits, refreshes in
        // flight finish, the client closes its connections, the store its pool.
        // The keys go into the store's keyring here; the settings kept from here on no longer hold them.
        let storeService = try TokenStoreService(settings: &settings, logger: logger)
        let assembly = try WorkerAssembly(settings: settings, store: storeService.store, logger: logger)
        let http = Self.operationsServer(settings: settings, assembly: assembly, store: storeService.store,
                                         registry: registry, logger: logger)
        // Each listener starts once the store is ready; one that fails (a port in use) stops the whole group.
        func listener(_ base: some Service) -> ServiceGroupConfiguration.ServiceConfiguration {
            .init(service: StartsAfter(gate: storeService.ready, base: base), failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        var listeners = [listener(http)]
        if let oauth = try Self.oauthServer(settings: settings, assembly: assembly, store: storeService.store, logger: logger) {
            listeners.append(listener(oauth))
        }
        // The span exporter first: it stops last, after the worker drained, and flushes the last spans.
        let exporter = tracing.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0)] } ?? []
        let group = ServiceGroup(
            configuration: .init(
                services: exporter + [.init(service: storeService)]
                    + assembly.services(startingWorkerAfter: storeService.ready) + listeners,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    /// The operations listener: health and readiness, metrics. Nothing of the OAuth flow is served here.
    static func operationsServer(
        settings: EffectiveSettings,
        assembly: WorkerAssembly,
        store: any TokenStore,
        registry: PrometheusCollectorRegistry,
        logger: Logger
    ) -> some Service {
        let worker = assembly.worker
        let groupID = settings[\.kafka.groupID]
        let router = Router()
        let health = assembly.health
        HealthEndpoints(checks: [
            // A stopped line fails readiness, so that a rolling deploy with a wrong secret or key halts at its
            // first pod; an open breaker does not (a paused worker must not be restarted).
            ("mio", { health?.readinessFailure }),
            ("kafka", { worker.isReady ? nil : "not a member of consumer group '\(groupID)' yet" }),
            ("token store", { await assembly.tokens.storeProblem() }),
        ], details: [
            ("mio", { health?.summary ?? "no breaker" }),
        ], logger: logger).addRoutes(to: router)
        MetricsEndpoint(registry: registry).addRoutes(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings[\.http.host], port: settings[\.http.port])),
            logger: logger
        )
    }

    /// The OAuth connect listener (`/oauth/connect` and its callback) when `oauth.enabled`, else nil.
    static func oauthServer(
        settings: EffectiveSettings,
        assembly: WorkerAssembly,
        store: any TokenStore,
        logger: Logger
    ) throws -> (any Service)? {
        guard settings[\.oauth.enabled] else { return nil }
        guard let key = settings[\.oauth.stateKey] else {
            throw ValidationError("oauth.enabled needs oauth.stateKey (MIOCTX_OAUTH_STATE_KEY)")
        }
        guard let ledger = store as? any OAuthStateLedger else {
            throw ValidationError("the token store cannot record used OAuth states")
        }
        let router = Router()
        OAuthEndpoints(
            configuration: OAuthEndpoints.Configuration(mio: assembly.mio.configuration),
            store: store,
            ledger: ledger,
            exchanger: assembly.mio,
            stateSigner: OAuthStateSigner(key: key.revealedValue),
            logger: logger
        ).addRoutes(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings[\.oauth.host], port: settings[\.oauth.port])),
            logger: logger
        )
    }
}
