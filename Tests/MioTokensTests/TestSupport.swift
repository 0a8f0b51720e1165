import Coordination
import Foundation
import Logging
import MioTokens
import PostgresNIO
import Synchronization
import Testing

/// The PostgreSQL server of the tests: `MIOCTX_TEST_POSTGRES_URL` (from scripts/test-postgres.sh).
/// Without it, PostgreSQL tests are disabled with a message, except under CI (CI set), where they fail.
enum TestPostgres {
    static let environment = ProcessInfo.processInfo.environment
    static let url = environment["MIOCTX_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let isCI = environment["CI"].map { !$0.isEmpty && $0.lowercased() != "false" && $0 != "0" } ?? false

    /// Whether PostgreSQL tests run: with a URL, or under CI (where a missing URL is a failure).
    static let enabled = url != nil || isCI
    static let disabledMessage: Comment = """
        MIOCTX_TEST_POSTGRES_URL is not set: run `export MIOCTX_TEST_POSTGRES_URL=$(scripts/test-postgres.sh)` \
        to run the PostgreSQL tests (under CI, CI=true, they fail instead)
        """

    /// The URL, or a thrown failure under CI.
    static func requireURL() throws -> String {
        guard let url else {
            throw TestFailure("CI is set but MIOCTX_TEST_POSTGRES_URL is missing: run scripts/test-postgres.sh")
        }
        return url
    }

    /// Creates a fresh schema for one test and returns a URL that selects it, so tests running in parallel
    /// never see each other's rows.
    static func freshSchemaURL() async throws -> String {
        let url = try requireURL()
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        try await withClient(url: url) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
        }
        let separator = url.contains("?") ? "&" : "?"
        return url + separator + "search_path=\(schema)"
    }

    /// Runs `body` with a plain client on `url` (for raw SQL in tests).
    static func withClient<T: Sendable>(
        url: String, _ body: (PostgresClient) async throws -> T
    ) async throws -> T {
        guard let components = URLComponents(string: url), let host = components.host, let user = components.user
        else { throw TestFailure("bad URL") }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user, password: components.password,
            database: String(components.path.dropFirst()), tls: .disable
        )
        if let searchPath = components.queryItems?.first(where: { $0.name == "search_path" })?.value {
            configuration.options.additionalStartupParameters.append(("search_path", searchPath))
        }
        let client = PostgresClient(configuration: configuration, backgroundLogger: Logger(label: "test"))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            // Immediately, as PostgresTokenStore.withStore does: the pool counts as running before the first query.
            if #available(macOS 26, *) {
                group.addImmediateTask { await client.run() }
            } else {
                group.addTask { await client.run() }
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A directory that is deleted at the end of the test.
func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("mioctx-tokens-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

/// A peak-of-concurrency gauge shared by tasks.
final class Gauge: Sendable {
    private let state = Mutex((current: 0, peak: 0))
    func enter() { state.withLock { $0.current += 1; $0.peak = max($0.peak, $0.current) } }
    func leave() { state.withLock { $0.current -= 1 } }
    var peak: Int { state.withLock { $0.peak } }
}

/// Time that tests move by hand: a manual clock and the time source it drives, whose wall clock starts at `start`.
struct ManualTime: Sendable {
    let clock = ManualClock()
    let source: TimeSource

    init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        source = TimeSource(clock, start: start)
    }

    /// The wall clock's date.
    var now: Date { source.wallNow() }

    /// Moves both clocks forward.
    func advance(by duration: Duration) { clock.advance(by: duration) }
}

/// Which backend a parameterized store test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, sqlite, postgres
    var testDescription: String { rawValue }

    /// Runs `body` with a fresh, empty store of this kind.
    func withFreshStore<T: Sendable>(
        keyring: TokenKeyring = .ephemeral(),
        timeSource: TimeSource = .system,
        _ body: (any TokenStore) async throws -> T
    ) async throws -> T {
        switch self {
        case .memory:
            return try await body(InMemoryTokenStore(timeSource: timeSource))
        case .sqlite:
            return try await withTemporaryDirectory { directory in
                let store = try SQLiteTokenStore(
                    path: directory.appendingPathComponent("tokens.sqlite").path, keyring: keyring, timeSource: timeSource
                )
                return try await body(store)
            }
        case .postgres:
            let url = try await TestPostgres.freshSchemaURL()
            return try await PostgresTokenStore.withStore(url: url, keyring: keyring, timeSource: timeSource) { try await body($0) }
        }
    }
}

func grant(_ suffix: String, issuedAt: Date = Date(), lifetime: TimeInterval = 3600) -> TokenGrant {
    TokenGrant(
        accessToken: "atk_plain_\(suffix)", refreshToken: "rtk_plain_\(suffix)", idToken: "idt_plain_\(suffix)",
        expiresAt: issuedAt.addingTimeInterval(lifetime), issuedAt: issuedAt
    )
}
