import Foundation
import Mio
import MioSimulator
import MioTokens
import Testing

/// Issue 16: the "uncertain" mark (a refresh sent whose answer never arrived) is kept in the store's row, so that
/// another replica that then gets `invalid_grant` for the same refresh token reports the distinct reason
/// `refresh_answer_lost`, not a plain `reauth_required`; and, with a reuse grace window at Mio, it recovers the user.
enum SharedUncertainMarkScenarios {
    static let users = (0..<20).map { "uncertain-\($0)" }

    /// Replica A's refreshes are sent and their answers dropped (Mio rotated); replica B, on its own store opened on
    /// the same database and with a client that waits, refreshes the same users next.
    static func anotherReplicaReportsALostAnswerDistinctly(_ kind: StoreKind, grace: Duration) async throws {
        // The simulator's clock is moved by hand (as in TokenLossTests): a dropped answer hangs until it moves.
        let time = ManualTime(start: Date())
        var configuration = Sim.configuration()
        configuration.refreshReuseGrace = grace
        try await MioSimulator.withSimulator(configuration, logger: Sim.quietLogger, timeSource: time.source) {
            simulator in
            var patient = Sim.mioConfiguration(baseURL: simulator.baseURL!)
            patient.maxConnections = 64
            var impatient = patient
            impatient.requestTimeout = .seconds(2)
            try await MioClient.withClient(configuration: patient) { mio in
                try await MioClient.withClient(configuration: impatient) { impatientMio in
                    try await RefreshStormScenarios.withTwoStores(kind) { one, two in
                        try await rounds(simulator, mio: mio, impatientMio: impatientMio, one, two, time: time, grace: grace)
                    }
                }
            }
        }
    }

    private static func rounds(
        _ simulator: MioSimulator, mio: MioClient, impatientMio: MioClient, _ one: any TokenStore,
        _ two: any TokenStore, time: ManualTime, grace: Duration
    ) async throws {
        var rejected: [String: String] = [:]
        for user in users {
            rejected[user] = try await Sim.connect(user, simulator: simulator, mio: mio, store: one).accessToken
        }
        var faults = simulator.faults()
        faults.refreshAnswerDropRate = 1
        faults.hangMs = 4_000
        try simulator.setFaults(faults)

        let a = TokenProvider(store: one, refresher: impatientMio, logger: Sim.quietLogger)
        for (user, outcome) in await TokenLossScenarios.refreshAll(a, rejected: rejected, users: users) {
            let error = try #require(outcome.failure, "\(user) refreshed although every answer is dropped")
            #expect(error.code == .refreshFailed)
            #expect(error.isRetriable)
        }
        #expect(a.statistics.refreshesUncertain == users.count)
        faults.refreshAnswerDropRate = 0
        try simulator.setFaults(faults)
        // Let the dropped requests end at the simulator, so that none arrives after B's attempt.
        time.advance(by: .milliseconds(4_000))
        while simulator.stats().concurrency.current > 0 {
            time.advance(by: .milliseconds(4_000))
            try await Task.sleep(for: .milliseconds(20))
        }
        // A request still on its way when the client gave up may reach the simulator later: not every user need
        // have been rotated, but some were.
        #expect(simulator.stats().refreshAnswersDropped > 0)
        // Every process sees the mark, and it holds no secret.
        for user in users {
            let record = try #require(try await two.get(userID: user))
            #expect(record.refreshOutcomeUnknownSince != nil, "\(user): no mark in the row")
            #expect(record.status == .active)
        }

        // Replica B has never seen these users: only the row tells it the answer was lost.
        let b = TokenProvider(store: two, refresher: mio, logger: Sim.quietLogger)
        let outcomes = await TokenLossScenarios.refreshAll(b, rejected: rejected, users: users)
        if grace > .zero {
            // Mio answers the resent token within its grace window: nobody is lost and the mark is cleared.
            for (user, outcome) in outcomes {
                #expect(outcome.failure == nil, "\(user): \(outcome.failure.map { "\($0)" } ?? "")")
                #expect(try await one.get(userID: user)?.refreshOutcomeUnknownSince == nil)
            }
            #expect(simulator.stats().reusesWithinGrace > 0)
            #expect(simulator.stats().reuseDetections == 0)
        } else {
            // Every user whose tokens were rotated is lost, and each is reported with the distinct reason.
            var lost = 0
            for (user, outcome) in outcomes {
                guard let error = outcome.failure else { continue }
                lost += 1
                #expect(error.code == .refreshAnswerLost, "\(user): \(error)")
                #expect(!"\(error)".contains(rejected[user]!))
                let record = try #require(try await one.get(userID: user))
                #expect(record.status == .reauthRequired)
                #expect(record.refreshOutcomeUnknownSince == nil)
            }
            #expect(lost > 0)
            #expect(b.statistics.usersLostToUnansweredRefresh == lost)
        }
    }
}

extension Result {
    /// The error, or nil for a success.
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

@Suite struct SharedUncertainMarkTests {
    @Test(arguments: [StoreKind.memory, .sqlite], TokenLossTests.graces)
    func anotherReplicaReportsALostAnswerDistinctly(kind: StoreKind, grace: Duration) async throws {
        try await SharedUncertainMarkScenarios.anotherReplicaReportsALostAnswerDistinctly(kind, grace: grace)
    }

    @Test(.enabled(if: TestPostgres.enabled, TestPostgres.disabledMessage), arguments: TokenLossTests.graces)
    func anotherReplicaReportsALostAnswerDistinctlyInPostgres(grace: Duration) async throws {
        try await SharedUncertainMarkScenarios.anotherReplicaReportsALostAnswerDistinctly(.postgres, grace: grace)
    }

    /// The mark is written without moving the row's version (an unsaved grant based on that version stays valid),
    /// kept when set again, and cleared by new tokens and by a status change.
    @Test(arguments: StoreKind.allCases.filter { $0 != .postgres || TestPostgres.enabled })
    func theMarkLeavesTheVersionAndIsClearedByAnyWrite(kind: StoreKind) async throws {
        try await kind.withFreshStore { store in
            let stored = try await store.upsert(userID: "u", tokens: grant("1"))
            try await store.withExclusiveLock(userID: "u") { _ in LockedUpdate.markRefreshOutcomeUnknown(returning: ()) }
            let marked = try #require(try await store.get(userID: "u"))
            let since = try #require(marked.refreshOutcomeUnknownSince)
            #expect(marked.version == stored.version)
            try await Task.sleep(for: .milliseconds(5))
            try await store.withExclusiveLock(userID: "u") { _ in LockedUpdate.markRefreshOutcomeUnknown(returning: ()) }
            #expect(try await store.get(userID: "u")?.refreshOutcomeUnknownSince == since)

            try await store.upsert(userID: "u", tokens: grant("2"))
            #expect(try await store.get(userID: "u")?.refreshOutcomeUnknownSince == nil)
            try await store.withExclusiveLock(userID: "u") { _ in LockedUpdate.markRefreshOutcomeUnknown(returning: ()) }
            try await store.setStatus(.reauthRequired, userID: "u")
            #expect(try await store.get(userID: "u")?.refreshOutcomeUnknownSince == nil)
            try await store.withExclusiveLock(userID: "u") { _ in LockedUpdate.markRefreshOutcomeUnknown(returning: ()) }
            try await store.withExclusiveLock(userID: "u") { _ in LockedUpdate.store(grant("3"), returning: ()) }
            #expect(try await store.get(userID: "u")?.refreshOutcomeUnknownSince == nil)
        }
    }
}
