import Coordination

/// Everything the simulator remembers, mutated only under the simulator's lock. Methods are synchronous and
/// never await: the caller does any waiting (latency, hangs) outside the lock.
struct SimulatorState: Sendable {
    /// A point in time: the monotonic time of the simulator's `TimeSource`.
    typealias Instant = Duration

    struct AuthorizationCode: Sendable {
        var userID: String
        var expiresAt: Instant
    }

    struct AccessToken: Sendable {
        var userID: String
        var clientID: String
        var expiresAt: Instant
    }

    struct RefreshToken: Sendable {
        enum Status: Sendable {
            case active
            /// Spent by a refresh; presenting it again is reuse.
            case rotated
            case revoked
        }

        var userID: String
        var clientID: String
        var expiresAt: Instant
        var status: Status
        /// When it was spent by a refresh (for the reuse grace window).
        var rotatedAt: Instant?
    }

    /// The outcome of a token request, for the route to turn into HTTP.
    enum TokenOutcome: Sendable {
        case issued(access: String, refresh: String, userID: String, includeIDToken: Bool)
        case oauthError(status: Int, error: String, description: String)
    }

    /// The outcome of a bearer-token check.
    enum BearerOutcome: Sendable {
        case valid(userID: String)
        case invalid(description: String)
    }

    /// What the fault stage decided for one request.
    enum FaultDecision: Sendable {
        case proceed(delay: Duration)
        case reject(status: Int, error: String, retryAfter: Bool, delay: Duration)
        case hang(Duration)
    }

    var configuration: MioSimulator.Configuration
    var faults: MioSimulator.Faults
    var random: SplitMix64

    var codes: [String: AuthorizationCode] = [:]
    var accessTokens: [String: AccessToken] = [:]
    var refreshTokens: [String: RefreshToken] = [:]
    var accessTokensByUser: [String: Set<String>] = [:]
    var refreshTokensByUser: [String: Set<String>] = [:]
    var newUsers: Set<String> = []
    var buckets: [String: TokenBucket] = [:]

    var stats = MioSimulator.Stats()
    /// Every authorization code, access token and refresh token handed out, oldest first (for leak tests).
    var issuedSecrets: [String] = []
    /// The `traceparent` headers of the latest API requests, oldest first, at most `traceparentLimit`.
    var traceparents: [String] = []
    static let traceparentLimit = 10_000
    /// Start of the whole-second window that `contextRequestsInWindow` counts.
    var contextWindowStart: Instant?
    var contextRequestsInWindow = 0

    init(configuration: MioSimulator.Configuration) {
        self.configuration = configuration
        self.faults = configuration.faults
        self.random = SplitMix64(seed: configuration.seed ?? UInt64.random(in: .min ... .max))
    }

    // MARK: Authorization codes and tokens

    mutating func authorize(userID: String, now: Instant) -> String {
        let code = Self.randomToken(prefix: "code_")
        self.codes[code] = AuthorizationCode(userID: userID, expiresAt: now + self.configuration.codeTTL)
        self.issuedSecrets.append(code)
        self.stats.codesIssued += 1
        return code
    }

    private func clientMatches(clientID: String?, clientSecret: String?) -> Bool {
        clientID == self.configuration.clientID && clientSecret == self.configuration.clientSecret
    }

    private func clientFailure() -> TokenOutcome {
        switch self.configuration.clientAuthenticationFailure {
        case .invalidGrant:
            return .oauthError(status: 400, error: "invalid_grant", description: "client credentials mismatch")
        case .invalidClient:
            return .oauthError(status: 401, error: "invalid_client", description: "client authentication failed")
        }
    }

    mutating func exchange(
        code: String?,
        redirectURI: String?,
        clientID: String?,
        clientSecret: String?,
        now: Instant
    ) -> TokenOutcome {
        guard let code, !code.isEmpty else {
            return .oauthError(status: 400, error: "invalid_request", description: "missing code")
        }
        guard self.clientMatches(clientID: clientID, clientSecret: clientSecret) else {
            return self.clientFailure()
        }
        guard redirectURI == self.configuration.redirectURL else {
            return .oauthError(status: 400, error: "invalid_grant", description: "redirect_uri mismatch")
        }
        guard let grant = self.codes.removeValue(forKey: code) else {
            return .oauthError(
                status: 400,
                error: "invalid_grant",
                description: "authorization code is invalid or was already used"
            )
        }
        guard grant.expiresAt > now else {
            return .oauthError(status: 400, error: "invalid_grant", description: "authorization code expired")
        }
        let (access, refresh) = self.issueTokens(userID: grant.userID, clientID: self.configuration.clientID, now: now)
        return .issued(access: access, refresh: refresh, userID: grant.userID, includeIDToken: true)
    }

