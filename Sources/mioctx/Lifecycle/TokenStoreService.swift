import Coordination
import Logging
import MioTokens
import ServiceLifecycle
import Settings

/// The token store as the first service of a group: it opens the store, runs a PostgreSQL pool and migrates
/// its table, then tells the parts that use the store that they may start (``ready``); on graceful shutdown,
/// which comes last since it is first in the group, it closes the store.
final class TokenStoreService: Service, Sendable {
    /// The store; usable once ``ready`` is open.
    let store: any TokenStore
    /// Opens when the store can be used; stays shut when it cannot (the service then fails).
    let ready = StartGate()
    #if PostgreSQL
    private let postgres: PostgresTokenStore?
    #endif

    /// Opens the store that `settings` name, with their keys; nothing is started. The key list is taken out of
    /// `settings` (``EffectiveSettings/takeKeyring()``): from here on only the store's keyring holds the keys.
    /// - Throws: `TokenError` for a malformed location or key (loading has checked both).
    init(settings: inout EffectiveSettings, logger: Logger) throws {
        if let exposure = settings.keyFileExposure { logger.warning("\(exposure)") }
        let keyring = try settings.takeKeyring()
        // The store's lock and transaction timeouts follow the Mio client's request timeout.
        let requestTimeout = settings[\.mio.requestTimeout]
        switch try settings.tokenStoreLocation() {
        case .sqlite(let path):
            store = try SQLiteTokenStore(
                path: path, keyring: keyring, configuration: .following(requestTimeout: requestTimeout)
            )
            #if PostgreSQL
            postgres = nil
            #endif
        case .postgres(let url):
            #if PostgreSQL
            let postgres = try PostgresTokenStore(
                url: url, keyring: keyring,
                configuration: .following(
                    requestTimeout: requestTimeout, maximumConnections: settings[\.tokens.postgresPoolSize]
                ),
                logger: logger
            )
            store = postgres
            self.postgres = postgres
            #else
            // The location's parsing refuses `postgres://` in such a build; this is not reached.
            _ = url
            throw TokenStoreLocation.noPostgreSQL
            #endif
        }
    }

    /// Wraps a store opened by its owner (an SQLite store, ready at once).
    init(store: SQLiteTokenStore) {
        self.store = store
        #if PostgreSQL
        self.postgres = nil
        #endif
    }

    func run() async throws {
        #if PostgreSQL
        guard let postgres else {
            ready.open()
            try? await gracefulShutdown()
            return
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The pool stops by itself on graceful shutdown (PostgresClient.run watches for it); this service is
            // the last of the group to be told, once everything that queries the store has stopped.
            group.addTask { await postgres.run() }
            try await postgres.migrate()
            ready.open()
            try await group.waitForAll()
        }
        #else
        // A build without the PostgreSQL trait (the demo's) has only the SQLite store.
        ready.open()
        try? await gracefulShutdown()
        #endif
    }
}

/// A gate that parts wait at until another part is ready (the token store, or the demo's jobs).
struct StartGate: Sendable {
    private let state = WaitableState<Bool, Bool>(false)

    /// Lets every waiter through, now and later.
    func open() {
        state.withLock { isOpen, waiters in
            isOpen = true
            _ = waiters.wakeAll(with: true)
        }
    }

    /// Waits until the gate opens.
    /// - Returns: `true` when it opened; `false` when the task was cancelled or the group shuts down first.
    func wait() async -> Bool {
        await cancelWhenGracefulShutdown {
            await state.wait(cancelled: false) { $0 ? true : nil }
        }
    }
}

/// A service that starts `base` once `gate` opens, and not at all when the group shuts down before.
struct StartsAfter<Base: Service>: Service {
    let gate: StartGate
    let base: Base

    func run() async throws {
        guard await gate.wait() else { return }
        try await base.run()
    }
}
