import Foundation
@testable import MioTokens
import NIOSSL
import Testing

/// PostgreSQL TLS: required and verified unless the server is on loopback or `sslmode=disable` is written out.
@Suite struct PostgresTLSTests {
    static func mode(_ url: String) throws -> PostgresTokenStore.TLSMode {
        let components = try #require(URLComponents(string: url))
        return try PostgresTokenStore.tlsMode(host: try #require(components.host), queryItems: components.queryItems ?? [])
    }

    @Test func aRemoteServerNeedsAVerifiedCertificateUnlessDisableIsWrittenOut() throws {
        guard case .require(let remote) = try Self.mode("postgres://u:p@db.example.com:5432/tokens") else {
            Issue.record("a remote host without sslmode must require TLS")
            return
        }
        #expect(remote.certificateVerification == .fullVerification)
        guard case .require(let explicit) = try Self.mode("postgres://u:p@10.0.0.7/tokens?sslmode=require") else {
            Issue.record("sslmode=require must require TLS")
            return
        }
        #expect(explicit.certificateVerification == .fullVerification)
        guard case .disable = try Self.mode("postgres://u:p@db.example.com/tokens?sslmode=disable") else {
            Issue.record("sslmode=disable, written out, must disable TLS")
            return
        }
        for loopback in ["127.0.0.1", "localhost", "[::1]"] {
            guard case .prefer = try Self.mode("postgres://u:p@\(loopback)/tokens") else {
                Issue.record("a loopback host without sslmode may answer without TLS")
                return
            }
        }
    }

    @Test func aRootCertificateFileIsTrustedAndAMissingOneRefused() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID().uuidString).pem")
        try Data("-----BEGIN CERTIFICATE-----\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        guard case .require(let configuration) = try Self.mode("postgres://u:p@db.example.com/t?sslrootcert=\(file.path)")
        else {
            Issue.record("expected require")
            return
        }
        #expect(configuration.trustRoots == .file(file.path))
        #expect(throws: TokenError.self) { try Self.mode("postgres://u:p@db.example.com/t?sslrootcert=/no/such.pem") }

    }
}
