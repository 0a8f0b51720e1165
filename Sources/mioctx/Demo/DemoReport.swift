import KafkaPipeline
import Pipeline
import Foundation
import Kafka
import MioSimulator
import MioTokens

/// The demo's closing summary.
struct DemoReport {
    /// Seconds since 1970 of an RFC 3339 timestamp with fractional seconds (the results' `completedAt`).
    static func parseTimestamp(_ text: String) -> Double? {
        (try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))?
            .timeIntervalSince1970
    }

    var results: [String: [String: Any]]
    var deadLetters: [KafkaMessage]
    var elapsed: Duration
    var tokenStatistics: TokenProvider.Statistics
    var simulatorStats: MioSimulator.Stats
    var committed: [KafkaTopicPartition: Int64]

    var text: String {
        var lines: [String] = []
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let completions = results.values.compactMap { ($0["completedAt"] as? String).flatMap(Self.parseTimestamp) }.sorted()
        let window = (completions.last ?? 0) - (completions.first ?? 0)
        lines.append("mioctx demo: \(results.count) jobs processed in \(String(format: "%.2f", seconds)) s "
            + "including the consumer group join; \(String(format: "%.0f", Double(max(completions.count - 1, 0)) / max(window, 0.001))) jobs/s "
            + "between the first and the last result")
        lines.append("")
        lines.append("results by status:")
        var byStatus: [String: Int] = [:]
        for result in results.values {
            byStatus[result["status"] as? String ?? "?", default: 0] += 1
        }
        for (status, count) in byStatus.sorted(by: { $0.value > $1.value }) {
            lines.append("  \(status.padding(toLength: 22, withPad: " ", startingAt: 0)) \(count)")
        }
        let durations = results.values.compactMap { ($0["durationMs"] as? NSNumber)?.doubleValue }.sorted()
        if !durations.isEmpty {
            let p50 = durations[durations.count / 2]
            let p99 = durations[min(durations.count - 1, Int(Double(durations.count) * 0.99))]
            lines.append("")
            lines.append("job latency: p50 \(Int(p50)) ms, p99 \(Int(p99)) ms")
        }
        lines.append("token refreshes: \(tokenStatistics.refreshesPerformed) performed, "
            + "\(tokenStatistics.refreshesJoined + tokenStatistics.refreshesAvoided) avoided (joined or already done), "
            + "\(tokenStatistics.usersMarkedReauthRequired) users marked reauth_required")
        lines.append("Mio simulator: \(simulatorStats.reuseDetections) refresh-token reuse detections, "
            + "peak \(simulatorStats.concurrency.peak) concurrent requests, "
            + "\(simulatorStats.faultsInjected.values.reduce(0, +)) faults injected")
        lines.append("dead-lettered messages: \(deadLetters.count)")
        var reasons: [String: Int] = [:]
        for message in deadLetters {
            reasons[message.header(KafkaResultSink.DeadLetterHeader.reason)?.stringValue ?? "?", default: 0] += 1
        }
        for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) {
            lines.append("  \(reason.padding(toLength: 22, withPad: " ", startingAt: 0)) \(count)")
        }
        lines.append("committed offsets: \(committed.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        lines.append("")
        lines.append("sample results:")
        var shown = Set<String>()
        for result in results.values.sorted(by: { ($0["id"] as? String ?? "") < ($1["id"] as? String ?? "") }) {
            let status = result["status"] as? String ?? "?"
            guard !shown.contains(status) else { continue }
            shown.insert(status)
            if let data = try? JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]) {
                lines.append("  " + String(decoding: data, as: UTF8.self))
            }
        }
        return lines.joined(separator: "\n")
    }
}
