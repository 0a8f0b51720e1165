extension MioSimulator {
    /// What the simulator saw, as `GET /sim/stats` returns it. Only the API endpoints (`/v1/...`) are counted.
    public struct Stats: Sendable, Codable, Equatable {
        /// Requests in progress and the most seen at once.
        public struct Concurrency: Sendable, Codable, Equatable {
            /// API requests in progress now.
            public var current: Int
            /// The most API requests in progress at once since the start or the last reset.
            public var peak: Int

            /// Creates the figures.
            public init(current: Int = 0, peak: Int = 0) {
                self.current = current
                self.peak = peak
            }
        }

        /// Requests by endpoint (`"POST /v1/context"`) and status (`"200"`).
        public var requests: [String: [String: Int]]
        /// Successful refreshes by user id.
        public var refreshesByUser: [String: Int]
        /// Rotated refresh tokens presented again (each one revoked the user).
        public var reuseDetections: Int
        /// Rotated refresh tokens presented again inside the reuse grace window (answered with a new pair).
        public var reusesWithinGrace: Int
        /// Refreshes whose answer was dropped after the rotation (the `refreshAnswerDropRate` fault).
        public var refreshAnswersDropped: Int
        /// Users revoked, on demand or by reuse detection.
        public var revocations: Int
        /// Authorization codes handed out by `POST /sim/authorize`.
        public var codesIssued: Int
        /// Token pairs issued, by code exchange or refresh.
        public var tokensIssued: Int
        /// Faults injected, by kind: `"500"`, `"503"`, `"429"`, `"hang"`, `"rps_limit"`, `"concurrency_limit"`.
        public var faultsInjected: [String: Int]
        /// Concurrent API requests.
        public var concurrency: Concurrency
        /// The most `POST /v1/context` requests seen within one second (windows start at the first request
        /// after the previous window ended).
        public var contextRequestsPerSecondPeak: Int

        /// Creates empty statistics.
        public init() {
            self.requests = [:]
            self.refreshesByUser = [:]
            self.reuseDetections = 0
            self.reusesWithinGrace = 0
            self.refreshAnswersDropped = 0
            self.revocations = 0
            self.codesIssued = 0
            self.tokensIssued = 0
            self.faultsInjected = [:]
            self.concurrency = Concurrency()
            self.contextRequestsPerSecondPeak = 0
        }

        /// How many requests to `endpoint` ended with `status`.
        public func count(_ endpoint: String, status: Int) -> Int {
            self.requests[endpoint]?[String(status)] ?? 0
        }
    }
}
