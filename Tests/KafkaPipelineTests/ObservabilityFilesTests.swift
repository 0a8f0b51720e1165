import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MioctxTestSupport
import Testing
import Yams

/// The shipped dashboard (deploy/grafana) and alerts (deploy/prometheus, and the same groups in the Kubernetes
/// PrometheusRule) name only metrics that a live `mioctx run` exports on `/metrics`.
@Suite struct ObservabilityFilesTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Every PromQL expression of the dashboard's panels and of the alert rules, with where it comes from.
    static func expressions() throws -> [(place: String, expr: String)] {
        var found: [(String, String)] = []
        let dashboard = try #require(
            try JSONSerialization.jsonObject(with: Data(text("deploy/grafana/mioctx-dashboard.json").utf8))
                as? [String: Any]
        )
        for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                if let expr = target["expr"] as? String { found.append(("panel \(panel["title"] ?? "?")", expr)) }
            }
        }
        let alerts = try #require(try Yams.load(yaml: text("deploy/prometheus/alerts.yaml")) as? [String: Any])
        for group in alerts["groups"] as? [[String: Any]] ?? [] {
            for rule in group["rules"] as? [[String: Any]] ?? [] {
                if let expr = rule["expr"] as? String { found.append(("alert \(rule["alert"] ?? "?")", expr)) }
            }
        }
        return found
    }

    /// The metric names in an expression: identifiers starting with `mioctx_`.
    static func metrics(in expression: String) -> Set<String> {
        var names: Set<String> = []
        var current = ""
        for character in expression + " " {
            if character.isLetter || character.isNumber || character == "_" || character == ":" {
                current.append(character)
            } else {
                if current.hasPrefix("mioctx_") { names.insert(current) }
                current = ""
            }
        }
        return names
    }

    @Test func theKubernetesRuleHoldsTheSameAlertsAsTheRulesFile() throws {
        let file = try #require(try Yams.load(yaml: Self.text("deploy/prometheus/alerts.yaml")) as? [String: Any])
        let rule = try #require(
            try Yams.load(yaml: Self.text("deploy/kubernetes/base/prometheusrule.yaml")) as? [String: Any]
        )
        let fileGroups = try #require(file["groups"] as? [[String: Any]])
        let ruleGroups = try #require((rule["spec"] as? [String: Any])?["groups"] as? [[String: Any]])
        #expect(NSArray(array: fileGroups).isEqual(to: ruleGroups), "run scripts/sync-alerts.sh")
        let alerts = fileGroups.flatMap { $0["rules"] as? [[String: Any]] ?? [] }.compactMap { $0["alert"] as? String }
        for expected in [
            "MioctxLagGrowing", "MioctxNoCommits", "MioctxDeadLettersRising", "MioctxTokenRefreshFailures",
            "MioctxMioBreakerOpen",
        ] {
            #expect(alerts.contains(expected), "\(expected)")
        }
    }

    @Test func everyMetricTheDashboardAndTheAlertsNameIsExportedByALiveWorker() async throws {
        let expressions = try Self.expressions()
        #expect(expressions.count >= 15)
        try await WorkerProcessTests.withSetup { setup in
            // Jobs, and messages that cannot be jobs, so that the per-status and per-reason series exist.
            let jobs = WorkerProcessTests.jobs(40)
            try await setup.harness.produceJobs(jobs)
            try await setup.harness.produce([(key: nil, value: Array("not json".utf8), headers: [])])
            let port = try ComposeHealthcheckTests.freePort()
            let worker = try setup.startWorker(httpPort: port)
            try await waitUntil("the worker to export its job, lag and dead-letter metrics") {
                guard let text = try? await Self.get("http://127.0.0.1:\(port)/metrics") else { return false }
                let names = Self.exportedNames(text)
                return names.contains("mioctx_dead_letters_total")
                    && names.contains("mioctx_jobs_completed_total") && names.contains("mioctx_consumer_lag")
            }
            let exported = Self.exportedNames(try await Self.get("http://127.0.0.1:\(port)/metrics"))
            #expect(await worker.stop() == 0)
            for (place, expression) in expressions {
                for metric in Self.metrics(in: expression) {
                    #expect(exported.contains(metric), "\(place) names \(metric), which the worker does not export")
                }
            }
        }
    }

    /// The sample names of a Prometheus text exposition (`name{labels} value` and `name value` lines).
    static func exportedNames(_ text: String) -> Set<String> {
        Set(
            text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
                line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
            }
        )
    }

    static func get(_ url: String) async throws -> String {
        let (data, _) = try await URLSession.shared.data(from: URL(string: url)!)
        return String(decoding: data, as: UTF8.self)
    }
}
