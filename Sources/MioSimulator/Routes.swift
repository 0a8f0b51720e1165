import Coordination
import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import Synchronization

extension MioSimulator {
    static let tokenEndpoint = "POST /v1/auth/oauth2/token"
    static let contextEndpoint = "POST /v1/context"
    static let summaryEndpoint = "GET /v1/context/summary"

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)

        router.post("/v1/auth/oauth2/token") { request, _ in
            await self.api(.token, endpoint: Self.tokenEndpoint, bearer: nil, request: request) {
                await self.token(request)
            }
        }
        router.post("/v1/context") { request, _ in
            let bearer = Self.bearerToken(request)
            return await self.api(.context, endpoint: Self.contextEndpoint, bearer: bearer, request: request) {
                await self.context(request, bearer: bearer)
            }
        }
        router.get("/v1/context/summary") { request, _ in
            let bearer = Self.bearerToken(request)
            return await self.api(.summary, endpoint: Self.summaryEndpoint, bearer: bearer, request: request) {
                self.summary(bearer: bearer)
            }
        }

        router.post("/sim/authorize") { request, _ in
            guard let userID = await Self.userID(request) else { return Self.badControlRequest }
            let code = self.authorize(userID: userID)
            let redirect = self.configuration.redirectURL
            let separator = redirect.contains("?") ? "&" : "?"
            return Self.json(.ok, Wire.object(["code": code, "redirectUrl": "\(redirect)\(separator)code=\(code)"]))
        }
        router.post("/sim/revoke") { request, _ in
            guard let userID = await Self.userID(request) else { return Self.badControlRequest }
            self.revoke(userID: userID)
            return Self.json(.ok, Wire.object(["revoked": userID]))
        }
        router.post("/sim/users/new") { request, _ in
            guard let userID = await Self.userID(request) else { return Self.badControlRequest }
            self.markNew(userID: userID)
            return Self.json(.ok, Wire.object(["new": userID]))
        }
        router.get("/sim/faults") { _, _ in
            Self.encoded(self.faults())
        }
        router.post("/sim/faults") { request, _ in
            guard let body = try? await request.body.collect(upTo: 64 * 1024) else { return Self.badControlRequest }
            let faults: Faults
            do {
                faults = try self.faults().applying(patch: Data(buffer: body))
                try self.setFaults(faults)
            } catch {
                return Self.json(.badRequest, Wire.object(["error": "invalid_faults", "message": "\(error)"]))
            }
            return Self.encoded(faults)
        }
        addConsentRoutes(to: router)
        router.get("/sim/stats") { _, _ in
            Self.encoded(self.stats())
        }
        router.post("/sim/stats/reset") { _, _ in
            self.resetStats()
            return Self.encoded(self.stats())
        }
        return router
    }

    // MARK: - Fault stage

    /// Runs one API request through the fault stage and the statistics, then `handler` if no fault hit.
    private func api(
        _ target: Faults.Target,
        endpoint: String,
        bearer: String?,
        request: Request,
        _ handler: () async -> Response
    ) async -> Response {
        let traceparent = request.headers[.init("traceparent")!]
        let now = self.timeSource.now()
        let decision = self.state.withLock { state in
            if let traceparent { state.recordTraceparent(traceparent) }
            return state.admit(target: target, bearer: bearer, now: now)
        }
        let response: Response
        switch decision {
        case .proceed(let delay):
            try? await self.timeSource.sleep(for: delay)
            response = await handler()
        case .reject(let status, let error, let retryAfter, let delay):
            try? await self.timeSource.sleep(for: delay)
            response = self.faultResponse(status: status, error: error, retryAfter: retryAfter)
        case .hang(let duration):
            await self.hang(duration)
            response = self.faultResponse(status: 503, error: "temporarily_unavailable", retryAfter: true)
        }
        self.state.withLock { $0.finish(endpoint: endpoint, status: Int(response.status.code)) }
        return response
    }

    /// Sleeps for `duration`, waking early when the simulator shuts down.
    private func hang(_ duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await self.timeSource.sleep(for: duration) }
            group.addTask { await self.stopping.wait(cancelled: ()) { $0 ? () : nil } }
            // Whichever comes first, the end of the hang or shutdown, ends the other.
            await group.next()
            group.cancelAll()
        }
    }

    private func faultResponse(status: Int, error: String, retryAfter: Bool) -> Response {
        var headers = HTTPFields()
        if retryAfter {
            let faults = self.faults()
            switch faults.retryAfterFormat {
            case .seconds:
                headers[.retryAfter] = String(faults.retryAfterSeconds)
            case .httpDate:
                // Round up so that the date is never earlier than the delay in seconds would be.
                let now = self.timeSource.wallNow()
                let target = Int(now.timeIntervalSince1970.rounded(.up)) + faults.retryAfterSeconds
                headers[.retryAfter] = Wire.httpDate(secondsSince1970: target)
            }
        }
        let oauthError = status == 429 ? "rate_limited" : (status == 500 ? "server_error" : "temporarily_unavailable")
        return Self.json(
            HTTPResponse.Status(code: status),
            Wire.object(["error": oauthError, "error_description": error]),
            headers: headers
        )
    }

    // MARK: - API handlers

    private struct TokenRequestBody: Decodable {
        var grant_type: String?
        var code: String?
        var refresh_token: String?
        var redirect_uri: String?
        var client_id: String?
        var client_secret: String?
    }

    private func token(_ request: Request) async -> Response {
        guard let buffer = try? await request.body.collect(upTo: 64 * 1024),
            let body = try? JSONDecoder().decode(TokenRequestBody.self, from: buffer)
        else {
            return Self.oauthError(400, "invalid_request", "body must be a JSON object")
        }
        let now = self.timeSource.now()
        let outcome: SimulatorState.TokenOutcome
        switch body.grant_type {
        case "authorization_code":
            outcome = self.state.withLock {
                $0.exchange(
                    code: body.code,
                    redirectURI: body.redirect_uri,
                    clientID: body.client_id,
                    clientSecret: body.client_secret,
                    now: now
                )
            }
        case "refresh_token":
            let (refreshed, drop) = self.state.withLock { state in
                let outcome = state.refresh(
                    refreshToken: body.refresh_token,
                    clientID: body.client_id,
                    clientSecret: body.client_secret,
                    now: now
                )
                guard case .issued = outcome else { return (outcome, false) }
                return (outcome, state.dropsRefreshAnswer())
            }
            if drop {
                // Rotated, but the answer never reaches the client: it times out (or gets a 503 much later).
                await self.hang(.milliseconds(self.faults().hangMs))
                return self.faultResponse(status: 503, error: "temporarily_unavailable", retryAfter: false)
            }
            outcome = refreshed
        case nil:
            return Self.oauthError(400, "invalid_request", "missing grant_type")
        case .some:
            return Self.oauthError(400, "unsupported_grant_type", "grant_type is not supported")
        }
        switch outcome {
        case .oauthError(let status, let error, let description):
            return Self.oauthError(status, error, description)
        case .issued(let access, let refresh, let userID, let includeIDToken):
            var json = "{\"access_token\":\"\(access)\","
            if body.grant_type != "authorization_code" || !self.faults().exchangeWithoutRefreshToken {
                json += "\"refresh_token\":\"\(refresh)\","
            }
            if includeIDToken {
                json += "\"id_token\":"
                Wire.appendJSONString(self.idToken(userID: userID), to: &json)
                json += ","
            }
            let ttl = self.configuration.tokenTTL.components.seconds
            json += "\"expires_in\":\(ttl),\"token_type\":\"Bearer\","
            json += "\"scope\":\"openid profile email offline_access\"}"
            return Self.json(.ok, json, headers: [.cacheControl: "no-store"])
        }
    }

    private struct ContextRequestBody: Decodable {
        var query: String
        var k: Int?
    }

    private func context(_ request: Request, bearer: String?) async -> Response {
        let userID: String
        let now = self.timeSource.now()
        switch self.state.withLock({ $0.checkBearer(bearer, now: now) }) {
        case .invalid(let description):
            return Self.invalidToken(description, bearerPresent: bearer != nil)
        case .valid(let user):
            userID = user
        }
        guard let buffer = try? await request.body.collect(upTo: 64 * 1024),
            let body = try? JSONDecoder().decode(ContextRequestBody.self, from: buffer)
        else {
            return Self.oauthError(400, "invalid_request", "body must be {\"query\": string, \"k\": number}")
        }
        var content = Self.expectedContent(userID: userID, query: body.query)
        if let size = self.faults().answerBytes[userID], size > content.utf8.count {
            content += String(repeating: "x", count: size - content.utf8.count)
        }
        return Self.json(.ok, Wire.object(["content": content]))
    }

    private func summary(bearer: String?) -> Response {
        let now = self.timeSource.now()
        let checked = self.state.withLock { state -> (SimulatorState.BearerOutcome, Bool) in
            let outcome = state.checkBearer(bearer, now: now)
            if case .valid(let userID) = outcome { return (outcome, state.newUsers.contains(userID)) }
            return (outcome, false)
        }
        switch checked {
        case (.invalid(let description), _):
            return Self.invalidToken(description, bearerPresent: bearer != nil)
        case (.valid, true):
            return Self.json(.ok, Wire.object(["summary": nil]))
        case (.valid(let userID), false):
            return Self.json(.ok, Wire.object(["summary": Self.expectedSummary(userID: userID)]))
        }
    }

    /// An unsigned id token (`alg: none`) naming the user, shaped like a JWT.
    private func idToken(userID: String) -> String {
        func base64URL(_ text: String) -> String {
            Data(text.utf8).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let header = base64URL(Wire.object(["alg": "none", "typ": "JWT"]))
        let payload = base64URL(Wire.object(["iss": "mio-simulator", "sub": userID, "aud": self.configuration.clientID]))
        return "\(header).\(payload)."
    }

    // MARK: - Helpers

    static func bearerToken(_ request: Request) -> String? {
        guard let value = request.headers[.authorization] else { return nil }
        guard value.count > 7, value.prefix(7).lowercased() == "bearer " else { return "" }
        return String(value.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    private struct UserBody: Decodable {
        var userId: String
    }

    private static func userID(_ request: Request) async -> String? {
        guard let buffer = try? await request.body.collect(upTo: 64 * 1024),
            let body = try? JSONDecoder().decode(UserBody.self, from: buffer),
            !body.userId.isEmpty
        else { return nil }
        return body.userId
    }

    private static var badControlRequest: Response {
        json(.badRequest, Wire.object(["error": "invalid_request", "message": "body must be {\"userId\": string}"]))
    }

    private static func invalidToken(_ description: String, bearerPresent: Bool) -> Response {
        // RFC 6750 section 3: no error code when the request carried no token at all.
        let challenge = bearerPresent
            ? "Bearer realm=\"mio\", error=\"invalid_token\", error_description=\"\(description)\""
            : "Bearer realm=\"mio\""
        return json(
            .unauthorized,
            Wire.object(["error": "invalid_token", "error_description": description]),
            headers: [.wwwAuthenticate: challenge]
        )
    }

    private static func oauthError(_ status: Int, _ error: String, _ description: String) -> Response {
        json(
            HTTPResponse.Status(code: status),
            Wire.object(["error": error, "error_description": description]),
            headers: [.cacheControl: "no-store"]
        )
    }

    static func json(_ status: HTTPResponse.Status, _ body: String, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    private static func encoded(_ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else {
            return json(.internalServerError, Wire.object(["error": "server_error"]))
        }
        return json(.ok, String(decoding: data, as: UTF8.self))
    }
}
