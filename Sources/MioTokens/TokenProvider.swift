public import Coordination
public import CoreMetrics
import Foundation
public import Logging
import Mio
import Synchronization

/// What the pipeline calls for every job: a valid access token for a user, and a new one after Mio answered 401.
///
/// Refresh coordination, so that a rotated refresh token is never spent twice:
/// - in the process, at most one refresh per user at a time: concurrent callers await the refresh in flight;
/// - across replicas, the refresh runs under the store's per-user row lock
///   (``TokenStore/withExclusiveLock(userID:_:)``): the row is re-read inside the lock and, when another replica
///   already replaced the rejected token (or, for a proactive refresh, the stored token is fresh), its token is
///   used and Mio is not called; otherwise Mio is called and the new pair is stored before the lock is released.
///
/// `invalid_grant` from Mio marks the user reauth_required in the store; such a user then fails fast with
/// ``TokenError/Code/reauthRequired`` without calling Mio. Tokens never appear in logs or errors.
///
/// At shutdown, call ``finishRefreshes()`` before the store and the Mio client close: it waits for the refreshes
/// (and store reads) in flight, so that a rotated refresh token Mio already handed out is stored, not lost.
///
/// Its settings and counters (``Configuration``, ``Statistics``) are in `TokenProvider+Configuration.swift`.
public final class TokenProvider: Sendable {
    private struct CachedToken: Sendable {
        var accessToken: String
        var expiresAt: Date
        var issuedAt: Date
    }

    private enum Trigger: Sendable {
        case proactive
        case unauthorized(rejected: String)
    }

    /// What happened under the lock; errors are thrown after the lock is released.
    private enum Outcome: Sendable {
        case refreshed(CachedToken)
        case avoided(CachedToken)
        case noTokens
        case inactive(TokenStatus)
        case invalidGrant(any Error & Sendable)
        case failed(any Error & Sendable, retriable: Bool)
    }

    private struct State: Sendable {
        var cache: [String: CachedToken] = [:]
        var inFlight: [String: Task<String, any Error>] = [:]
        var reads: [String: Task<TokenRecord?, any Error>] = [:]
        var statistics = Statistics()
        /// Set by ``finishRefreshes()``: no new refresh or store read starts.
        var isFinishing = false

        /// Whether nothing the provider started is still running.
        var isIdle: Bool { inFlight.isEmpty && reads.isEmpty }
    }

    private let store: any TokenStore
    private let refresher: any TokenRefreshing
    private let configuration: Configuration
    private let timeSource: TimeSource
    private let logger: Logger
    private let metrics: TokenMetrics
    /// Everything mutable, under one lock; ``finishRefreshes()`` waits on it until no refresh or read runs.
    private let state = WaitableState<State, Void>(State())

    /// Creates a provider.
    /// - Parameters:
    ///   - store: Where the tokens live.
    ///   - refresher: Mio (a `MioClient`) or a test double.
    ///   - configuration: Thresholds and cache size.
    ///   - timeSource: The wall clock for expiry decisions and stored timestamps (default: the system's).
    ///   - logger: Never receives a token.
    ///   - metricsFactory: Receives `mioctx_token_refreshes_total{outcome}`, `mioctx_token_refreshes_avoided_total`
    ///     and `mioctx_token_refreshes_joined_total` (default: the bootstrapped `MetricsSystem.factory`).
    public init(
        store: any TokenStore,
        refresher: any TokenRefreshing,
        configuration: Configuration = .init(),
        timeSource: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.tokens"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.metrics = TokenMetrics(factory: metricsFactory)
        self.store = store
        self.refresher = refresher
        self.configuration = configuration
        self.timeSource = timeSource
        self.logger = logger
    }

    /// The counters so far.
    public var statistics: Statistics { state.withLock { state, _ in state.statistics } }

