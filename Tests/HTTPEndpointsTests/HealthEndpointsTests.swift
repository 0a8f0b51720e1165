import HTTPEndpoints
import Hummingbird
import HummingbirdTesting
import Logging
import MioctxTestSupport
import Pipeline
import Synchronization
import Testing

@Suite("GET /healthz and /readyz")
struct HealthEndpointsTests {
    @Test func readinessNamesEveryFailingCheckUntilAllPass() async throws {
        let kafkaJoined = Atomic<Bool>(false)
        let router = Router()
        HealthEndpoints(checks: [
            ("kafka", { kafkaJoined.load(ordering: .acquiring) ? nil : "not a member of consumer group 'mioctx' yet" }),
            ("token store", { nil }),
        ]).addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = String(buffer: response.body)
                #expect(body == "kafka: not ready\n")
            }
            kafkaJoined.store(true, ordering: .releasing)
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ready\n")
            }
        }
    }

    /// `mioctx run`'s Mio lines: the breaker's state shows while ready; a stopped line fails readiness with what to
    /// fix, and readiness returns once the line runs again.
    @Test func readinessShowsTheBreakerAndFailsOnlyOnAStoppedLine() async throws {
        let health = MioHealth(configuration: .init(failureThreshold: 1, probeInterval: .seconds(60)))
        let router = Router()
        HealthEndpoints(
            checks: [("mio", { health.readinessFailure })],
            details: [("mio", { health.summary })]
        ).addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ready\nmio: breaker closed, concurrency limit 256\n")
            }
            health.record(try await health.admit(), .unavailable)
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok, "an open breaker pauses the worker; it must not be restarted")
                #expect(String(buffer: response.body).hasPrefix("ready\nmio: breaker open"))
            }
        }
        let stopped = MioHealth()
        let stoppedRouter = Router()
        HealthEndpoints(checks: [("mio", { stopped.readinessFailure })]).addRoutes(to: stoppedRouter)
        let ticket = try await stopped.admit()
        stopped.record(ticket, .operatorFault(code: "invalid_client", reason: "set MIO_CLIENT_SECRET"))
        let stoppedApp = Application(router: stoppedRouter, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await stoppedApp.test(.live) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                // The reason's detail goes to the log (issue 17); the body keeps its summary.
                #expect(String(buffer: response.body) == "mio: line stopped\n")
            }
        }
    }

    @Test func readinessShowsAGenericReasonAndLogsTheDetail() async throws {
        let lines = RecordingLogHandler.Store()
        let router = Router()
        HealthEndpoints(
            checks: [
                ("token store", { "unreachable: connection refused by db-7.internal.example:5432 (password auth failed)" }),
                ("kafka", { "not a member of consumer group 'payments-ctx' yet" }),
            ],
            logger: .recording("health", into: lines)
        ).addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body) == "token store: unreachable\nkafka: not ready\n")
            }
        }
        let logged = lines.all.joined(separator: "\n")
        #expect(logged.contains("db-7.internal.example:5432"))
        #expect(logged.contains("payments-ctx"))
    }
}
