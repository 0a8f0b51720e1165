import Coordination
import Foundation
import MioTokens
import Synchronization
import Testing

/// The in-memory store's per-user lock (the one the provider's unit tests rely on).
@Suite struct InMemoryTokenStoreTests {
    @Test func aWaiterCancelledWhileWaitingLeavesTheLineAndTheLockStillPasses() async throws {
        let time = ManualTime()
        let store = InMemoryTokenStore(timeSource: time.source)
        _ = await store.upsert(userID: "u1", tokens: grant("1", issuedAt: time.now))

        // The holder keeps the lock until the manual clock moves.
        let holder = Task {
            try await store.withExclusiveLock(userID: "u1") { _ -> LockedUpdate<Void> in
                try await time.source.sleep(for: .seconds(1))
                return .store(grant("2", issuedAt: time.now), returning: ())
            }
        }
        await time.clock.waitForSleepers(1)
        let entered = Mutex(false)
        let waiter = Task {
            try await store.withExclusiveLock(userID: "u1") { _ -> LockedUpdate<Void> in
                entered.withLock { $0 = true }
                return .keep(())
            }
        }
        for _ in 0..<100 { await Task.yield() }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(!entered.withLock { $0 })

        time.advance(by: .seconds(1))
        try await holder.value
        // Neither the holder nor the cancelled waiter keeps the lock: the next one gets it at once.
        let seen = try await store.withExclusiveLock(userID: "u1") { record in LockedUpdate.keep(record?.accessToken) }
        #expect(seen == "atk_plain_2")
    }

    @Test func waitersOfOneUserTakeTurnsAndOtherUsersDoNotWait() async throws {
        let store = InMemoryTokenStore()
        let gauge = Gauge()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    try await store.withExclusiveLock(userID: "u1") { _ -> LockedUpdate<Void> in
                        gauge.enter()
                        defer { gauge.leave() }
                        await Task.yield()
                        return .store(grant("\(index)"), returning: ())
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(gauge.peak == 1)
        #expect(await store.get(userID: "u1")?.version == 20)
        // Another user's lock is free while one user's is held.
        let other = try await store.withExclusiveLock(userID: "u2") { _ in
            LockedUpdate.keep(try await store.withExclusiveLock(userID: "u3") { record in LockedUpdate.keep(record == nil) })
        }
        #expect(other)
    }
}