    /// A valid access token for the user: from the in-memory cache, else the store. When less than
    /// ``Configuration/proactiveRefreshThreshold`` of its lifetime is left, it is refreshed first (if that refresh
    /// fails for a retriable reason while the token is still valid, the current token is returned).
    /// - Parameter userID: The user.
    /// - Returns: The access token to send to Mio.
    /// - Throws: ``TokenError`` `noTokens`, `reauthRequired`, `refreshFailed`, `storeFailure`, `lockTimeout`, and
    ///   `shuttingDown` for a token not in the cache after ``finishRefreshes()``.
    public func accessToken(for userID: String) async throws -> String {
        let now = timeSource.wallNow()
        let cached: String? = state.withLock { state, _ in
            guard let entry = state.cache[userID], !needsRefresh(entry, now: now) else { return nil }
            state.statistics.cacheHits += 1
            return entry.accessToken
        }
        if let cached { return cached }

        guard let record = try await coalescedRead(userID: userID) else {
            forget(userID)
            throw TokenError(.noTokens, userID: userID, detail: "no tokens stored for this user", isRetriable: false)
        }
        try requireActive(record.status, userID: userID)
        let entry = CachedToken(accessToken: record.accessToken, expiresAt: record.expiresAt, issuedAt: record.issuedAt)
        guard needsRefresh(entry, now: now) else {
            remember(userID, entry)
            return record.accessToken
        }
        do {
            return try await coalescedRefresh(userID: userID, trigger: .proactive)
        } catch let error as TokenError where error.isRetriable && record.expiresAt > now {
            logger.warning(
                "proactive token refresh failed; using the current token until it expires",
                metadata: ["user": "\(userID)", "error": "\(error)"]
            )
            return record.accessToken
        }
    }

    /// After Mio answered 401 for `rejected`, a new access token for the user.
    ///
    /// At most one refresh per user runs at a time in the process (others await it). Across replicas the refresh
    /// runs under the user's row lock; if the stored access token is no longer `rejected`, another replica already
    /// refreshed and its token is returned without calling Mio. Otherwise Mio is called and the new pair stored
    /// before the lock is released.
    /// - Parameters:
    ///   - userID: The user.
    ///   - rejected: The access token Mio answered 401 for.
    /// - Returns: An access token other than `rejected`.
    /// - Throws: ``TokenError`` `noTokens`, `reauthRequired` (after `invalid_grant`, persisted), `refreshFailed`
    ///   (see `underlying`, often a retriable `MioError`), `storeFailure`, `lockTimeout`, and `shuttingDown` when a
    ///   refresh would start after ``finishRefreshes()``.
    public func refreshAfterUnauthorized(userID: String, rejected: String) async throws -> String {
        let now = timeSource.wallNow()
        let cached: String? = state.withLock { state, _ in
            guard let entry = state.cache[userID], entry.accessToken != rejected, entry.expiresAt > now,
                state.inFlight[userID] == nil
            else { return nil }
            state.statistics.refreshesAvoided += 1
            return entry.accessToken
        }
        if let cached {
            metrics.refreshAvoided()
            return cached
        }
        let token = try await coalescedRefresh(userID: userID, trigger: .unauthorized(rejected: rejected))
        if token == rejected {
            // We joined a refresh started for an older token, which handed back the one we hold: refresh ours.
            return try await coalescedRefresh(userID: userID, trigger: .unauthorized(rejected: rejected))
        }
        return token
    }

    /// Drops the user's token from the in-memory cache (e.g. after reconnecting the user elsewhere).
    /// - Parameter userID: The user.
    public func forget(_ userID: String) {
        state.withLock { state, _ in _ = state.cache.removeValue(forKey: userID) }
    }

