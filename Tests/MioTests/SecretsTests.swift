import Foundation
import Logging
@testable import Mio
import MioSimulator
import MioctxTestSupport
import Testing

@Suite("Secrets stay out of errors and logs")
struct SecretsTests {
    @Test func tokensCodesAndSecretNeverAppearInErrorsOrLogLines() async throws {
        let logs = RecordingLogHandler.Store()
        let simulator = MioSimulator.Configuration(tokenTTL: .seconds(1))
        try await withHarness(simulator: simulator, logs: logs) { harness in
            var secrets = [simulatorSecret]
            var errors: [MioError] = []
            let client = harness.client
            func record(_ error: MioError?) {
                if let error { errors.append(error) }
            }

            let code = try await harness.control.authorize("victim")
            secrets.append(code)
            let tokens = try await client.exchangeCodeForTokens(code: code)
            secrets += [tokens.accessToken, tokens.refreshToken]
            record(await mioError { () async throws(MioError) in try await client.exchangeCodeForTokens(code: code) })
            let rotated = try await client.refreshTokens(refreshToken: tokens.refreshToken)
            secrets += [rotated.accessToken, rotated.refreshToken]
            record(await mioError { () async throws(MioError) in
                try await client.refreshTokens(refreshToken: tokens.refreshToken)
            })
            record(await mioError { () async throws(MioError) in
                try await client.getContext(query: "q", accessToken: rotated.accessToken)
            })
            record(await mioError { () async throws(MioError) in
                try await client.getContextSummary(accessToken: tokens.accessToken)
            })
            let wrongSecret = harness.otherClient { $0.clientSecret = "another-secret-value" }
            secrets.append("another-secret-value")
            let code2 = try await harness.control.authorize("victim")
            secrets.append(code2)
            record(await mioError { () async throws(MioError) in try await wrongSecret.exchangeCodeForTokens(code: code2) })
            try await wrongSecret.shutdown()

            try await harness.control.setFaults(#"{"rate429": 1, "retryAfterFormat": "http-date"}"#)
            record(await mioError { () async throws(MioError) in
                try await client.getContext(query: "q", accessToken: "atk_secret_looking_value")
            })
            secrets.append("atk_secret_looking_value")
            try await harness.control.setFaults(#"{"rate429": 0, "hangRate": 1}"#)
            // Only the hanging request gets a short timeout, so that a busy machine cannot time out the others.
            let impatient = harness.otherClient { $0.requestTimeout = .seconds(1) }
            record(await mioError { () async throws(MioError) in
                try await impatient.refreshTokens(refreshToken: "rtk_hanging_secret")
            })
            try await impatient.shutdown()
            secrets.append("rtk_hanging_secret")

            #expect(errors.count == 7)
            let texts = errors.flatMap { error in
                [
                    "\(error)", String(reflecting: error), error.localizedDescription,
                    { var out = ""; dump(error, to: &out); return out }(),
                ]
            }
            for secret in secrets {
                for text in texts {
                    #expect(!text.contains(secret), "secret found in error: \(text)")
                }
                for line in logs.all {
                    #expect(!line.contains(secret), "secret found in log line: \(line)")
                }
            }
            #expect(!logs.all.isEmpty)
        }
    }

    @Test func serverEchoingASecretIsScrubbedFromTheError() {
        let text = MioClient.scrub("token rtk_abc is bad, secret s3cr3t too", secrets: ["rtk_abc", "s3cr3t", ""])
        #expect(text == "token <redacted> is bad, secret <redacted> too")
    }

    @Test func tokenResponseAndConfigurationRedactThemselves() {
        let tokens = MioTokenResponse(
            accessToken: "atk_visible?",
            refreshToken: "rtk_visible?",
            idToken: "eyJ_visible?",
            expiresIn: 60,
            tokenType: "Bearer",
            scope: "openid"
        )
        let configuration = MioClient.Configuration(clientID: "id", clientSecret: "very-secret", redirectURL: "r")
        var dumped = ""
        dump(tokens, to: &dumped)
        dump(configuration, to: &dumped)
        let texts = ["\(tokens)", String(reflecting: tokens), dumped, "\(configuration)",
                     String(reflecting: configuration)]
        for text in texts {
            for secret in ["atk_visible?", "rtk_visible?", "eyJ_visible?", "very-secret"] {
                #expect(!text.contains(secret), "\(text)")
            }
        }
        #expect("\(tokens)".contains("expiresIn: 60"))
    }
}

@Suite("Mio client configuration and parsing")
struct MioConfigurationTests {
    @Test func environmentConfigurationNamesEveryMissingVariable() {
        #expect {
            try MioClient.Configuration.fromEnvironment(["MIO_CLIENT_ID": "id", "MIO_REDIRECT_URL": ""])
        } throws: { error in
            let message = "\(error)"
            return message.contains("MIO_CLIENT_SECRET") && message.contains("MIO_REDIRECT_URL")
                && !message.contains("MIO_CLIENT_ID")
        }
    }

    @Test func clientFromEnvironmentRefusesToStartWithoutCredentials() {
        #expect(throws: MioConfigurationError.self) {
            _ = try MioClient(environment: ["MIO_API_URL": "http://127.0.0.1:1"])
        }
    }

