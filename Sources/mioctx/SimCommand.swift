import ArgumentParser
import Foundation
import Logging
import MioSimulator
import ServiceLifecycle
import Settings

/// `mioctx sim`: runs the Mio simulator on loopback until SIGTERM or SIGINT.
///
/// The first line of standard output is the base URL (such as `http://127.0.0.1:54321`), so a script can start
/// it with `--port 0` and read where it listens.
struct SimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run a Mio API simulator with fault injection on loopback.",
        discussion: """
            Prints its base URL as the first line of standard output and serves until SIGTERM or SIGINT.
            Client credentials and redirect URL come from the flags, else from the settings mio.clientID, \
            mio.clientSecret and mio.redirectURL (MIO_CLIENT_ID, MIO_CLIENT_SECRET, MIO_REDIRECT_URL), else from \
            built-in demo values. Its log level is the settings' log.level (--log-level, MIOCTX_LOG_LEVEL).
            Faults can be changed at run time: POST /sim/faults with a JSON object of the settings.
            """
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on; 0 picks a free port.")
    var port = 0

    @Option(name: .customLong("client-id"), help: "Registered client id (default: MIO_CLIENT_ID or sim-client).")
    var clientID: String?

    @Option(help: "Registered client secret (default: MIO_CLIENT_SECRET or sim-secret).")
    var clientSecret: String?

    @Option(name: .customLong("redirect-url"), help: "Registered redirect URL (default: MIO_REDIRECT_URL).")
    var redirectURL: String?

    @Option(help: "Access token lifetime in seconds.")
    var tokenTTL: Double = 3600

    @Option(help: "Authorization code lifetime in seconds.")
    var codeTTL: Double = 60

    @Option(help: "Refresh token lifetime in seconds.")
    var refreshTokenTTL: Double = 30 * 24 * 3600

    @Option(help: "Answer to a client credential mismatch: invalid_grant (Mio's matrix) or invalid_client (RFC 6749).")
    var clientAuthError = "invalid_grant"

    @Option(help: "Seed for the random faults.")
    var seed: UInt64?

    @Option(help: "Fixed latency added to every API request, in milliseconds.")
    var latencyMs = 0

    @Option(help: "Random extra latency, up to this many milliseconds.")
    var jitterMs = 0

    @Option(name: .customLong("rate-500"), help: "Fraction of API requests answered 500.")
    var rate500 = 0.0

    @Option(name: .customLong("rate-503"), help: "Fraction of API requests answered 503 with Retry-After.")
    var rate503 = 0.0

    @Option(name: .customLong("rate-429"), help: "Fraction of API requests answered 429 with Retry-After.")
    var rate429 = 0.0

    @Option(help: "Fraction of API requests that hang.")
    var hangRate = 0.0

    @Option(help: "How long a hanging request hangs, in milliseconds.")
    var hangMs = 600_000

    @Option(help: "Retry-After value in seconds for 429 and 503.")
    var retryAfter = 1

    @Option(help: "Retry-After format: seconds or http-date.")
    var retryAfterFormat = "seconds"

    @Option(help: "Requests per second allowed per OAuth client; excess gets 429.")
    var rpsLimit: Double?

    @Option(help: "Most API requests in progress at once; excess gets 429.")
    var concurrencyLimit: Int?

    func run() async throws {
        let settings = try await CommandSettings.load(requiring: [])
        func setting(_ flag: String?, _ configured: String, _ fallback: String) -> String {
            if let flag { return flag }
            return configured.isEmpty ? fallback : configured
        }
        guard let authFailure = MioSimulator.Configuration.ClientAuthenticationFailure(rawValue: clientAuthError)
        else {
            throw ValidationError("--client-auth-error must be invalid_grant or invalid_client")
        }
        guard let format = MioSimulator.Faults.RetryAfterFormat(rawValue: retryAfterFormat) else {
            throw ValidationError("--retry-after-format must be seconds or http-date")
        }
        for (name, seconds) in [("--token-ttl", tokenTTL), ("--code-ttl", codeTTL),
                                ("--refresh-token-ttl", refreshTokenTTL)] where !(seconds > 0) {
            throw ValidationError("\(name) must be > 0")
        }
        let faults = MioSimulator.Faults(
            latencyMs: latencyMs,
            jitterMs: jitterMs,
            rate500: rate500,
            rate503: rate503,
            rate429: rate429,
            hangRate: hangRate,
            hangMs: hangMs,
            retryAfterSeconds: retryAfter,
            retryAfterFormat: format,
            requestsPerSecondPerClient: rpsLimit,
            maxConcurrentRequests: concurrencyLimit
        )
        let configuration = MioSimulator.Configuration(
            clientID: setting(clientID, settings[\.mio.clientID], "sim-client"),
            clientSecret: setting(clientSecret, settings[\.mio.clientSecret].revealedValue, "sim-secret"),
            redirectURL: setting(redirectURL, settings[\.mio.redirectURL], "http://127.0.0.1:8080/oauth/callback"),
            host: host,
            port: port,
            tokenTTL: .milliseconds(Int(tokenTTL * 1000)),
            codeTTL: .milliseconds(Int(codeTTL * 1000)),
            refreshTokenTTL: .milliseconds(Int(refreshTokenTTL * 1000)),
            clientAuthenticationFailure: authFailure,
            faults: faults,
            seed: seed
        )

        // Logs go to standard error: standard output carries only the base URL.
        var logger = Logger(label: "mio-simulator") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = LogSetup(settings).level
        let simulator = MioSimulator(configuration: configuration, logger: logger) { baseURL in
            FileHandle.standardOutput.write(Data((baseURL + "\n").utf8))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [simulator],
                gracefulShutdownSignals: MioSimulator.shutdownSignals,
                logger: logger
            )
        )
        try await group.run()
    }
}
