public import Foundation

/// How a ``MioSimulator`` behaves: its registered OAuth client, where it listens, token lifetimes and faults.
extension MioSimulator {
    public struct Configuration: Sendable {
        /// What the token endpoint answers when the client id or secret does not match.
        public enum ClientAuthenticationFailure: String, Sendable, Codable {
            /// `400 {"error":"invalid_grant"}`, as Mio's error matrix documents (the default).
            case invalidGrant = "invalid_grant"
            /// `401 {"error":"invalid_client"}`, as RFC 6749 section 5.2 prescribes.
            case invalidClient = "invalid_client"
        }

        /// The registered client id.
        public var clientID: String
        /// The registered client secret.
        public var clientSecret: String
        /// The registered redirect URL; a code exchange must present exactly this one.
        public var redirectURL: String
        /// The address to listen on. Loopback by default.
        public var host: String
        /// The port; 0 picks a free one (read it from the base URL).
        public var port: Int
        /// Lifetime of access tokens (`expires_in`). Default one hour.
        public var tokenTTL: Duration
        /// Lifetime of authorization codes. Default one minute.
        public var codeTTL: Duration
        /// Lifetime of refresh tokens. Default 30 days.
        public var refreshTokenTTL: Duration
        /// What a client-credential mismatch gives. Default `invalidGrant` (Mio's error matrix).
        public var clientAuthenticationFailure: ClientAuthenticationFailure
        /// Faults injected into the API endpoints (`/v1/...`); changeable at run time through `POST /sim/faults`.
        public var faults: Faults
        /// Seed of the random faults. With a seed and a sequential client, the same faults repeat run after run.
        public var seed: UInt64?
        /// How long a rotated refresh token is still accepted once more (a reuse grace window, as Okta, Auth0
        /// and Cognito offer): a reuse inside it gets a new pair and is not treated as reuse. Default zero: every
        /// reuse revokes the user (strict rotation, RFC 9700).
        public var refreshReuseGrace: Duration

        /// Creates a configuration; every argument has a default suitable for tests.
        public init(
            clientID: String = "sim-client",
            clientSecret: String = "sim-secret",
            redirectURL: String = "http://127.0.0.1:8080/oauth/callback",
            host: String = "127.0.0.1",
            port: Int = 0,
            tokenTTL: Duration = .seconds(3600),
            codeTTL: Duration = .seconds(60),
            refreshTokenTTL: Duration = .seconds(30 * 24 * 3600),
            clientAuthenticationFailure: ClientAuthenticationFailure = .invalidGrant,
            faults: Faults = Faults(),
            seed: UInt64? = nil,
            refreshReuseGrace: Duration = .zero
        ) {
            self.refreshReuseGrace = refreshReuseGrace
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.redirectURL = redirectURL
            self.host = host
            self.port = port
            self.tokenTTL = tokenTTL
            self.codeTTL = codeTTL
            self.refreshTokenTTL = refreshTokenTTL
            self.clientAuthenticationFailure = clientAuthenticationFailure
            self.faults = faults
            self.seed = seed
        }
    }

    /// Faults injected into the API endpoints. All off by default. The JSON form (for `POST /sim/faults`) uses
    /// these property names; a POST changes only the fields it names.
    public struct Faults: Sendable, Codable, Equatable {
        /// How `Retry-After` is written on 429 and 503.
        public enum RetryAfterFormat: String, Sendable, Codable {
            /// `Retry-After: 2`
            case seconds
            /// `Retry-After: Sat, 28 Nov 2026 19:01:13 GMT`
            case httpDate = "http-date"
        }

        /// Which API endpoints faults apply to.
        public enum Target: String, Sendable, Codable, CaseIterable {
            /// `POST /v1/auth/oauth2/token`
            case token
            /// `POST /v1/context`
            case context
            /// `GET /v1/context/summary`
            case summary
        }

        /// Fixed delay before every API answer, in milliseconds.
        public var latencyMs: Int
        /// Extra random delay, uniform in 0...jitterMs milliseconds.
        public var jitterMs: Int
        /// Fraction (0...1) of requests answered 500.
        public var rate500: Double
        /// Fraction of requests answered 503 with `Retry-After`.
        public var rate503: Double
        /// Fraction of requests answered 429 with `Retry-After`.
        public var rate429: Double
        /// Fraction of requests that hang for `hangMs` (then get 503, if the client is still there).
        public var hangRate: Double
        /// How long a hanging request hangs, in milliseconds. Default 10 minutes. Ends early on shutdown.
        public var hangMs: Int
        /// The `Retry-After` delay in seconds sent with 429 and 503.
        public var retryAfterSeconds: Int
        /// How `Retry-After` is written.
        public var retryAfterFormat: RetryAfterFormat
        /// Requests per second allowed per OAuth client (token bucket, burst = the limit); excess gets 429.
        /// nil means unlimited.
        public var requestsPerSecondPerClient: Double?
        /// Most API requests in progress at once; excess gets 429. nil means unlimited.
        public var maxConcurrentRequests: Int?
        /// The endpoints the random faults, latency and hangs apply to. Default all.
        public var targets: [Target]
        /// Users whose `POST /v1/context` answer is padded to this many bytes of `content` (the usual content,
        /// then `x`s): oversized answers for one user among many. Default none.
        public var answerBytes: [String: Int]
        /// Fraction (0...1) of successful refreshes whose answer is dropped: the tokens are rotated, then the
        /// request hangs for `hangMs` (the client times out) and ends with 503. Applies to the token endpoint
        /// whatever `targets` say.
        public var refreshAnswerDropRate: Double
        /// Whether the code exchange (`grant_type=authorization_code`) answers without a `refresh_token`, as an
        /// authorization server that grants no offline access does. Default false.
        public var exchangeWithoutRefreshToken: Bool

