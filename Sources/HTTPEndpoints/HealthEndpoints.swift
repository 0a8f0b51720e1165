public import Hummingbird
public import Logging

/// `GET /healthz` and `GET /readyz` for orchestrators.
///
/// `/healthz` answers 200 while the process serves HTTP (a liveness probe). `/readyz` runs the readiness
/// checks and answers 200 when all pass, else 503 with one line per failing check (`name: not ready`), so that
/// a load balancer or Kubernetes stops sending work. The reason a check gives (which can hold server messages
/// and host names) goes to the log, not to whoever can reach the listener.
public struct HealthEndpoints: Sendable {
    /// One readiness check: `nil` when ready, else the reason it is not.
    public typealias Check = @Sendable () async -> String?

    /// A line of state shown in `/readyz`'s body whether ready or not (e.g. Mio's breaker); it never fails it.
    public typealias Detail = @Sendable () async -> String

    private let checks: [(name: String, check: Check)]
    private let details: [(name: String, detail: Detail)]
    private let logger: Logger

    /// Creates the endpoints.
    ///
    /// - Parameters:
    ///   - checks: named readiness checks, run in order on every `/readyz` request.
    ///   - details: named lines of state added to `/readyz`'s body after the verdict (`name: line`); they hold no
    ///     server message or host name.
    ///   - logger: Receives each failing check's reason (the body says only which check failed).
    public init(
        checks: [(name: String, check: Check)],
        details: [(name: String, detail: Detail)] = [],
        logger: Logger = Logger(label: "mioctx.health")
    ) {
        self.checks = checks
        self.details = details
        self.logger = logger
    }

    /// What `/readyz` shows of a failing check's reason: its text before the first `: ` (`unreachable`, `line
    /// stopped`), else `not ready`. The rest (server messages, host names) goes only to the log.
    static func summary(of reason: String) -> String {
        guard let separator = reason.firstRange(of: ": ") else { return "not ready" }
        let summary = reason[..<separator.lowerBound]
        return summary.allSatisfy(\.isWhitespace) ? "not ready" : String(summary)
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
                    logger.warning("readiness check failed", metadata: ["check": "\(name)", "reason": "\(reason)"])
                    failures.append("\(name): \(Self.summary(of: reason))")
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
