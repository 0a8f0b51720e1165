import ArgumentParser
import KafkaPipeline
import Pipeline
import Foundation
import HTTPEndpoints
import Hummingbird
import Logging
import Mio
import MioTokens
import ServiceLifecycle
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
            """
    )

    @OptionGroup var options: SettingsOptions

    func run() async throws {
        let settings = try await options.loadOrExit().settings
        // Before anything is built: parts capture the metrics factory when they are created.
        let registry = bootstrapObservability(settings: settings)
        let logger = makeLogger(settings: settings.log, label: "mioctx")
        let keyring = try settings.tokens.keyring()
        let location = try TokenStoreLocation(parsing: settings.tokens.store)
        try await location.withStore(keyring: keyring, logger: logger) { store in
            let assembly = try WorkerAssembly(settings: settings, store: store, logger: logger)
            let worker = assembly.worker
            let router = Router()
            HealthEndpoints(checks: [
                ("kafka", { worker.isReady ? nil : "not a member of consumer group '\(settings.kafka.groupID)' yet" }),
                ("token store", {
                    do {
                        _ = try await store.get(userID: "mioctx-readiness-probe")
                        return nil
                    } catch {
                        return "unreachable: \(error)"
                    }
                }),
            ]).addRoutes(to: router)
            MetricsEndpoint(registry: registry).addRoutes(to: router)
            OAuthEndpoints(
                configuration: OAuthEndpoints.Configuration(mio: assembly.mio.configuration),
                store: store,
                exchanger: assembly.mio,
                stateSigner: Self.stateSigner(settings.oauth, logger: logger),
                logger: logger
            ).addRoutes(to: router)
            let http = Application(
                router: router,
                configuration: .init(address: .hostname(settings.http.host, port: settings.http.port)),
                logger: logger
            )
            let group = ServiceGroup(
                configuration: .init(
                    services: [
                        .init(service: http, failureTerminationBehavior: .gracefullyShutdownGroup),
                        .init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            defer { Task { [mio = assembly.mio] in try? await mio.shutdown() } }
            try await group.run()
        }
    }

    /// The signer of `/oauth/connect`'s state: the shared key when one is set, else a key of this process alone.
    static func stateSigner(_ settings: MioctxSettings.OAuthSettings, logger: Logger) -> OAuthStateSigner {
        if let key = settings.stateKey {
            return OAuthStateSigner(key: key)
        }
        let variable = MioctxSettings.OAuthSettings.stateKeyVariable
        logger.notice(
            "OAuth state is signed with a key of this process only: with several replicas behind one address, set \(variable) so that any replica accepts /oauth/callback"
        )
        return .ephemeral()
    }
}
