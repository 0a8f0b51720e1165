import Foundation
import Mio
import MioSimulator
import MioTokens
import Logging

enum Sim {
    static let clientID = "tokens-test-client"
    static let clientSecret = "tokens-test-secret"
    static let redirectURL = "http://127.0.0.1:9/oauth/callback"

    static func configuration(tokenTTL: Duration = .seconds(3600)) -> MioSimulator.Configuration {
        MioSimulator.Configuration(
            clientID: clientID, clientSecret: clientSecret, redirectURL: redirectURL, tokenTTL: tokenTTL
        )
    }

    static func mioConfiguration(baseURL: String) -> MioClient.Configuration {
        MioClient.Configuration(
            clientID: clientID, clientSecret: clientSecret, redirectURL: redirectURL, apiURL: baseURL,
            dashboardURL: baseURL
        )
    }

    /// The MIO_* variables a `mioctx` child process needs to reach the simulator.
    static func environment(baseURL: String) -> [String: String] {
        [
            "MIO_CLIENT_ID": clientID, "MIO_CLIENT_SECRET": clientSecret, "MIO_REDIRECT_URL": redirectURL,
            "MIO_API_URL": baseURL, "MIO_DASHBOARD_URL": baseURL,
        ]
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .error
        return logger
    }

    /// Connects `userID` as the consent flow would: a code from the simulator, exchanged and stored.
    @discardableResult
    static func connect(
        _ userID: String, simulator: MioSimulator, mio: MioClient, store: any TokenStore
    ) async throws -> TokenRecord {
        let response = try await mio.exchangeCodeForTokens(code: simulator.authorize(userID: userID))
        return try await store.upsert(userID: userID, tokens: TokenGrant(response: response, receivedAt: Date()))
    }
}
