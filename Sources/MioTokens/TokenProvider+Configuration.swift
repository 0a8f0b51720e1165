extension TokenProvider {
    /// Settings of the provider.
    public struct Configuration: Sendable {
        /// Refresh proactively when less than this share of the access token's lifetime is left
        /// (default 0.2, i.e. at 80% of the lifetime, as Mio's guide advises).
        public var proactiveRefreshThreshold: Double
        /// The most users whose access token is kept in memory (default 100 000).
        public var cacheCapacity: Int

        /// Creates a configuration.
        /// - Parameters:
        ///   - proactiveRefreshThreshold: The share of the lifetime left below which a token is refreshed before use.
        ///   - cacheCapacity: The most users whose access token is kept in memory.
        public init(proactiveRefreshThreshold: Double = 0.2, cacheCapacity: Int = 100_000) {
            self.proactiveRefreshThreshold = proactiveRefreshThreshold
            self.cacheCapacity = cacheCapacity
        }
    }

    /// Counters since the provider was created (for metrics).
    public struct Statistics: Sendable, Equatable {
        /// Refreshes this process performed at Mio (successful calls).
        public var refreshesPerformed = 0
        /// Refreshes not performed because another replica (seen under the row lock) or another task (seen in the
        /// cache) had already replaced the token.
        public var refreshesAvoided = 0
        /// Callers that awaited a refresh already in flight for the same user in this process.
        public var refreshesJoined = 0
        /// Refresh calls to Mio that failed, `invalid_grant` included.
        public var refreshFailures = 0
        /// `invalid_grant` answers that marked a user reauth_required.
        public var usersMarkedReauthRequired = 0
        /// Access tokens served from the in-memory cache.
        public var cacheHits = 0
        /// Cache misses that joined a read of the same user's tokens already in flight instead of reading the
        /// store again (a worker starting on a backlog has many jobs per user at once).
        public var storeReadsJoined = 0

        /// Creates zeroed counters.
        public init() {}
    }
}
