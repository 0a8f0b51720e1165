public import Foundation

extension InMemoryTokenStore: OAuthStateLedger {
    public func claimOAuthState(id: String, expiresAt: Date, now: Date) -> OAuthStateClaim {
        usedOAuthStates = usedOAuthStates.filter { $0.value > now }
        if usedOAuthStates[id] != nil { return .replayed }
        guard usedOAuthStates.count < OAuthStateLedgerLimits.maximumStates else { return .full }
        usedOAuthStates[id] = expiresAt
        return .first
    }
}