    @Test func environmentConfigurationUsesTheSDKDefaults() throws {
        let configuration = try MioClient.Configuration.fromEnvironment([
            "MIO_CLIENT_ID": "id", "MIO_CLIENT_SECRET": "secret", "MIO_REDIRECT_URL": "https://app.example/cb",
        ])
        #expect(configuration.apiURL == "https://api.mio.xyz")
        #expect(configuration.dashboardURL == "https://app.mio.xyz")
        let custom = try MioClient.Configuration.fromEnvironment([
            "MIO_CLIENT_ID": "id", "MIO_CLIENT_SECRET": "secret", "MIO_REDIRECT_URL": "https://app.example/cb",
            "MIO_API_URL": "http://127.0.0.1:1",
        ])
        #expect(custom.apiURL == "http://127.0.0.1:1")
        let url = try #require(custom.connectURL())
        #expect(url.absoluteString.hasPrefix("https://app.mio.xyz/connect?client_id=id&redirect_uri="))
        #expect(url.absoluteString.contains("scope=openid%20profile%20email%20offline_access"))
    }

    @Test func retryAfterParsesSecondsAndAllThreeHTTPDateForms() {
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(MioClient.parseRetryAfter("120", now: now) == .seconds(120))
        #expect(MioClient.parseRetryAfter(" 0 ", now: now) == .zero)
        #expect(MioClient.parseRetryAfter("Sun, 06 Nov 1994 08:49:47 GMT", now: now) == .seconds(10))
        #expect(MioClient.parseRetryAfter("Sunday, 06-Nov-94 08:49:47 GMT", now: now) == .seconds(10))
        #expect(MioClient.parseRetryAfter("Sun Nov  6 08:49:47 1994", now: now) == .seconds(10))
        #expect(MioClient.parseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now: now) == .zero)
        #expect(MioClient.parseRetryAfter("soon", now: now) == nil)
        #expect(MioClient.parseRetryAfter("-5", now: now) == nil)
    }

    @Test func wwwAuthenticateErrorIsReadFromTheChallenge() {
        let header = #"Bearer realm="mio", error_description="expired \"now\"", error="invalid_token""#
        #expect(MioClient.authenticateParameter("error", in: header) == "invalid_token")
        #expect(MioClient.authenticateParameter("error_description", in: header) == #"expired "now""#)
        #expect(MioClient.authenticateParameter("error", in: "Bearer error=insufficient_scope") == "insufficient_scope")
        #expect(MioClient.authenticateParameter("error", in: #"Bearer realm="mio""#) == nil)
    }
}
