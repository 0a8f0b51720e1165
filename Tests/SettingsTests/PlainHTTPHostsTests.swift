import Foundation
import Settings
import Testing

/// `mio.apiURL` and `mio.redirectURL` go over https, or http to loopback, or http to a host the operator named
/// in `mio.plainHttpHosts` (a development network's simulator), and nowhere else.
@Suite struct PlainHTTPHostsTests {
    static let base: [String: String] = [
        "MIO_CLIENT_ID": "c", "MIO_CLIENT_SECRET": "s-9f",
        "MIOCTX_TOKEN_KEYS": "k1:" + Data((0..<32).map { UInt8($0) }).base64EncodedString(),
    ]

    static func load(_ environment: [String: String]) async throws -> EffectiveSettings {
        try await SettingsLoader(
            arguments: SettingsArguments(), environment: base.merging(environment) { $1 }, requiring: .worker
        ).load()
    }

    @Test func plainHTTPToANamedHostIsAcceptedAndToAnyOtherIsRefusedNamingTheSetting() async throws {
        let refused = await #expect(throws: SettingsError.self) {
            try await Self.load([
                "MIO_API_URL": "http://mio-simulator:8090", "MIO_REDIRECT_URL": "http://app.example/oauth/callback",
            ])
        }
        let message = refused?.description ?? ""
        #expect(message.contains("mio.apiURL: must be https://"), "\(message)")
        #expect(message.contains("mio.redirectURL: must be https://"), "\(message)")
        #expect(message.contains("mio.plainHttpHosts"), "\(message)")

        let allowed = try await Self.load([
            "MIO_API_URL": "http://mio-simulator:8090", "MIO_REDIRECT_URL": "http://127.0.0.1:8081/oauth/callback",
            "MIOCTX_MIO_PLAIN_HTTP_HOSTS": "Mio-Simulator, other",
        ])
        #expect(allowed[\.mio.apiURL] == "http://mio-simulator:8090")
        #expect(allowed[\.mio.plainHTTPHosts] == ["mio-simulator", "other"])

        // Naming one host allows that host only.
        await #expect(throws: SettingsError.self) {
            try await Self.load([
                "MIO_API_URL": "http://mio.internal:8090", "MIO_REDIRECT_URL": "https://app.example/oauth/callback",
                "MIOCTX_MIO_PLAIN_HTTP_HOSTS": "mio-simulator",
            ])
        }
        let secure = try await Self.load(["MIO_REDIRECT_URL": "https://app.example/oauth/callback"])
        #expect(secure[\.mio.apiURL].hasPrefix("https://"))
    }
}
