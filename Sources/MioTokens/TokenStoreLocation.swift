public import Coordination
import Foundation
public import Logging

/// Where the tokens live, as written on the command line or in configuration:
/// `sqlite:PATH` (the embedded default, `sqlite:mioctx-tokens.sqlite`) or `postgres://user:pass@host:port/db`.
public enum TokenStoreLocation: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// An SQLite file.
    case sqlite(path: String)
    /// A PostgreSQL database URL (it may hold a password: ``description`` hides it).
    case postgres(url: String)

    /// The default location, `sqlite:mioctx-tokens.sqlite`.
    public static let `default` = TokenStoreLocation.sqlite(path: "mioctx-tokens.sqlite")

    /// The PostgreSQL store's default pool size (`tokens.postgresPoolSize`).
    public static let defaultPostgresPoolSize = 16

    /// Why a `postgres://` location cannot be used in a build without the PostgreSQL trait (the demo's).
    public static let noPostgreSQL = TokenError(
        .invalidInput,
        detail: "this build of mioctx has no PostgreSQL token store (`make demo` builds without it; `make build` or "
            + "`swift build` builds with it)"
    )

    /// Parses `sqlite:PATH`, `postgres://...` or `postgresql://...`.
    /// - Throws: ``TokenError/Code/invalidInput`` for anything else.
    public init(parsing text: String) throws {
        if text.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw TokenError(.invalidInput, detail: "sqlite: needs a path (sqlite:PATH)") }
            self = .sqlite(path: path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            #if PostgreSQL
            _ = try PostgresTokenStore.clientConfiguration(url: text)
            self = .postgres(url: text)
            #else
            throw Self.noPostgreSQL
            #endif
        } else {
            throw TokenError(
                .invalidInput, detail: "a token store is sqlite:PATH or postgres://user:password@host:port/database"
            )
        }
    }

    /// The location with any password replaced by `***`.
    public var description: String {
        switch self {
        case .sqlite(let path):
            return "sqlite:\(path)"
        case .postgres(let url):
            guard var components = URLComponents(string: url) else { return "postgres://***" }
            if components.password != nil { components.password = "***" }
            return components.string ?? "postgres://***"
        }
    }

    /// As ``description``: any password replaced by `***`.
    public var debugDescription: String { description }

    /// One child, the location as ``description`` shows it, so `dump` never reaches a password.
    public var customMirror: Mirror { Mirror(self, children: ["location": description], displayStyle: .enum) }

    /// Opens the store, runs `body` with it, and closes it (an SQLite file is closed, a PostgreSQL pool is shut
    /// down), whether `body` throws or not.
    /// - Parameters:
    ///   - keyring: The encryption keys (see ``TokenKeyring/load(environment:keyFile:)``).
    ///   - timeSource: The wall clock that stamps `updatedAt` (default: the system's).
    ///   - logger: For the PostgreSQL pool's background messages.
    ///   - body: Uses the store.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or a ``TokenError`` when the store cannot be opened or closed.
    public func withStore<T: Sendable>(
        keyring: TokenKeyring,
        timeSource: TimeSource = .system,
        logger: Logger = Logger(label: "mioctx.tokens"),
        _ body: (any TokenStore) async throws -> T
    ) async throws -> T {
        switch self {
        case .sqlite(let path):
            let store = try SQLiteTokenStore(path: path, keyring: keyring, timeSource: timeSource)
            let result: T
            do {
                result = try await body(store)
            } catch {
                try? await store.close()
                throw error
            }
            try await store.close()
            return result
        case .postgres(let url):
            #if PostgreSQL
            return try await PostgresTokenStore.withStore(
                url: url, keyring: keyring, timeSource: timeSource, logger: logger
            ) {
                try await body($0)
            }
            #else
            _ = url
            throw Self.noPostgreSQL
            #endif
        }
    }
}
