public import Coordination
public import CoreMetrics
public import Foundation
public import Logging
import Mio
import Synchronization

/// What the pipeline calls for every job: a valid access token for a user, and a new one after Mio answered 401.
///
/// Refresh coordination, so that a rotated refresh token is never spent twice:
/// - in the process, at most one refresh per user at a time: concurrent callers await the refresh in flight;
/// - across replicas, the refresh runs under the store's per-user lock (a lease on the user's row, in both stores)
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
        /// When the store was last seen to hold this token (or it was received from Mio): after
        /// ``Configuration/revalidationInterval`` the store is read again, so that a revocation or a reconnection
        /// made elsewhere takes effect.
        var checkedAt: Date

        init(accessToken: String, expiresAt: Date, issuedAt: Date, checkedAt: Date) {
            self.accessToken = accessToken
            self.expiresAt = expiresAt
            self.issuedAt = issuedAt
            self.checkedAt = checkedAt
        }

        init(_ record: TokenRecord, checkedAt: Date) {
            self.init(
                accessToken: record.accessToken, expiresAt: record.expiresAt, issuedAt: record.issuedAt,
                checkedAt: checkedAt
            )
        }

        init(_ grant: TokenGrant, checkedAt: Date) {
            self.init(
                accessToken: grant.accessToken, expiresAt: grant.expiresAt, issuedAt: grant.issuedAt,
                checkedAt: checkedAt
            )
        }
    }

    /// A grant Mio handed out that the store does not hold yet: it is the only copy of the user's live refresh
    /// token, so it is kept here and written by a background persister until the store takes it.
    private struct UnsavedGrant: Sendable {
        var grant: TokenGrant
        /// The version of the row whose refresh token was spent for it: the write applies only while the row is
        /// still at that version (or marked reauth_required by a replica that spent the stale token).
        var basedOn: Int64
        /// When Mio answered.
        var since: Date
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
        /// `invalid_grant` to a refresh token that an earlier refresh with an unknown outcome had sent.
        case invalidGrantAfterLostAnswer(any Error & Sendable)
        /// The refresh was sent but its outcome is unknown (no answer, a cut connection, an unreadable answer).
        case uncertain(any Error & Sendable)
        case failed(any Error & Sendable, retriable: Bool)
    }

    private struct State: Sendable {
        var cache: [String: CachedToken] = [:]
        var inFlight: [String: Task<String, any Error>] = [:]
        var reads: [String: Task<TokenRecord?, any Error>] = [:]
        /// Grants received from Mio that the store has not taken yet, by user.
        var unsaved: [String: UnsavedGrant] = [:]
        /// The background writers of ``unsaved`` grants, one per user.
        var persisters: [String: Task<Void, Never>] = [:]
        /// Users whose last refresh was sent without a known outcome, with when: the next refresh sends the same
        /// refresh token once more, and an `invalid_grant` to it is reported as a lost answer.
        var uncertain: [String: Date] = [:]
        /// Proactive refreshes allowed now (a token bucket refilled at ``Configuration/proactiveRefreshesPerSecond``).
        var proactiveBudget: Double = 0
        var proactiveBudgetUpdatedAt: Duration?
        var statistics = Statistics()
        /// Set by ``finishRefreshes()``: no new refresh or store read starts.
        var isFinishing = false

        /// Whether nothing the provider started is still running.
        var isIdle: Bool { inFlight.isEmpty && reads.isEmpty && persisters.isEmpty }
    }

    private let store: any TokenStore
    private let refresher: any TokenRefreshing
    private let configuration: Configuration
    private let timeSource: TimeSource
    private let logger: Logger
    private let metrics: TokenMetrics
    /// Everything mutable, under one lock; ``finishRefreshes()`` waits on it until no refresh or read runs.
    private let state = WaitableState<State, Void>(State())

    /// What the provider has under way, for the diagnostics of a stall: refreshes and store reads in flight (with
    /// a few of their users), grants waiting to be saved. Names users only, never a token.
    package var diagnostics: String {
        state.withLock { state, _ in
            let refreshing = state.inFlight.keys.sorted().prefix(5).joined(separator: ", ")
            let reading = state.reads.keys.sorted().prefix(5).joined(separator: ", ")
            return "refreshes in flight \(state.inFlight.count) [\(refreshing)], store reads in flight \(state.reads.count) "
                + "[\(reading)], unsaved grants \(state.unsaved.count), persisters \(state.persisters.count)"
        }
    }

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

    /// Grants received from Mio that the store has not taken yet: their number, and when the oldest arrived
    /// (readiness reports a grant that stays unsaved).
    public var unsavedGrants: (count: Int, oldest: Date?) {
        state.withLock { state, _ in (state.unsaved.count, state.unsaved.values.map(\.since).min()) }
    }

    /// A valid access token for the user: from the in-memory cache, else the store. When less than
    /// ``Configuration/proactiveRefreshThreshold`` of its lifetime is left, it is refreshed first (if that refresh
    /// fails for a retriable reason while the token is still valid, the current token is returned).
    ///
    /// A cached token older than ``Configuration/revalidationInterval`` is checked against the store again, so
    /// that a revocation or a reconnection made by another process takes effect within that interval.
    /// - Parameter userID: The user.
    /// - Returns: The access token to send to Mio.
    /// - Throws: ``TokenError`` `noTokens`, `reauthRequired`, `refreshAnswerLost`, `refreshFailed`, `storeFailure`,
    ///   `lockTimeout`, and `shuttingDown` for a token not in the cache after ``finishRefreshes()``.
    public func accessToken(for userID: String) async throws -> String {
        let now = timeSource.wallNow()
        let cached: String? = state.withLock { state, _ in
            guard let entry = state.cache[userID], !needsRefresh(entry, userID: userID, now: now),
                now.timeIntervalSince(entry.checkedAt) < configuration.revalidationInterval.timeInterval
                    || state.unsaved[userID] != nil || state.isFinishing
            else { return nil }
            state.statistics.cacheHits += 1
            return entry.accessToken
        }
        if let cached { return cached }

        guard let record = try await coalescedRead(userID: userID) else {
            forget(userID)
            throw TokenError(.noTokens, userID: userID, detail: "no tokens stored for this user", isRetriable: false)
        }
        let entry: CachedToken
        if let pending = pendingGrant(userID: userID, record: record) {
            entry = CachedToken(pending.grant, checkedAt: now)
        } else {
            do {
                try requireActive(record.status, userID: userID)
            } catch {
                forget(userID)
                throw error
            }
            entry = CachedToken(record, checkedAt: now)
        }
        guard needsRefresh(entry, userID: userID, now: now) else {
            remember(userID, entry)
            return entry.accessToken
        }
        if entry.expiresAt > now, !takeProactiveBudget() {
            // Over the refresh budget: the token is still valid, so use it and refresh on a later job.
            remember(userID, entry)
            return entry.accessToken
        }
        do {
            return try await coalescedRefresh(userID: userID, trigger: .proactive)
        } catch let error as TokenError where error.isRetriable && entry.expiresAt > now {
            logger.warning(
                "proactive token refresh failed; using the current token until it expires",
                metadata: ["user": "\(userID)", "error": "\(error)"]
            )
            return entry.accessToken
        }
    }

    /// After Mio answered 401 for `rejected`, a new access token for the user.
    ///
    /// At most one refresh per user runs at a time in the process (others await it). Across replicas the refresh
    /// runs under the user's lock; if the stored access token is no longer `rejected`, another replica already
    /// refreshed and its token is returned without calling Mio. Otherwise Mio is called and the new pair stored
    /// before the lock is released.
    /// - Parameters:
    ///   - userID: The user.
    ///   - rejected: The access token Mio answered 401 for.
    /// - Returns: An access token other than `rejected`.
    /// - Throws: ``TokenError`` `noTokens`, `reauthRequired` (after `invalid_grant`, persisted), `refreshAnswerLost`
    ///   (`invalid_grant` after a refresh whose answer was lost, persisted as reauth_required), `refreshFailed`
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

    /// Whether the store answers a read within ``Configuration/storeReadTimeout``: nil when it does, else what
    /// went wrong (for the readiness probe). Grants that stay unsaved for longer than the timeout are reported too.
    /// - Returns: nil, or a message without secrets.
    public func storeProblem() async -> String? {
        do {
            _ = try await timedRead(userID: "mioctx-readiness-probe")
        } catch {
            return "\(error)"
        }
        let (count, oldest) = unsavedGrants
        if let oldest, count > 0,
            timeSource.wallNow().timeIntervalSince(oldest) > configuration.storeReadTimeout.timeInterval
        {
            return "\(count) refreshed grant(s) from Mio not yet saved to the token store (kept in memory, retrying)"
        }
        return nil
    }

    /// Stops starting refreshes and store reads, and waits until those in flight have ended (their new tokens
    /// stored), so that the store and the Mio client can then close without cutting a refresh between Mio's
    /// answer and the store write (which would lose the rotated refresh token). Grants kept in memory after a
    /// failed store write are awaited too: their background writer keeps trying until the store takes them.
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

    /// ``finishRefreshes()`` bounded by `timeout` (the shutdown's grace period).
    /// - Parameter timeout: The longest wait.
    /// - Returns: Whether everything ended in time; when not, the grants still unsaved are logged (without tokens).
    @discardableResult
    public func finishRefreshes(within timeout: Duration) async -> Bool {
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.finishRefreshes()
                return !Task.isCancelled
            }
            group.addTask {
                try? await ContinuousClock().sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            let (count, _) = unsavedGrants
            logger.error(
                "shutdown grace period ended with token refreshes or saves still running",
                metadata: ["unsavedGrants": "\(count)"]
            )
        }
        return finished
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
                return try await self.timedRead(userID: userID)
            }
            state.reads[userID] = task
            return task
        }
        guard let task else { throw Self.shuttingDown(userID: userID) }
        return try await task.value
    }

    /// A store read bounded by ``Configuration/storeReadTimeout`` (real time: it bounds I/O, whatever clock the
    /// provider's decisions use).
    private func timedRead(userID: String) async throws -> TokenRecord? {
        let timeout = configuration.storeReadTimeout
        let store = self.store
        return try await Self.withRealTimeout(timeout) {
            try await store.get(userID: userID)
        } onTimeout: {
            TokenError(
                .storeFailure, userID: userID,
                detail: "the token store did not answer a read within \(timeout.timeInterval) s"
            )
        }
    }

    /// Runs `operation`, or throws `onTimeout()` once `timeout` has passed without an answer. The operation is then
    /// cancelled but not awaited: a store that does not answer must not hold the caller.
    private static func withRealTimeout<T: Sendable>(
        _ timeout: Duration,
        _ operation: @escaping @Sendable () async throws -> T,
        onTimeout: @escaping @Sendable () -> any Error
    ) async throws -> T {
        let race = TimeoutRace<T>()
        return try await withCheckedThrowingContinuation { continuation in
            race.continuation.withLock { $0 = continuation }
            let work = Task {
                do {
                    let value = try await operation()
                    race.take()?.resume(returning: value)
                } catch {
                    race.take()?.resume(throwing: error)
                }
                race.timer.withLock { $0?.cancel() }
            }
            let timer = Task {
                guard (try? await ContinuousClock().sleep(for: timeout)) != nil, let continuation = race.take() else {
                    return
                }
                work.cancel()
                continuation.resume(throwing: onTimeout())
            }
            race.timer.withLock { $0 = timer }
        }
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

    /// The grant this process holds unsaved for the user, when it is still newer than `record`: the row is at the
    /// version whose refresh token was spent for it, or another replica spent that stale token and marked the
    /// user reauth_required. Otherwise the row moved on (another replica stored newer tokens, or an operator
    /// revoked or reconnected the user) and the grant is dropped.
    private func pendingGrant(userID: String, record: TokenRecord?) -> UnsavedGrant? {
        state.withLock { state, _ in
            guard let pending = state.unsaved[userID] else { return nil }
            if let record, record.version == pending.basedOn
                || (record.status == .reauthRequired && record.version == pending.basedOn + 1)
            {
                return pending
            }
            state.unsaved.removeValue(forKey: userID)
            return nil
        }
    }

    private func refreshUnderLock(userID: String, trigger: Trigger) async throws -> String {
        let received = Mutex<TokenGrant?>(nil)
        let outcome: Outcome
        do {
            outcome = try await store.withExclusiveLock(userID: userID) { record -> LockedUpdate<Outcome> in
                guard let record else { return .keep(.noTokens) }
                let now = self.timeSource.wallNow()
                let pending = self.pendingGrant(userID: userID, record: record)
                guard record.status == .active || pending != nil else { return .keep(.inactive(record.status)) }
                let current = pending.map { CachedToken($0.grant, checkedAt: now) } ?? CachedToken(record, checkedAt: now)
                // A grant held unsaved is written whenever this lock is held, refreshed or not.
                let avoided: LockedUpdate<Outcome> = pending.map { .store($0.grant, returning: .avoided(current)) }
                    ?? .keep(.avoided(current))
                switch trigger {
                case .unauthorized(let rejected) where current.accessToken != rejected:
                    return avoided
                case .proactive where !self.needsRefresh(current, userID: userID, now: now):
                    return avoided
                default:
                    break
                }
                // The newest refresh token this process holds: an unsaved grant's, else the stored one.
                let refreshToken = pending?.grant.refreshToken ?? record.refreshToken
                // An unknown outcome recorded here, or on the row by any process that spent the stored token.
                let wasUncertain = self.state.withLock { state, _ in state.uncertain[userID] != nil }
                    || (pending == nil && record.refreshOutcomeUnknownSince != nil)
                // The mark goes on the row only for the stored refresh token (an unsaved grant's is this process's).
                func uncertain(_ error: any Error & Sendable) -> LockedUpdate<Outcome> {
                    pending == nil ? .markRefreshOutcomeUnknown(returning: .uncertain(error)) : .keep(.uncertain(error))
                }
                do {
                    let response = try await self.refresher.refreshTokens(refreshToken: refreshToken)
                    var grant = TokenGrant(response: response, receivedAt: self.timeSource.wallNow())
                    if grant.refreshToken.isEmpty {
                        // The server did not rotate: the refresh token stays valid.
                        grant.refreshToken = refreshToken
                    }
                    // The whole grant is kept the moment Mio answers: if the write below fails, it is not lost.
                    received.withLock { $0 = grant }
                    self.keepUnsaved(userID: userID, grant: grant, basedOn: pending?.basedOn ?? record.version)
                    return .store(grant, returning: .refreshed(CachedToken(grant, checkedAt: now)))
                } catch let error as MioError where error.code == .invalidGrant {
                    if wasUncertain {
                        return .setStatus(.reauthRequired, returning: .invalidGrantAfterLostAnswer(error))
                    }
                    return .setStatus(.reauthRequired, returning: .invalidGrant(error))
                } catch let error as MioError where Self.outcomeIsUnknown(error) {
                    return uncertain(error)
                } catch let error as MioError {
                    return .keep(.failed(error, retriable: error.isRetriable))
                } catch {
                    return uncertain(DescribedError(error))
                }
            }
        } catch {
            let storeError = (error as? TokenError)
                ?? TokenError(.storeFailure, userID: userID, underlying: DescribedError(error))
            if let grant = received.withLock({ $0 }) {
                // Mio rotated the tokens but the store did not take them: the grant stays in memory (every refresh
                // in this process uses its refresh token) and a background writer retries until the store has it.
                logger.error(
                    "token refresh succeeded at Mio but storing the new tokens failed; keeping them in memory and retrying",
                    metadata: ["user": "\(userID)", "error": "\(storeError)"]
                )
                state.withLock { state, _ in
                    state.statistics.refreshesPerformed += 1
                    state.statistics.grantsKeptUnsaved += 1
                    state.uncertain.removeValue(forKey: userID)
                }
                metrics.refreshed(.performed)
                metrics.grantKeptUnsaved()
                remember(userID, CachedToken(grant, checkedAt: timeSource.wallNow()))
                startPersister(userID: userID)
                return grant.accessToken
            }
            throw storeError
        }

        switch outcome {
        case .refreshed(let entry):
            state.withLock { state, _ in
                state.statistics.refreshesPerformed += 1
                state.uncertain.removeValue(forKey: userID)
                if state.unsaved[userID]?.grant.accessToken == entry.accessToken {
                    state.unsaved.removeValue(forKey: userID)
                }
            }
            metrics.refreshed(.performed)
            remember(userID, entry)
            logger.debug("refreshed the user's tokens", metadata: ["user": "\(userID)"])
            return entry.accessToken
        case .avoided(let entry):
            state.withLock { state, _ in
                state.statistics.refreshesAvoided += 1
                if state.unsaved[userID]?.grant.accessToken == entry.accessToken {
                    state.unsaved.removeValue(forKey: userID)
                }
            }
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
            markedReauthRequired(userID: userID, afterLostAnswer: false)
            logger.info("Mio refused the refresh token; user marked reauth_required", metadata: ["user": "\(userID)"])
            throw TokenError(
                .reauthRequired, userID: userID, detail: "Mio answered invalid_grant to the refresh",
                underlying: error, isRetriable: false
            )
        case .invalidGrantAfterLostAnswer(let error):
            markedReauthRequired(userID: userID, afterLostAnswer: true)
            logger.error(
                "Mio refused a refresh token whose earlier refresh was sent but never answered (the rotated tokens were lost in transit); user marked reauth_required",
                metadata: ["user": "\(userID)", "reason": "\(TokenError.Code.refreshAnswerLost)"]
            )
            throw TokenError(
                .refreshAnswerLost, userID: userID,
                detail: "Mio answered invalid_grant after a refresh whose answer was lost: the user must reconnect",
                underlying: error, isRetriable: false
            )
        case .uncertain(let error):
            state.withLock { state, _ in
                state.statistics.refreshFailures += 1
                state.statistics.refreshesUncertain += 1
                state.uncertain[userID] = state.uncertain[userID] ?? timeSource.wallNow()
            }
            metrics.refreshed(.uncertain)
            logger.warning(
                "token refresh sent but its outcome is unknown; the next attempt sends the same refresh token once more",
                metadata: ["user": "\(userID)", "error": "\(error)"]
            )
            throw TokenError(
                .refreshFailed, userID: userID, detail: "the refresh call to Mio got no usable answer (outcome unknown)",
                underlying: error, isRetriable: true
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

    /// Whether a failed refresh call may nevertheless have reached Mio and rotated the tokens.
    private static func outcomeIsUnknown(_ error: MioError) -> Bool {
        switch error.code {
        case .timeout, .transportFailure, .malformedResponse, .cancelled, .serverError: true
        default: false
        }
    }

    private func markedReauthRequired(userID: String, afterLostAnswer: Bool) {
        forget(userID)
        state.withLock { state, _ in
            state.statistics.refreshFailures += 1
            state.statistics.usersMarkedReauthRequired += 1
            if afterLostAnswer { state.statistics.usersLostToUnansweredRefresh += 1 }
            state.uncertain.removeValue(forKey: userID)
            state.unsaved.removeValue(forKey: userID)
        }
        metrics.refreshed(afterLostAnswer ? .reauthRequiredAfterLostAnswer : .reauthRequired)
    }

    // MARK: - Unsaved grants

    private func keepUnsaved(userID: String, grant: TokenGrant, basedOn: Int64) {
        state.withLock { state, _ in
            state.unsaved[userID] = UnsavedGrant(grant: grant, basedOn: basedOn, since: timeSource.wallNow())
        }
    }

    /// Starts the user's background writer unless one runs: it writes the unsaved grant under the user's lock,
    /// retrying with backoff until the store takes it (or the row moved on, which makes the grant stale). It keeps
    /// running after ``finishRefreshes()`` is called, which awaits it.
    private func startPersister(userID: String) {
        state.withLock { state, _ in
            guard state.persisters[userID] == nil, state.unsaved[userID] != nil else { return }
            state.persisters[userID] = Task {
                defer { self.ended { _ = $0.persisters.removeValue(forKey: userID) } }
                await self.persist(userID: userID)
            }
        }
    }

    private func persist(userID: String) async {
        var backoff: Duration = .milliseconds(100)
        while let pending = state.withLock({ state, _ in state.unsaved[userID] }) {
            do {
                let saved = try await store.withExclusiveLock(userID: userID) { record -> LockedUpdate<Bool> in
                    guard let current = self.pendingGrant(userID: userID, record: record),
                        current.grant == pending.grant
                    else { return .keep(false) }
                    return .store(pending.grant, returning: true)
                }
                state.withLock { state, _ in
                    if state.unsaved[userID]?.grant == pending.grant {
                        state.unsaved.removeValue(forKey: userID)
                    }
                }
                if saved {
                    logger.notice("tokens kept in memory after a failed write are now stored", metadata: ["user": "\(userID)"])
                }
            } catch {
                logger.warning(
                    "storing tokens kept in memory failed again; retrying",
                    metadata: ["user": "\(userID)", "error": "\(error)"]
                )
                try? await timeSource.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    // MARK: - Helpers

    private func needsRefresh(_ entry: CachedToken, userID: String, now: Date) -> Bool {
        let lifetime = max(0, entry.expiresAt.timeIntervalSince(entry.issuedAt))
        let remaining = entry.expiresAt.timeIntervalSince(now)
        let base = configuration.proactiveRefreshThreshold
        // A threshold of 0 means never refresh ahead; the spread never pushes it past 95% of the lifetime.
        let threshold = base > 0 ? min(0.95, base + configuration.proactiveRefreshJitter * Self.spread(userID)) : 0
        return remaining <= 0 || remaining < threshold * lifetime
    }

    /// A fixed number in 0..<1 for the user (FNV-1a of the id), which spreads users' refresh-ahead points.
    private static func spread(_ userID: String) -> Double {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in userID.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return Double(hash >> 11) / Double(UInt64(1) << 53)
    }

    /// Takes one proactive refresh from the budget; false when it is spent for now.
    private func takeProactiveBudget() -> Bool {
        guard let rate = configuration.proactiveRefreshesPerSecond else { return true }
        let now = timeSource.now()
        return state.withLock { state, _ in
            let burst = max(1, rate)
            if let last = state.proactiveBudgetUpdatedAt {
                state.proactiveBudget = min(burst, state.proactiveBudget + (now - last).timeInterval * rate)
            } else {
                state.proactiveBudget = burst
            }
            state.proactiveBudgetUpdatedAt = now
            guard state.proactiveBudget >= 1 else {
                state.statistics.proactiveRefreshesDeferred += 1
                return false
            }
            state.proactiveBudget -= 1
            return true
        }
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

/// The shared state of an operation racing a timeout: the caller's continuation, resumed once by whichever ends
/// first, and the timer to stop when the operation wins.
private final class TimeoutRace<T: Sendable>: Sendable {
    let continuation = Mutex<CheckedContinuation<T, any Error>?>(nil)
    let timer = Mutex<Task<Void, Never>?>(nil)

    func take() -> CheckedContinuation<T, any Error>? {
        continuation.withLock { continuation in
            defer { continuation = nil }
            return continuation
        }
    }
}
