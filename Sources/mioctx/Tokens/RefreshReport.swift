import Foundation
import MioTokens

/// The JSON that `mioctx tokens refresh` prints.
struct RefreshReport: Sendable {
    var userID: String
    var fingerprints: [String: Int] = [:]
    var errors: [String: Int] = [:]
    var statistics: TokenProvider.Statistics

    init(userID: String, results: [Result<String, TokenError>], statistics: TokenProvider.Statistics) {
        self.userID = userID
        self.statistics = statistics
        for result in results {
            switch result {
            case .success(let fingerprint): fingerprints[fingerprint, default: 0] += 1
            case .failure(let error): errors[error.code.description, default: 0] += 1
            }
        }
    }

    var failures: Int { errors.values.reduce(0, +) }

    var json: String {
        let object: [String: Any] = [
            "userId": userID,
            "fingerprints": fingerprints,
            "errors": errors,
            "refreshesPerformed": statistics.refreshesPerformed,
            "refreshesAvoided": statistics.refreshesAvoided,
            "refreshesJoined": statistics.refreshesJoined,
            "refreshFailures": statistics.refreshFailures,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