        /// Creates fault settings; by default no fault.
        public init(
            latencyMs: Int = 0,
            jitterMs: Int = 0,
            rate500: Double = 0,
            rate503: Double = 0,
            rate429: Double = 0,
            hangRate: Double = 0,
            hangMs: Int = 600_000,
            retryAfterSeconds: Int = 1,
            retryAfterFormat: RetryAfterFormat = .seconds,
            requestsPerSecondPerClient: Double? = nil,
            maxConcurrentRequests: Int? = nil,
            targets: [Target] = Target.allCases,
            answerBytes: [String: Int] = [:],
            refreshAnswerDropRate: Double = 0,
            exchangeWithoutRefreshToken: Bool = false
        ) {
            self.exchangeWithoutRefreshToken = exchangeWithoutRefreshToken
            self.answerBytes = answerBytes
            self.refreshAnswerDropRate = refreshAnswerDropRate
            self.latencyMs = latencyMs
            self.jitterMs = jitterMs
            self.rate500 = rate500
            self.rate503 = rate503
            self.rate429 = rate429
            self.hangRate = hangRate
            self.hangMs = hangMs
            self.retryAfterSeconds = retryAfterSeconds
            self.retryAfterFormat = retryAfterFormat
            self.requestsPerSecondPerClient = requestsPerSecondPerClient
            self.maxConcurrentRequests = maxConcurrentRequests
            self.targets = targets
        }

        /// Decodes fault settings; a missing field (or `null`) takes its default.
        public init(from decoder: any Decoder) throws {
            self.init()
            let container = try decoder.container(keyedBy: CodingKeys.self)
            func take<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
                if let new = try container.decodeIfPresent(T.self, forKey: key) { value = new }
            }
            try take(.latencyMs, &self.latencyMs)
            try take(.jitterMs, &self.jitterMs)
            try take(.rate500, &self.rate500)
            try take(.rate503, &self.rate503)
            try take(.rate429, &self.rate429)
            try take(.hangRate, &self.hangRate)
            try take(.hangMs, &self.hangMs)
            try take(.retryAfterSeconds, &self.retryAfterSeconds)
            try take(.retryAfterFormat, &self.retryAfterFormat)
            try take(.targets, &self.targets)
            try take(.answerBytes, &self.answerBytes)
            try take(.refreshAnswerDropRate, &self.refreshAnswerDropRate)
            try take(.exchangeWithoutRefreshToken, &self.exchangeWithoutRefreshToken)
            self.requestsPerSecondPerClient = try container.decodeIfPresent(
                Double.self,
                forKey: .requestsPerSecondPerClient
            )
            self.maxConcurrentRequests = try container.decodeIfPresent(Int.self, forKey: .maxConcurrentRequests)
        }

        /// These settings with the fields named in a JSON object replaced (`null` removes a limit).
        /// - Parameter patch: A JSON object such as `{"rate429": 0.5, "retryAfterFormat": "http-date"}`.
        /// - Returns: The new settings.
        /// - Throws: `MioSimulatorError` for a body that is not a JSON object or names an unknown setting, or
        ///   a `DecodingError` for a value of the wrong type.
        public func applying(patch: Data) throws -> Faults {
            guard let fields = try? JSONSerialization.jsonObject(with: patch) as? [String: Any] else {
                throw MioSimulatorError(message: "faults must be a JSON object")
            }
            let known = Set(CodingKeys.allCases.map(\.rawValue))
            if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
                throw MioSimulatorError(message: "unknown fault setting \(unknown)")
            }
            let current = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any] ?? [:]
            let merged = current.merging(fields) { $1 }
            return try JSONDecoder().decode(Faults.self, from: JSONSerialization.data(withJSONObject: merged))
        }

        /// Checks the settings, returning a message naming the first bad one.
        func validationError() -> String? {
            for (name, rate) in [("rate500", rate500), ("rate503", rate503), ("rate429", rate429),
                                 ("hangRate", hangRate), ("refreshAnswerDropRate", refreshAnswerDropRate)] where !(0...1).contains(rate) {
                return "\(name) must be between 0 and 1"
            }
            if rate500 + rate503 + rate429 + hangRate > 1 { return "rate500 + rate503 + rate429 + hangRate exceeds 1" }
            if latencyMs < 0 || jitterMs < 0 || hangMs < 0 { return "latencyMs, jitterMs and hangMs must be >= 0" }
            if retryAfterSeconds < 0 { return "retryAfterSeconds must be >= 0" }
            if let limit = requestsPerSecondPerClient, !(limit > 0) { return "requestsPerSecondPerClient must be > 0" }
            if let limit = maxConcurrentRequests, limit < 1 { return "maxConcurrentRequests must be >= 1" }
            if answerBytes.values.contains(where: { $0 < 0 || $0 > 64 * 1024 * 1024 }) {
                return "answerBytes must be between 0 and 67108864"
            }
            return nil
        }

        private enum CodingKeys: String, CodingKey, CaseIterable {
            case latencyMs, jitterMs, rate500, rate503, rate429, hangRate, hangMs, retryAfterSeconds
            case retryAfterFormat, requestsPerSecondPerClient, maxConcurrentRequests, targets, answerBytes
            case refreshAnswerDropRate, exchangeWithoutRefreshToken
        }
    }
}