    /// Stops starting refreshes and store reads, and waits until those in flight have ended (their new tokens
    /// stored), so that the store and the Mio client can then close without cutting a refresh between Mio's
    /// answer and the store write (which would lose the rotated refresh token).
    ///
    /// Afterwards tokens in the in-memory cache are still served; a call that would refresh or read the store
    /// fails with ``TokenError/Code/shuttingDown`` (retriable: another replica or the next start serves the job).
    /// Calling it again, or from several tasks, waits the same way. It returns early if the calling task is
    /// cancelled.
    public func finishRefreshes() async {
        await state.wait(cancelled: ()) { state in
            state.isFinishing = true
            return state.isIdle ? () : nil
        }
    }

    // MARK: - Refresh

    /// The user's stored tokens: one read of the store per user at a time, which concurrent callers share.
    private func coalescedRead(userID: String) async throws -> TokenRecord? {
        let task: Task<TokenRecord?, any Error>? = state.withLock { state, _ in
            if let running = state.reads[userID] {
                state.statistics.storeReadsJoined += 1
                return running
            }
            guard !state.isFinishing else { return nil }
            let task = Task {
                defer { self.ended { _ = $0.reads.removeValue(forKey: userID) } }
                return try await self.store.get(userID: userID)
            }
            state.reads[userID] = task
            return task
        }
        guard let task else { throw Self.shuttingDown(userID: userID) }
        return try await task.value
    }

    private func coalescedRefresh(userID: String, trigger: Trigger) async throws -> String {
        let task: Task<String, any Error>? = state.withLock { state, _ in
            if let running = state.inFlight[userID] {
                state.statistics.refreshesJoined += 1
                metrics.refreshJoined()
                return running
            }
            guard !state.isFinishing else { return nil }
            // Unstructured on purpose: a caller's cancellation must not abandon a refresh between Mio's answer
            // and the store write, or the rotated refresh token would be lost. `finishRefreshes()` awaits it.
            let task = Task {
                defer { self.ended { _ = $0.inFlight.removeValue(forKey: userID) } }
                return try await self.refreshUnderLock(userID: userID, trigger: trigger)
            }
            state.inFlight[userID] = task
            return task
        }
        guard let task else { throw Self.shuttingDown(userID: userID) }
        return try await task.value
    }

    /// Removes a refresh or read that ended and, once nothing runs after ``finishRefreshes()``, wakes it.
    private func ended(_ remove: (inout State) -> Void) {
        state.withLock { state, waiters in
            remove(&state)
            if state.isFinishing, state.isIdle {
                waiters.wakeAll(with: ())
            }
        }
    }

    private static func shuttingDown(userID: String) -> TokenError {
        TokenError(
            .shuttingDown, userID: userID, detail: "the token provider is shutting down: no new refresh or store read",
            isRetriable: true
        )
    }

