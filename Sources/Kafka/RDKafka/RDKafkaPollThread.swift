import Foundation
import Synchronization

/// A dedicated OS thread that runs a blocking librdkafka loop, so that no blocking call ever occupies a
/// thread of Swift's cooperative pool.
final class RDKafkaPollThread: Sendable {
    private let stopRequested = Atomic<Bool>(false)
    private let name: String

    init(name: String) {
        self.name = name
    }

    /// Whether ``requestStop()`` was called.
    var isStopRequested: Bool { stopRequested.load(ordering: .acquiring) }

    /// Asks the loop to finish; it notices within one poll interval.
    func requestStop() {
        stopRequested.store(true, ordering: .releasing)
    }

    /// Runs `body` on a new thread and returns when it has returned.
    ///
    /// `body` receives this object so it can check ``isStopRequested`` between polls.
    func run(_ body: @escaping @Sendable (RDKafkaPollThread) -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                body(self)
                continuation.resume()
            }
            thread.name = name
            thread.start()
        }
    }
}

/// Runs a blocking librdkafka call on a thread outside the cooperative pool and awaits its result.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            continuation.resume(returning: body())
        }
    }
}