    mutating func refresh(refreshToken: String?, clientID: String?, clientSecret: String?, now: Instant) -> TokenOutcome {
        guard let refreshToken, !refreshToken.isEmpty else {
            return .oauthError(status: 400, error: "invalid_request", description: "missing refresh_token")
        }
        guard self.clientMatches(clientID: clientID, clientSecret: clientSecret) else {
            return self.clientFailure()
        }
        guard var record = self.refreshTokens[refreshToken] else {
            return .oauthError(status: 400, error: "invalid_grant", description: "unknown refresh token")
        }
        switch record.status {
        case .rotated where record.rotatedAt.map({ now < $0 + self.configuration.refreshReuseGrace }) ?? false:
            // Inside the reuse grace window: answered again with a new pair (the pair issued first stays valid).
            guard record.expiresAt > now else {
                return .oauthError(status: 400, error: "invalid_grant", description: "refresh token expired")
            }
            self.stats.reusesWithinGrace += 1
            self.stats.refreshesByUser[record.userID, default: 0] += 1
            let (access, refresh) = self.issueTokens(userID: record.userID, clientID: record.clientID, now: now)
            return .issued(access: access, refresh: refresh, userID: record.userID, includeIDToken: false)
        case .rotated:
            // RFC 9700 section 4.14.2: a rotated refresh token presented again means the token leaked or a
            // client raced itself; revoke everything the user has so neither party keeps access.
            self.stats.reuseDetections += 1
            self.revoke(userID: record.userID)
            return .oauthError(
                status: 400,
                error: "invalid_grant",
                description: "refresh token was already used; all tokens of the user are revoked"
            )
        case .revoked:
            return .oauthError(status: 400, error: "invalid_grant", description: "refresh token was revoked")
        case .active:
            break
        }
        guard record.expiresAt > now else {
            return .oauthError(status: 400, error: "invalid_grant", description: "refresh token expired")
        }
        record.status = .rotated
        record.rotatedAt = now
        self.refreshTokens[refreshToken] = record
        self.stats.refreshesByUser[record.userID, default: 0] += 1
        let (access, refresh) = self.issueTokens(userID: record.userID, clientID: record.clientID, now: now)
        return .issued(access: access, refresh: refresh, userID: record.userID, includeIDToken: false)
    }

    private mutating func issueTokens(userID: String, clientID: String, now: Instant) -> (String, String) {
        let access = Self.randomToken(prefix: "atk_")
        let refresh = Self.randomToken(prefix: "rtk_")
        self.accessTokens[access] = AccessToken(
            userID: userID,
            clientID: clientID,
            expiresAt: now + self.configuration.tokenTTL
        )
        self.refreshTokens[refresh] = RefreshToken(
            userID: userID,
            clientID: clientID,
            expiresAt: now + self.configuration.refreshTokenTTL,
            status: .active
        )
        self.accessTokensByUser[userID, default: []].insert(access)
        self.refreshTokensByUser[userID, default: []].insert(refresh)
        self.issuedSecrets += [access, refresh]
        self.stats.tokensIssued += 1
        return (access, refresh)
    }

    /// Whether the answer of a refresh that just rotated the tokens is to be dropped (`refreshAnswerDropRate`).
    mutating func dropsRefreshAnswer() -> Bool {
        guard self.faults.refreshAnswerDropRate > 0,
            Double(self.random.next() >> 11) / Double(UInt64(1) << 53) < self.faults.refreshAnswerDropRate
        else { return false }
        self.stats.refreshAnswersDropped += 1
        return true
    }

    /// Revokes every access token and every live refresh token of a user. Rotated refresh tokens stay
    /// marked rotated, so presenting one later is still detected as reuse.
    mutating func revoke(userID: String) {
        for token in self.accessTokensByUser.removeValue(forKey: userID) ?? [] {
            self.accessTokens.removeValue(forKey: token)
        }
        for token in self.refreshTokensByUser[userID] ?? [] where self.refreshTokens[token]?.status == .active {
            self.refreshTokens[token]?.status = .revoked
        }
        self.stats.revocations += 1
    }

    func checkBearer(_ token: String?, now: Instant) -> BearerOutcome {
        guard let token, let record = self.accessTokens[token] else {
            return .invalid(description: "unknown access token")
        }
        guard record.expiresAt > now else {
            return .invalid(description: "access token expired")
        }
        return .valid(userID: record.userID)
    }

    // MARK: Faults and statistics

