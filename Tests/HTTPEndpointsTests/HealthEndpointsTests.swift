import HTTPEndpoints
import Hummingbird
import HummingbirdTesting
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
}
