import Foundation
import MioTokens
import Testing

/// A row no key opens does not stop a rekey: it is skipped and reported, every other row is re-encrypted.
@Suite struct RekeySkipTests {
    static let keyA = "ka:" + Data(repeating: 0xA1, count: 32).base64EncodedString()
    static let keyB = "kb:" + Data(repeating: 0xB2, count: 32).base64EncodedString()
    static let lostKey = "kc:" + Data(repeating: 0xC3, count: 32).base64EncodedString()

    @Test func sqliteRekeySkipsAndReportsARowItCannotDecrypt() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let old = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyA))
            for index in 0..<250 { try await old.upsert(userID: "user-\(index)", tokens: grant("\(index)")) }
            // One row written with a key the operator no longer has, in the middle of the first batch.
            let lost = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.lostKey))
            try await lost.upsert(userID: "user-100", tokens: grant("lost"))
            let rotated = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: "\(Self.keyB),\(Self.keyA)"))
            #expect(try await rotated.rekeyReporting() == RekeyReport(rewritten: 249, undecryptable: ["user-100"]))
            #expect(try await rotated.rekeyReporting() == RekeyReport(rewritten: 0, undecryptable: ["user-100"]))
            let newOnly = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyB))
            #expect(try await newOnly.get(userID: "user-249")?.accessToken == "atk_plain_249")
            for store in [old, lost, rotated, newOnly] { try await store.close() }
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresRekeySkipsAndReportsARowItCannotDecrypt() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        try await PostgresTokenStore.withStore(url: url, keyring: try TokenKeyring(parsing: Self.keyA)) { store in
            for index in 0..<250 { try await store.upsert(userID: "user-\(index)", tokens: grant("\(index)")) }
        }
        try await PostgresTokenStore.withStore(url: url, keyring: try TokenKeyring(parsing: Self.lostKey)) { store in
            _ = try await store.upsert(userID: "user-100", tokens: grant("lost"))
        }
        let both = try TokenKeyring(parsing: "\(Self.keyB),\(Self.keyA)")
        let reports = try await PostgresTokenStore.withStore(url: url, keyring: both) { store in
            [try await store.rekeyReporting(), try await store.rekeyReporting()]
        }
        #expect(reports == [
            RekeyReport(rewritten: 249, undecryptable: ["user-100"]), RekeyReport(rewritten: 0, undecryptable: ["user-100"]),
        ])
    }
}
