import Foundation
import GRDB
import MioTokens
import PostgresNIO
import Testing

@Suite struct EncryptionTests {
    static let keyA = "ka:" + Data(repeating: 0xA1, count: 32).base64EncodedString()
    static let keyB = "kb:" + Data(repeating: 0xB2, count: 32).base64EncodedString()

    /// The SQLite file and its -wal companion hold ciphertexts only.
    @Test func sqliteFilesContainNoPlaintextToken() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let store = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyA))
            for index in 0..<20 { try await store.upsert(userID: "user-\(index)", tokens: grant("SECRETVALUE\(index)")) }
            try await store.withExclusiveLock(userID: "user-0") { _ in
                LockedUpdate.store(grant("SECRETVALUE-locked"), returning: ())
            }
            #expect(try await store.get(userID: "user-3")?.refreshToken == "rtk_plain_SECRETVALUE3")
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            #expect(files.contains("tokens.sqlite-wal"))
            var scanned = 0
            for file in files {
                let bytes = try Data(contentsOf: directory.appendingPathComponent(file))
                scanned += bytes.count
                for needle in ["SECRETVALUE", "atk_plain", "rtk_plain", "idt_plain"] {
                    #expect(bytes.range(of: Data(needle.utf8)) == nil, "\(needle) found in \(file)")
                }
            }
            #expect(scanned > 0)
        }
    }

    @Test func sqliteCiphertextMovedToAnotherUserFailsToDecrypt() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let store = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyA))
            try await store.upsert(userID: "alice", tokens: grant("alice"))
            try await store.upsert(userID: "bob", tokens: grant("bob"))
            let queue = try DatabaseQueue(path: path)
            try await queue.write { db in
                let alice = try String.fetchOne(db, sql: "SELECT access_token FROM mioctx_tokens WHERE user_id = 'alice'")
                try db.execute(sql: "UPDATE mioctx_tokens SET access_token = ? WHERE user_id = 'bob'", arguments: [alice])
                // Within one row, the refresh ciphertext put in the access column fails too.
                try db.execute(sql: "UPDATE mioctx_tokens SET access_token = refresh_token WHERE user_id = 'alice'")
            }
            try queue.close()
            for user in ["alice", "bob"] {
                let error = await #expect(throws: TokenError.self) { try await store.get(userID: user) }
                #expect(error?.code == .decryptionFailed)
                #expect(error.map { !"\($0)".contains("plain") } ?? false)
            }
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresRowsContainNoPlaintextAndMovedCiphertextsFail() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        let keyring = try TokenKeyring(parsing: Self.keyA)
        try await PostgresTokenStore.withStore(url: url, keyring: keyring) { store in
            try await store.upsert(userID: "alice", tokens: grant("SECRETVALUE-alice"))
            try await store.upsert(userID: "bob", tokens: grant("SECRETVALUE-bob"))
            try await TestPostgres.withClient(url: url) { client in
                let rows = try await client.query("SELECT mioctx_tokens::text FROM mioctx_tokens")
                var texts: [String] = []
                for try await text in rows.decode(String.self) { texts.append(text) }
                #expect(texts.count == 2)
                for text in texts {
                    #expect(!text.contains("SECRETVALUE") && !text.contains("plain"))
                    #expect(text.contains("v1:ka:"))
                }
                try await client.query(
                    """
                    UPDATE mioctx_tokens SET refresh_token =
                        (SELECT refresh_token FROM mioctx_tokens WHERE user_id = 'alice') WHERE user_id = 'bob'
                    """
                )
            }
            let error = await #expect(throws: TokenError.self) { try await store.get(userID: "bob") }
            #expect(error?.code == .decryptionFailed)
            #expect(try await store.get(userID: "alice")?.refreshToken == "rtk_plain_SECRETVALUE-alice")
        }
    }

    @Test func sqliteRekeyReencryptsEveryRowAndTheOldKeyIsNoLongerNeeded() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("tokens.sqlite").path
            let old = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyA))
            for index in 0..<450 { try await old.upsert(userID: "user-\(index)", tokens: grant("\(index)")) }
            try await old.markReauthRequired(userID: "user-7")
            let rotated = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: "\(Self.keyB),\(Self.keyA)"))
            #expect(try await rotated.rekey() == 450)
            #expect(try await rotated.rekey() == 0)
            let newOnly = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyB))
            let all = try await newOnly.all()
            #expect(all.count == 450)
            #expect(try await newOnly.get(userID: "user-42")?.idToken == "idt_plain_42")
            #expect(try await newOnly.get(userID: "user-7")?.status == .reauthRequired)
            let oldOnly = try SQLiteTokenStore(path: path, keyring: try TokenKeyring(parsing: Self.keyA))
            let error = await #expect(throws: TokenError.self) { try await oldOnly.get(userID: "user-1") }
            #expect(error?.code == .keyConfiguration)
        }
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage))
    func postgresRekeyReencryptsEveryRowAndTheOldKeyIsNoLongerNeeded() async throws {
        let url = try await TestPostgres.freshSchemaURL()
        try await PostgresTokenStore.withStore(url: url, keyring: try TokenKeyring(parsing: Self.keyA)) { store in
            for index in 0..<250 { try await store.upsert(userID: "user-\(index)", tokens: grant("\(index)")) }
        }
        let both = try TokenKeyring(parsing: "\(Self.keyB),\(Self.keyA)")
        #expect(try await PostgresTokenStore.withStore(url: url, keyring: both) { try await $0.rekey() } == 250)
        try await PostgresTokenStore.withStore(url: url, keyring: try TokenKeyring(parsing: Self.keyB)) { store async throws in
            #expect(try await store.all().count == 250)
            #expect(try await store.get(userID: "user-9")?.accessToken == "atk_plain_9")
        }
    }

    @Test func keyringRefusesMissingOrMalformedKeysAndSaysHowToCreateOne() throws {
        let missing = #expect(throws: TokenError.self) { try TokenKeyring.load(environment: [:]) }
        #expect(missing?.code == .keyConfiguration)
        #expect("\(missing!)".contains("mioctx tokens keygen"))
        for bad in ["", "nokey", "k1:notbase64!", "k1:" + Data(count: 16).base64EncodedString(), "\(Self.keyA),\(Self.keyA)"] {
            #expect(throws: TokenError.self) { try TokenKeyring(parsing: bad) }
        }
        let loaded = try TokenKeyring.load(environment: ["MIOCTX_TOKEN_KEYS": "\(Self.keyB),\(Self.keyA)"])
        #expect(loaded.keyIDs == ["kb", "ka"])
        #expect(!"\(loaded)".contains(Data(repeating: 0xB2, count: 32).base64EncodedString()))
        let generated = try TokenKeyring(parsing: TokenKeyring.generateEntry())
        #expect(generated.primaryKeyID.hasPrefix("k"))
        #expect(TokenKeyring.ephemeral().primaryKeyID.hasPrefix("ephemeral-"))
    }

    @Test func keyringLoadsAKeyFile() async throws {
        try await withTemporaryDirectory { directory in
            let file = directory.appendingPathComponent("keys")
            try "# rotated\n\(Self.keyB)\n\(Self.keyA)\n".write(to: file, atomically: true, encoding: .utf8)
            let keyring = try TokenKeyring.load(environment: ["MIOCTX_TOKEN_KEY_FILE": file.path])
            #expect(keyring.keyIDs == ["kb", "ka"])
        }
    }
}
