import Coordination
import Testing

@Suite struct WaitableStateTests {
    @Test func waitReturnsAtOnceWhenTheStateAlreadyDecides() async {
        let state = WaitableState<Int, Int>(7)
        let value = await state.wait(cancelled: -1) { $0 > 0 ? $0 : nil }
        #expect(value == 7)
        #expect(state.withLock { _, waiters in waiters.count } == 0)
    }

    @Test func wakeFirstResumesWaitersInTheOrderTheyArrived() async {
        let state = WaitableState<[Int], Int>([])
        await withTaskGroup(of: Void.self) { group in
            for index in 0 ..< 3 {
                group.addTask {
                    let value = await state.wait(cancelled: -1) { _ in nil }
                    state.withLock { order, _ in order.append(index * 100 + value) }
                }
                // The next waiter arrives only after this one is queued, so arrival order is known.
                while state.withLock({ _, waiters in waiters.count }) < index + 1 { await Task.yield() }
            }
            for value in 1 ... 3 {
                let woke = state.withLock { _, waiters in waiters.wakeFirst(with: value) }
                #expect(woke)
                while state.withLock({ order, _ in order.count }) < value { await Task.yield() }
            }
        }
        #expect(state.withLock { order, _ in order } == [1, 102, 203])
        #expect(state.withLock { _, waiters in waiters.wakeFirst(with: 0) } == false)
    }

    @Test func wakeAllResumesEveryWaiterWithTheValue() async {
        let state = WaitableState<Void, String>(())
        async let first = state.wait(cancelled: "cancelled") { _ in nil }
        async let second = state.wait(cancelled: "cancelled") { _ in nil }
        while state.withLock({ _, waiters in waiters.count }) < 2 { await Task.yield() }
        #expect(state.withLock { _, waiters in waiters.wakeAll(with: "go") } == 2)
        #expect(await [first, second] == ["go", "go"])
    }

    @Test func aCancelledWaiterGetsTheCancelledValueAndLeavesTheQueue() async {
        let state = WaitableState<Void, Int>(())
        let task = Task { await state.wait(cancelled: -1) { _ in nil } }
        while state.withLock({ _, waiters in waiters.count }) < 1 { await Task.yield() }
        task.cancel()
        #expect(await task.value == -1)
        #expect(state.withLock { _, waiters in waiters.count } == 0)
    }

    @Test func aTaskCancelledBeforeItWaitsDoesNotWait() async {
        let state = WaitableState<Void, Int>(())
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await state.wait(cancelled: -1) { _ in nil }
        }
        #expect(await task.value == -1)
        #expect(state.withLock { _, waiters in waiters.count } == 0)
    }

    @Test func manyWakersAndWaitersResumeEachWaiterExactlyOnce() async {
        let state = WaitableState<Int, Int>(0)
        let total = 2_000
        let sum = await withTaskGroup(of: Int.self) { group in
            for _ in 0 ..< total {
                group.addTask {
                    await state.wait(cancelled: 0) { available in
                        guard available > 0 else { return nil }
                        available -= 1
                        return 1
                    }
                }
            }
            for _ in 0 ..< total {
                group.addTask {
                    state.withLock { available, waiters in
                        if !waiters.wakeFirst(with: 1) { available += 1 }
                    }
                    return 0
                }
            }
            return await group.reduce(0, +)
        }
        #expect(sum == total)
    }
}