    /// Counts a request in, applies the concurrency and rate limits, and draws the random faults.
    /// The rate limit is per OAuth client: the client of the bearer token, the registered client on the token
    /// endpoint, and `unknown` for a bearer token the simulator does not know.
    mutating func admit(target: MioSimulator.Faults.Target, bearer: String?, now: Instant) -> FaultDecision {
        self.stats.concurrency.current += 1
        self.stats.concurrency.peak = max(self.stats.concurrency.peak, self.stats.concurrency.current)
        if target == .context {
            self.countContextRequest(now: now)
        }
        let faults = self.faults
        if let limit = faults.maxConcurrentRequests, self.stats.concurrency.current > limit {
            self.stats.faultsInjected["concurrency_limit", default: 0] += 1
            return .reject(status: 429, error: "too many concurrent requests", retryAfter: true, delay: .zero)
        }
        if let limit = faults.requestsPerSecondPerClient {
            let client: String
            if let bearer {
                client = self.accessTokens[bearer]?.clientID ?? "unknown"
            } else {
                client = self.configuration.clientID
            }
            var bucket = self.buckets[client] ?? TokenBucket(capacity: limit, now: now)
            let allowed = bucket.take(rate: limit, now: now)
            self.buckets[client] = bucket
            if !allowed {
                self.stats.faultsInjected["rps_limit", default: 0] += 1
                return .reject(status: 429, error: "rate limit exceeded", retryAfter: true, delay: .zero)
            }
        }
        guard faults.targets.contains(target) else {
            return .proceed(delay: .zero)
        }
        var delay = Duration.milliseconds(faults.latencyMs)
        if faults.jitterMs > 0 {
            delay += .milliseconds(Int(self.random.next() % UInt64(faults.jitterMs + 1)))
        }
        let draw = self.random.nextUnit()
        var threshold = faults.rate500
        if draw < threshold {
            self.stats.faultsInjected["500", default: 0] += 1
            return .reject(status: 500, error: "server_error", retryAfter: false, delay: delay)
        }
        threshold += faults.rate503
        if draw < threshold {
            self.stats.faultsInjected["503", default: 0] += 1
            return .reject(status: 503, error: "temporarily_unavailable", retryAfter: true, delay: delay)
        }
        threshold += faults.rate429
        if draw < threshold {
            self.stats.faultsInjected["429", default: 0] += 1
            return .reject(status: 429, error: "rate limit exceeded", retryAfter: true, delay: delay)
        }
        threshold += faults.hangRate
        if draw < threshold {
            self.stats.faultsInjected["hang", default: 0] += 1
            return .hang(delay + .milliseconds(faults.hangMs))
        }
        return .proceed(delay: delay)
    }

    /// Counts a request out with its final status.
    mutating func finish(endpoint: String, status: Int) {
        self.stats.concurrency.current -= 1
        self.stats.requests[endpoint, default: [:]][String(status), default: 0] += 1
    }

    private mutating func countContextRequest(now: Instant) {
        if let start = self.contextWindowStart, now - start < .seconds(1) {
            self.contextRequestsInWindow += 1
        } else {
            self.contextWindowStart = now
            self.contextRequestsInWindow = 1
        }
        self.stats.contextRequestsPerSecondPeak = max(
            self.stats.contextRequestsPerSecondPeak,
            self.contextRequestsInWindow
        )
    }

    mutating func recordTraceparent(_ value: String) {
        if self.traceparents.count >= Self.traceparentLimit {
            self.traceparents.removeFirst(self.traceparents.count / 2)
        }
        self.traceparents.append(value)
    }

    mutating func resetStats() {
        let current = self.stats.concurrency.current
        self.stats = MioSimulator.Stats()
        self.stats.concurrency = .init(current: current, peak: current)
        self.contextWindowStart = nil
        self.contextRequestsInWindow = 0
    }

    // MARK: Helpers

    static func randomToken(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var bytes = [UInt8](prefix.utf8)
        bytes.reserveCapacity(prefix.utf8.count + 32)
        for _ in 0..<4 {
            var word = generator.next()
            for _ in 0..<8 {
                bytes.append(digits[Int(word & 0xF)])
                word >>= 4
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A token bucket: `capacity` requests at once, refilled at `rate` per second.
struct TokenBucket: Sendable {
    var tokens: Double
    var capacity: Double
    var last: SimulatorState.Instant

    init(capacity: Double, now: SimulatorState.Instant) {
        self.tokens = capacity
        self.capacity = capacity
        self.last = now
    }

    mutating func take(rate: Double, now: SimulatorState.Instant) -> Bool {
        let seconds = (now - self.last).timeInterval
        self.capacity = rate
        self.tokens = min(rate, self.tokens + seconds * rate)
        self.last = now
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }
}

/// SplitMix64: a small, fast, seedable generator, so `--seed` reproduces a run's faults.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1).
    mutating func nextUnit() -> Double {
        Double(self.next() >> 11) * 0x1.0p-53
    }
}
