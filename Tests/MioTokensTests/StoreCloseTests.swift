import Foundation
import Logging
import MioTokens
import ServiceLifecycle
import Testing

/// Closing a store is awaited and idempotent, and a closed store refuses work with a store failure.
@Suite struct StoreCloseTests {
    @Test func sqliteStoreClosesOnceAndRefusesLaterCalls() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let store = try SQLiteTokenStore(path: path, keyring: .ephemeral())
            try await store.upsert(userID: "u1", tokens: grant("1"))
            try await store.close()
            try await store.close()
            let error = await #expect(throws: TokenError.self) { try await store.get(userID: "u1") }
            #expect(error?.code == .storeFailure)
        }
    }

    @Test func sqliteStoreAsAServiceClosesAtGracefulShutdown() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let store = try SQLiteTokenStore(path: path, keyring: .ephemeral())
            try await store.upsert(userID: "u1", tokens: grant("1"))
            let group = ServiceGroup(
                configuration: .init(services: [store], gracefulShutdownSignals: [], logger: Sim.quietLogger)
            )
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                #expect(try await store.get(userID: "u1")?.accessToken == "atk_plain_1")
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            await #expect(throws: TokenError.self) { try await store.get(userID: "u1") }
        }
    }

    @Test func closingAStoreOpenedByLocationKeepsItsData() async throws {
        try await withTemporaryDirectory { directory in
            let location = TokenStoreLocation.sqlite(path: directory.appendingPathComponent("tokens.sqlite").path)
            let keyring = TokenKeyring.ephemeral()
            _ = try await location.withStore(keyring: keyring) { try await $0.upsert(userID: "u1", tokens: grant("1")) }
            let record = try await location.withStore(keyring: keyring) { try await $0.get(userID: "u1") }
            #expect(record?.accessToken == "atk_plain_1")
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresStoreCloseEndsItsPoolOnceAndRefusesLaterQueries() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        let store = try PostgresTokenStore(url: url, keyring: .ephemeral(), logger: Sim.quietLogger)
        let running = Task { await store.run() }
        try await store.migrate()
        try await store.upsert(userID: "u1", tokens: grant("1"))
        await store.close()
        await running.value
        await store.close()
        // A second run after close returns at once instead of running the pool again.
        await store.run()
        await #expect(throws: TokenError.self) { try await store.get(userID: "u1") }
    }

    @Test func postgresStoreThatNeverRanClosesAtOnce() async throws {
        let store = try PostgresTokenStore(
            url: "postgres://user@127.0.0.1:9/db?sslmode=disable", keyring: .ephemeral(), logger: Sim.quietLogger
        )
        await store.close()
        await store.run()
    }
}
