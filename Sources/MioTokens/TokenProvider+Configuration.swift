extension TokenProvider {
    /// Settings of the provider.
    public struct Configuration: Sendable {
        /// Refresh proactively when less than this share of the access token's lifetime is left
        /// (default 0.2, i.e. at 80% of the lifetime, as Mio's guide advises).
        public var proactiveRefreshThreshold: Double
        /// The most users whose access token is kept in memory (default 100 000).
        public var cacheCapacity: Int
        /// A share of the lifetime added to the threshold, spread over users (each user gets a fixed part of it,
        /// from a hash of the id), so that tokens issued together are not all refreshed together (default 0).
        public var proactiveRefreshJitter: Double
        /// The most proactive refreshes (of tokens still valid) per second; over it the current token is used and
        /// the refresh left to a later job. Expired tokens are always refreshed. nil: no limit (the default).
        public var proactiveRefreshesPerSecond: Double?
        /// How long a cached access token is served without checking the store again: a revocation or a
        /// reconnection made by another process takes effect within it (default 30 s).
        public var revalidationInterval: Duration
        /// How long a store read may take before it fails (the readiness probe uses it too); default 5 s.
        public var storeReadTimeout: Duration

        /// Creates a configuration.
        /// - Parameters:
        ///   - proactiveRefreshThreshold: The share of the lifetime left below which a token is refreshed before use.
        ///   - cacheCapacity: The most users whose access token is kept in memory.
        ///   - proactiveRefreshJitter: A share of the lifetime spread over users on top of the threshold.
        ///   - proactiveRefreshesPerSecond: The budget of proactive refreshes per second; nil for none.
        ///   - revalidationInterval: How long a cached token is served before the store is checked again.
        ///   - storeReadTimeout: The bound on a store read.
        public init(
            proactiveRefreshThreshold: Double = 0.2,
            cacheCapacity: Int = 100_000,
            proactiveRefreshJitter: Double = 0,
            proactiveRefreshesPerSecond: Double? = nil,
            revalidationInterval: Duration = .seconds(30),
            storeReadTimeout: Duration = .seconds(5)
        ) {
            self.proactiveRefreshThreshold = proactiveRefreshThreshold
            self.cacheCapacity = cacheCapacity
            self.proactiveRefreshJitter = proactiveRefreshJitter
            self.proactiveRefreshesPerSecond = proactiveRefreshesPerSecond
            self.revalidationInterval = revalidationInterval
            self.storeReadTimeout = storeReadTimeout
        }
    }

    /// Counters since the provider was created (for metrics).
    public struct Statistics: Sendable, Equatable {
        /// Refreshes this process performed at Mio (successful calls).
        public var refreshesPerformed = 0
        /// Refreshes not performed because another replica (seen under the per-user lock) or another task (seen in the
        /// cache) had already replaced the token.
        public var refreshesAvoided = 0
        /// Callers that awaited a refresh already in flight for the same user in this process.
        public var refreshesJoined = 0
        /// Refresh calls to Mio that failed, `invalid_grant` included.
        public var refreshFailures = 0
        /// `invalid_grant` answers that marked a user reauth_required.
        public var usersMarkedReauthRequired = 0
        /// Refreshes sent whose outcome is unknown (no answer, a cut connection, an unreadable answer).
        public var refreshesUncertain = 0
        /// Users marked reauth_required because Mio refused a refresh token after a refresh whose answer was lost.
        public var usersLostToUnansweredRefresh = 0
        /// Grants from Mio the store did not take at once, kept in memory and written in the background.
        public var grantsKeptUnsaved = 0
        /// Proactive refreshes put off because the budget per second was spent.
        public var proactiveRefreshesDeferred = 0
        /// Access tokens served from the in-memory cache.
        public var cacheHits = 0
        /// Cache misses that joined a read of the same user's tokens already in flight instead of reading the
        /// store again (a worker starting on a backlog has many jobs per user at once).
        public var storeReadsJoined = 0

        /// Creates zeroed counters.
        public init() {}
    }
}
