public import Hummingbird

/// `GET /healthz` and `GET /readyz` for orchestrators.
///
/// `/healthz` answers 200 while the process serves HTTP (a liveness probe). `/readyz` runs the readiness
/// checks and answers 200 when all pass, else 503 with one line per failing check, so that a load balancer
/// or Kubernetes stops sending work and an operator sees why.
public struct HealthEndpoints: Sendable {
    /// One readiness check: `nil` when ready, else the reason it is not.
    public typealias Check = @Sendable () async -> String?

    /// A line of state shown in `/readyz`'s body whether ready or not (e.g. Mio's breaker); it never fails it.
    public typealias Detail = @Sendable () async -> String

    private let checks: [(name: String, check: Check)]
    private let details: [(name: String, detail: Detail)]

    /// Creates the endpoints.
    ///
    /// - Parameters:
    ///   - checks: named readiness checks, run in order on every `/readyz` request.
    ///   - details: named lines of state added to `/readyz`'s body after the verdict (`name: line`).
    public init(checks: [(name: String, check: Check)], details: [(name: String, detail: Detail)] = []) {
        self.checks = checks
        self.details = details
    }

    /// Adds `/healthz` and `/readyz` to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("healthz") { _, _ -> String in
            "ok\n"
        }
        router.get("readyz") { _, _ -> Response in
            var failures: [String] = []
            for (name, check) in checks {
                if let reason = await check() {
                    failures.append("\(name): \(reason)")
                }
            }
            let ready = failures.isEmpty
            var body = ready ? "ready\n" : failures.joined(separator: "\n") + "\n"
            for (name, detail) in details {
                body += "\(name): \(await detail())\n"
            }
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                headers: [.contentType: "text/plain; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: body))
            )
        }
    }
}
