import ArgumentParser
import Foundation
import Settings

#if canImport(Glibc)
import Glibc
#endif

/// `mioctx healthcheck`: asks the local worker's operations listener whether it is ready, for a container's
/// `HEALTHCHECK` or compose's `healthcheck:` (a slim image has neither curl nor a shell with `/dev/tcp`).
struct HealthcheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "healthcheck",
        abstract: "Exit 0 when the local worker answers 200 on its readiness (or liveness) endpoint, else 1.",
        discussion: """
            Sends GET /readyz (or /healthz with --live) over HTTP/1.0 to 127.0.0.1 on http.port (--http-port, \
            MIOCTX_HTTP_PORT or the file's; the same settings as `mioctx run`), and prints the status line. No \
            shell, curl or wget needed: `HEALTHCHECK CMD ["mioctx", "healthcheck"]`.
            """
    )

    @Flag(help: "Probe liveness (/healthz) instead of readiness (/readyz).")
    var live = false

    @Option(help: "Host to probe (an IPv4 address).")
    var host = "127.0.0.1"

    @Option(help: "Seconds to wait for the answer.")
    var timeout: Int = 3

    func validate() throws {
        guard (1...60).contains(timeout) else {
            throw ValidationError("--timeout must be 1 to 60 seconds, got \(timeout)")
        }
    }

    func run() async throws {
        let port = try await CommandSettings.load(requiring: [])[\.http.port]
        let path = live ? "/healthz" : "/readyz"
        let (host, timeout) = (host, timeout)
        // Blocking socket calls: on a thread of their own, not the cooperative pool.
        let answer = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: HTTPProbe.get(host: host, port: port, path: path, timeoutSeconds: timeout))
            }
        }
        switch answer {
        case .success(let statusLine):
            print("\(path) on \(host):\(port): \(statusLine)")
            guard statusLine.split(separator: " ").dropFirst().first == "200" else { throw ExitCode.failure }
        case .failure(let problem):
            FileHandle.standardError.write(Data("\(path) on \(host):\(port): \(problem.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// One HTTP/1.0 GET over a blocking socket, with a timeout on connecting, sending and receiving.
enum HTTPProbe {
    struct Problem: Error {
        let message: String
    }

    /// The answer's status line (`HTTP/1.1 200 OK`), or why there is none.
    static func get(host: String, port: Int, path: String, timeoutSeconds: Int) -> Result<String, Problem> {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            return .failure(Problem(message: "\(host) is not an IPv4 address"))
        }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return .failure(Problem(message: "no socket: \(String(cString: strerror(errno)))")) }
        defer { close(socket) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        // On Linux SO_SNDTIMEO bounds connect() too.
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            return .failure(Problem(message: "cannot connect: \(String(cString: strerror(errno)))"))
        }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
        else {
            return .failure(Problem(message: "cannot send the request: \(String(cString: strerror(errno)))"))
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !answer.contains(UInt8(ascii: "\n")), answer.count < 4096 {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            answer += buffer[..<count]
        }
        guard let end = answer.firstIndex(of: UInt8(ascii: "\n")) else {
            return .failure(Problem(message: "no answer within \(timeoutSeconds) s"))
        }
        let line = String(decoding: answer[..<end], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .success(line)
    }
}
