import Mio
import MioTokens
import Pipeline
import PipelineMioBridge
import Testing

/// What each of Mio's and the token store's errors means for a job, as the bridge maps it into the pipeline's
/// classification (the handler's tests check the results these lead to).
@Suite struct MioFailuresTests {
    static let endpoint = "POST /v1/context"

    @Test(arguments: [
        (MioError(code: .unauthorized, endpoint: endpoint, status: 401, wwwAuthenticateError: "invalid_token"),
         JobFailure(.refreshAndRetryOnce, status: .reauthRequired, code: "unauthorized",
                    message: "Mio answered 401 to POST /v1/context (invalid_token)")),
        (MioError(code: .rateLimited, endpoint: endpoint, status: 429, retryAfter: .seconds(3)),
         JobFailure(.retry(after: .seconds(3), cause: .rateLimited), status: .rateLimited, code: "rate_limited",
                    message: "Mio answered 429 to POST /v1/context")),
        (MioError(code: .serverError, endpoint: endpoint, status: 503),
         JobFailure(.retry(after: nil, cause: .serverError), status: .upstreamUnavailable, code: "server_error",
                    message: "Mio answered 503 to POST /v1/context")),
        (MioError(code: .timeout, endpoint: endpoint),
         JobFailure(.retry(after: nil, cause: .timeout), status: .upstreamUnavailable, code: "timeout",
                    message: "POST /v1/context: timeout")),
        (MioError(code: .transportFailure, endpoint: endpoint),
         JobFailure(.retry(after: nil, cause: .transport), status: .upstreamUnavailable, code: "transport_failure",
                    message: "POST /v1/context: transport_failure")),
        (MioError(code: .cancelled, endpoint: endpoint),
         JobFailure(.retry(after: nil, cause: .transport), status: .upstreamUnavailable, code: "cancelled",
                    message: "POST /v1/context: cancelled")),
        (MioError(code: .malformedResponse, endpoint: endpoint, status: 200),
         JobFailure(.finish, status: .upstreamUnavailable, code: "malformed_response",
                    message: "Mio answered 200 to POST /v1/context")),
        (MioError(code: .clientError, endpoint: endpoint, status: 408),
         JobFailure(.retry(after: nil, cause: .transport), status: .upstreamUnavailable, code: "client_error",
                    message: "Mio answered 408 to POST /v1/context")),
        (MioError(code: .forbidden, endpoint: endpoint, status: 403),
         JobFailure(.finish, status: .rejected, code: "forbidden", message: "Mio answered 403 to POST /v1/context")),
    ])
    func mioErrorsAreClassified(error: MioError, expected: JobFailure) {
        #expect(JobFailure(error) == expected)
        #expect(MioFailures.classified(error) as? JobFailure == expected)
    }

    @Test func aRefusedTokenBehindARefreshEndsTheJob() {
        let refused = MioError(code: .unauthorized, endpoint: "POST /v1/auth/oauth2/token", status: 401)
        let failure = JobFailure(TokenError(.refreshFailed, userID: "u", underlying: refused, isRetriable: false))
        #expect(failure.action == .finish)
        #expect(failure.status == .reauthRequired)
        #expect(
            failure.message
                == "getting the user's access token failed (refresh_failed): Mio answered 401 to POST /v1/auth/oauth2/token"
        )
    }

    @Test func tokenErrorsWithoutAMioCauseAreClassifiedByRetriability() {
        let lock = JobFailure(TokenError(.lockTimeout, userID: "u"))
        #expect(lock.action == .retry(after: nil, cause: .tokenStore))
        #expect(lock.status == .upstreamUnavailable)
        let keys = JobFailure(TokenError(.keyConfiguration, userID: "u", isRetriable: false))
        // The deployment's fault, not the job's: the line stops (a handler without a health ends the job).
        guard case .stopTheLine(let reason) = keys.action else {
            Issue.record("a missing key must stop the line, not \(keys.action)")
            return
        }
        #expect(reason.contains("MIOCTX_TOKEN_KEYS"))
        #expect(keys.status == .upstreamUnavailable)
        #expect(keys.code == "key_configuration")
    }

    @Test func otherErrorsPassThroughUnchanged() {
        struct Other: Error {}
        #expect(MioFailures.classified(Other()) is Other)
        #expect(MioFailures.classified(CancellationError()) is CancellationError)
    }
}