    private func refreshUnderLock(userID: String, trigger: Trigger) async throws -> String {
        let received = Mutex<TokenGrant?>(nil)
        let outcome: Outcome
        do {
            outcome = try await store.withExclusiveLock(userID: userID) { record -> LockedUpdate<Outcome> in
                guard let record else { return .keep(.noTokens) }
                guard record.status == .active else { return .keep(.inactive(record.status)) }
                let current = CachedToken(
                    accessToken: record.accessToken, expiresAt: record.expiresAt, issuedAt: record.issuedAt
                )
                switch trigger {
                case .unauthorized(let rejected) where record.accessToken != rejected:
                    return .keep(.avoided(current))
                case .proactive where !self.needsRefresh(current, now: self.timeSource.wallNow()):
                    return .keep(.avoided(current))
                default:
                    break
                }
                do {
                    let response = try await self.refresher.refreshTokens(refreshToken: record.refreshToken)
                    let grant = TokenGrant(response: response, receivedAt: self.timeSource.wallNow())
                    received.withLock { $0 = grant }
                    let entry = CachedToken(
                        accessToken: grant.accessToken, expiresAt: grant.expiresAt, issuedAt: grant.issuedAt
                    )
                    return .store(grant, returning: .refreshed(entry))
                } catch let error as MioError where error.code == .invalidGrant {
                    return .setStatus(.reauthRequired, returning: .invalidGrant(error))
                } catch let error as MioError {
                    return .keep(.failed(error, retriable: error.isRetriable))
                } catch {
                    return .keep(.failed(DescribedError(error), retriable: true))
                }
            }
        } catch let error as TokenError {
            if let grant = received.withLock({ $0 }) {
                // Mio rotated the tokens but the store did not take them: serve the new access token from memory;
                // the stored refresh token is spent, so this user will likely need to reconnect.
                logger.error(
                    "token refresh succeeded at Mio but storing the new tokens failed",
                    metadata: ["user": "\(userID)", "error": "\(error)"]
                )
                state.withLock { state, _ in state.statistics.refreshesPerformed += 1 }
                metrics.refreshed(.performed)
                remember(userID, CachedToken(accessToken: grant.accessToken, expiresAt: grant.expiresAt, issuedAt: grant.issuedAt))
                return grant.accessToken
            }
            throw error
        } catch {
            throw TokenError(.storeFailure, userID: userID, underlying: DescribedError(error))
        }

        switch outcome {
        case .refreshed(let entry):
            state.withLock { state, _ in state.statistics.refreshesPerformed += 1 }
            metrics.refreshed(.performed)
            remember(userID, entry)
            logger.debug("refreshed the user's tokens", metadata: ["user": "\(userID)"])
            return entry.accessToken
        case .avoided(let entry):
            state.withLock { state, _ in state.statistics.refreshesAvoided += 1 }
            metrics.refreshAvoided()
            remember(userID, entry)
            logger.debug("token already refreshed elsewhere; not calling Mio", metadata: ["user": "\(userID)"])
            return entry.accessToken
        case .noTokens:
            forget(userID)
            throw TokenError(.noTokens, userID: userID, detail: "no tokens stored for this user", isRetriable: false)
        case .inactive(let status):
            forget(userID)
            try requireActive(status, userID: userID)
            throw TokenError(.reauthRequired, userID: userID, isRetriable: false)
        case .invalidGrant(let error):
            forget(userID)
            state.withLock { state, _ in
                state.statistics.refreshFailures += 1
                state.statistics.usersMarkedReauthRequired += 1
            }
            metrics.refreshed(.reauthRequired)
            logger.info("Mio refused the refresh token; user marked reauth_required", metadata: ["user": "\(userID)"])
            throw TokenError(
                .reauthRequired, userID: userID, detail: "Mio answered invalid_grant to the refresh",
                underlying: error, isRetriable: false
            )
        case .failed(let error, let retriable):
            state.withLock { state, _ in state.statistics.refreshFailures += 1 }
            metrics.refreshed(.failed)
            throw TokenError(
                .refreshFailed, userID: userID, detail: "the refresh call to Mio failed", underlying: error,
                isRetriable: retriable
            )
        }
    }

    // MARK: - Helpers

    private func needsRefresh(_ entry: CachedToken, now: Date) -> Bool {
        let lifetime = max(0, entry.expiresAt.timeIntervalSince(entry.issuedAt))
        let remaining = entry.expiresAt.timeIntervalSince(now)
        return remaining <= 0 || remaining < configuration.proactiveRefreshThreshold * lifetime
    }

    private func requireActive(_ status: TokenStatus, userID: String) throws {
        switch status {
        case .active:
            return
        case .reauthRequired:
            throw TokenError(
                .reauthRequired, userID: userID, detail: "the user must reconnect (marked reauth_required)",
                isRetriable: false
            )
        case .revoked:
            throw TokenError(
                .reauthRequired, userID: userID, detail: "the user's tokens were revoked; the user must reconnect",
                isRetriable: false
            )
        }
    }

    private func remember(_ userID: String, _ entry: CachedToken) {
        state.withLock { state, _ in
            if state.cache[userID] == nil, state.cache.count >= configuration.cacheCapacity,
                let victim = state.cache.keys.first
            {
                state.cache.removeValue(forKey: victim)
            }
            state.cache[userID] = entry
        }
    }
}
