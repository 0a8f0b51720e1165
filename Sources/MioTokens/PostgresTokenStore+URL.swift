#if PostgreSQL
import Foundation
import NIOSSL
import PostgresNIO

extension PostgresTokenStore {
    /// Parses a `postgres://` (or `postgresql://`) URL into a client configuration.
    static func clientConfiguration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty,
            let user = components.user, !user.isEmpty
        else {
            throw TokenError(
                .invalidInput,
                detail: "not a PostgreSQL URL of the form postgres://user:password@host:port/database"
            )
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let tls: PostgresClient.Configuration.TLS
        switch try tlsMode(host: host, queryItems: components.queryItems ?? []) {
        case .disable: tls = .disable
        case .prefer(let configuration): tls = .prefer(configuration)
        case .require(let configuration): tls = .require(configuration)
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432,
            username: user.removingPercentEncoding ?? user,
            password: components.password.map { $0.removingPercentEncoding ?? $0 },
            database: database.isEmpty ? nil : database, tls: tls
        )
        if let searchPath = components.queryItems?.first(where: { $0.name == "search_path" })?.value {
            configuration.options.additionalStartupParameters.append(("search_path", searchPath))
        }
        return configuration
    }

    /// How the client uses TLS (PostgresNIO's `TLS` does not show which it is).
    enum TLSMode {
        case disable
        case prefer(TLSConfiguration)
        case require(TLSConfiguration)
    }

    /// TLS as the URL's `sslmode` and `sslrootcert` say (libpq's names). Without `sslmode`, a server on a loopback
    /// address may answer without TLS (`prefer`); any other requires TLS with the certificate verified against the
    /// system's roots, or the `sslrootcert` file (managed PostgreSQL often has its own CA). `disable` is written out.
    static func tlsMode(host: String, queryItems: [URLQueryItem]) throws -> TLSMode {
        func item(_ name: String) -> String? { queryItems.first(where: { $0.name == name })?.value }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let rootCertificate = item("sslrootcert"), !rootCertificate.isEmpty {
            guard FileManager.default.isReadableFile(atPath: rootCertificate) else {
                throw TokenError(.invalidInput, detail: "sslrootcert \(rootCertificate) is not a readable file")
            }
            tls.trustRoots = .file(rootCertificate)
        }
        switch item("sslmode") ?? (isLoopback(host: host) ? "prefer" : "require") {
        case "disable": return .disable
        case "prefer", "allow": return .prefer(tls)
        case "require", "verify-ca", "verify-full": return .require(tls)
        case let other:
            throw TokenError(
                .invalidInput, detail: "unknown sslmode \(other) (disable, prefer, require, verify-ca or verify-full)"
            )
        }
    }

    /// Whether `host` is a loopback name or address (where traffic never leaves the machine).
    static func isLoopback(host: String) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
#endif
