import Synchronization

/// Where a long-running loop is, and since when: for the diagnostics of a stall.
///
/// A loop that stops making progress (blocked in a call, or suspended in a wait that never ends) looks the same
/// from outside as one with nothing to do; its heartbeat tells them apart. Each ``enter(_:)`` is two relaxed
/// atomic stores and a read of the monotonic clock, cheap enough for a loop that turns once per message.
package final class LoopHeartbeat: Sendable {
    private let stages: [String]
    private let stage = Atomic<Int>(-1)
    private let since = Atomic<Int64>(0)
    private let passes = Atomic<Int>(0)

    /// - Parameter stages: the names of the loop's stages; ``enter(_:)`` takes an index into them.
    package init(stages: [String]) {
        self.stages = stages
    }

    /// Records that the loop entered stage `index` now.
    package func enter(_ index: Int) {
        since.store(Self.nowNanoseconds(), ordering: .relaxed)
        stage.store(index, ordering: .relaxed)
        passes.add(1, ordering: .relaxed)
    }

    /// "<stage> for <seconds> s (<n> stages entered)", or "not started".
    package var summary: String {
        let index = stage.load(ordering: .relaxed)
        guard stages.indices.contains(index) else { return "not started" }
        let elapsed = Double(Self.nowNanoseconds() - since.load(ordering: .relaxed)) / 1e9
        let seconds = (elapsed * 10).rounded() / 10
        return "\(stages[index]) for \(seconds) s (\(passes.load(ordering: .relaxed)) stages entered)"
    }

    private static func nowNanoseconds() -> Int64 {
        let elapsed = origin.duration(to: .now)
        return elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    }

    private static let origin = ContinuousClock.now
}
