/// What a rekey did: the rows re-encrypted with the primary key, and those it could not decrypt (no key of the
/// keyring opens them, or they were altered), which keep their old encryption and are left for the operator.
public struct RekeyReport: Sendable, Equatable {
    /// The rows re-encrypted.
    public var rewritten: Int
    /// The user ids of the rows that could not be decrypted, in order.
    public var undecryptable: [String]

    /// Creates a report.
    /// - Parameters:
    ///   - rewritten: The rows re-encrypted.
    ///   - undecryptable: The user ids of the rows skipped.
    public init(rewritten: Int = 0, undecryptable: [String] = []) {
        self.rewritten = rewritten
        self.undecryptable = undecryptable
    }
}

/// One batch of a rekey.
struct RekeyBatch: Sendable {
    var rewritten = 0
    var undecryptable: [String] = []
    /// The last user id of the batch, where the next one starts; nil when the batch was empty.
    var last: String?
}

extension TokenStore {
    /// Re-encrypts every row not encrypted with the primary key; a row that cannot be decrypted is skipped and
    /// reported instead of stopping the rekey (the SQLite and PostgreSQL stores; others report only a count).
    /// - Returns: The report.
    public func rekeyReporting() async throws -> RekeyReport {
        switch self {
        case let store as SQLiteTokenStore: return try await store.rekeyReport()
        #if PostgreSQL
        case let store as PostgresTokenStore: return try await store.rekeyReport()
        #endif
        default: return RekeyReport(rewritten: try await rekey())
        }
    }
}
