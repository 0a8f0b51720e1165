/// The renewal of a refresh lease while its holder's call runs, shared by the stores that lease rows.
enum LeaseRenewal {
    /// Calls `renew` every third of `duration` until cancelled, or until `renew` says the lease is no longer the
    /// holder's (`false`: released, or taken over after renewals failed for a whole lease). A renewal that failed
    /// (`nil`) is tried again at the next turn; the lease lasts until then.
    static func run(every duration: Duration, _ renew: () async -> Bool?) async {
        while true {
            do {
                try await Task.sleep(for: duration / 3)
            } catch {
                return
            }
            if await renew() == false { return }
        }
    }
}
