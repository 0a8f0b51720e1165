public import Foundation

extension MioClient {
    /// How to reach Mio and as which OAuth application. The names follow the official SDK.
    ///
    /// `description`, `debugDescription` and the reflection mirror redact the client secret.
    public struct Configuration: Sendable {
        /// The default API base URL, as in the official SDK.
        public static let defaultAPIURL = "https://api.mio.xyz"
        /// The default dashboard URL, where the consent page lives.
        public static let defaultDashboardURL = "https://app.mio.xyz"
        /// The default request timeout: 30 seconds.
        public static let defaultRequestTimeout: Duration = .seconds(30)
        /// The default connection pool size per host: 256, one connection per job a worker has in flight by
        /// default (fewer would queue requests inside the pool, where their timeouts run while they wait).
        public static let defaultMaxConnections = 256
        /// The scope the SDK requests: "openid profile email offline_access".
        public static let scope = "openid profile email offline_access"

        /// The OAuth application id from the Mio dashboard (`MIO_CLIENT_ID`).
        public var clientID: String
        /// The confidential client secret (`MIO_CLIENT_SECRET`). Never logged or printed.
        public var clientSecret: String
        /// The redirect URL registered in Mio (`MIO_REDIRECT_URL`). Must match exactly, or the code exchange
        /// fails with `invalid_grant`.
        public var redirectURL: String
        /// The API base URL (`MIO_API_URL`), default `https://api.mio.xyz`. A trailing slash is ignored.
        public var apiURL: String
        /// The dashboard URL (`MIO_DASHBOARD_URL`), default `https://app.mio.xyz`.
        public var dashboardURL: String
        /// The longest a request may take until its response head arrives, and the longest pause while its
        /// body is read. Default 30 seconds.
        public var requestTimeout: Duration
        /// The connection pool size per host (HTTP/1.1 connections), default 256.
        public var maxConnections: Int

        /// Creates a configuration.
        /// - Parameters:
        ///   - clientID: The OAuth application id.
        ///   - clientSecret: The client secret.
        ///   - redirectURL: The redirect URL registered in Mio.
        ///   - apiURL: The API base URL, default `https://api.mio.xyz`.
        ///   - dashboardURL: The dashboard URL, default `https://app.mio.xyz`.
        ///   - requestTimeout: The request timeout, default 30 seconds.
        ///   - maxConnections: The connection pool size per host, default 256.
        public init(
            clientID: String,
            clientSecret: String,
            redirectURL: String,
            apiURL: String = Configuration.defaultAPIURL,
            dashboardURL: String = Configuration.defaultDashboardURL,
            requestTimeout: Duration = Configuration.defaultRequestTimeout,
            maxConnections: Int = Configuration.defaultMaxConnections
        ) {
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.redirectURL = redirectURL
            self.apiURL = apiURL
            self.dashboardURL = dashboardURL
            self.requestTimeout = requestTimeout
            self.maxConnections = maxConnections
        }

        /// Reads the SDK's environment variables: `MIO_CLIENT_ID`, `MIO_CLIENT_SECRET`, `MIO_REDIRECT_URL`
        /// (required), `MIO_API_URL` and `MIO_DASHBOARD_URL` (optional, with the SDK's defaults).
        /// - Parameter environment: The environment to read, by default the process's.
        /// - Returns: The configuration, with the default timeout and pool size.
        /// - Throws: `MioConfigurationError` naming every required variable that is missing or empty.
        public static func fromEnvironment(
            _ environment: [String: String] = ProcessInfo.processInfo.environment
        ) throws -> Configuration {
            func value(_ name: String) -> String? {
                guard let value = environment[name], !value.isEmpty else { return nil }
                return value
            }
            let required = ["MIO_CLIENT_ID", "MIO_CLIENT_SECRET", "MIO_REDIRECT_URL"]
            let missing = required.filter { value($0) == nil }
            guard missing.isEmpty else {
                throw MioConfigurationError(missingVariables: missing)
            }
            return Configuration(
                clientID: value("MIO_CLIENT_ID")!,
                clientSecret: value("MIO_CLIENT_SECRET")!,
                redirectURL: value("MIO_REDIRECT_URL")!,
                apiURL: value("MIO_API_URL") ?? defaultAPIURL,
                dashboardURL: value("MIO_DASHBOARD_URL") ?? defaultDashboardURL
            )
        }

        /// The consent page a user opens to connect this application:
        /// `{dashboard}/connect?client_id=..&redirect_uri=..&scope=..`, as the SDK builds it.
        /// - Parameter state: An optional OAuth `state` value to append.
        /// - Returns: The URL, or nil if `dashboardURL` is not a valid URL.
        public func connectURL(state: String? = nil) -> URL? {
            let base = self.dashboardURL.hasSuffix("/") ? String(self.dashboardURL.dropLast()) : self.dashboardURL
            guard var components = URLComponents(string: base + "/connect") else { return nil }
            var items = [
                URLQueryItem(name: "client_id", value: self.clientID),
                URLQueryItem(name: "redirect_uri", value: self.redirectURL),
                URLQueryItem(name: "scope", value: Self.scope),
            ]
            if let state { items.append(URLQueryItem(name: "state", value: state)) }
            components.queryItems = items
            return components.url
        }
    }
}

extension MioClient.Configuration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// A description with the client secret redacted.
    public var description: String {
        "MioClient.Configuration(clientID: \(self.clientID), clientSecret: <redacted>, "
            + "redirectURL: \(self.redirectURL), apiURL: \(self.apiURL), dashboardURL: \(self.dashboardURL), "
            + "requestTimeout: \(self.requestTimeout), maxConnections: \(self.maxConnections))"
    }

    /// Same as `description`: the secret is redacted.
    public var debugDescription: String { self.description }

    /// A mirror without the secret, so `dump` shows none.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "clientID": self.clientID,
                "clientSecret": "<redacted>",
                "redirectURL": self.redirectURL,
                "apiURL": self.apiURL,
                "dashboardURL": self.dashboardURL,
                "requestTimeout": self.requestTimeout,
                "maxConnections": self.maxConnections,
            ],
            displayStyle: .struct
        )
    }
}

/// A Mio configuration that cannot be used, naming what is wrong.
public struct MioConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The required environment variables that were missing or empty.
    public var missingVariables: [String]

    /// Creates the error.
    public init(missingVariables: [String]) {
        self.missingVariables = missingVariables
    }

    /// For example: "missing required environment variables: MIO_CLIENT_SECRET, MIO_REDIRECT_URL".
    public var description: String {
        let noun = self.missingVariables.count == 1 ? "variable" : "variables"
        return "missing required environment \(noun): \(self.missingVariables.joined(separator: ", "))"
    }
}
