@testable import mioctx
import Pipeline
import Settings
import Testing

/// `WorkerAssembly` gives `MioHealth` the `processing.breaker.*` settings as they were set: each one reaches its
/// field of `MioHealth.Configuration`, none is lost or swapped on the way.
@Suite struct HealthConfigurationTests {
    func settings(_ environment: [String: String]) async throws -> EffectiveSettings {
        try await SettingsLoader(arguments: SettingsArguments.split([]).settings, environment: environment, requiring: []).load()
    }

    @Test func everyBreakerSettingReachesMioHealthsConfiguration() async throws {
        let settings = try await settings([
            "MIOCTX_PROCESSING_MAX_IN_FLIGHT": "64",
            "MIOCTX_PROCESSING_BREAKER_WINDOW": "7s",
            "MIOCTX_PROCESSING_BREAKER_FAILURE_THRESHOLD": "13",
            "MIOCTX_PROCESSING_BREAKER_FAILURE_RATIO": "0.3",
            "MIOCTX_PROCESSING_BREAKER_PROBE_INTERVAL": "250ms",
            "MIOCTX_PROCESSING_BREAKER_MAX_PROBE_INTERVAL": "3s",
            "MIOCTX_PROCESSING_BREAKER_HALT_PROBE_INTERVAL": "11s",
            "MIOCTX_PROCESSING_BREAKER_ADAPTIVE_CONCURRENCY": "false",
            "MIOCTX_PROCESSING_BREAKER_INITIAL_CONCURRENCY": "5",
            "MIOCTX_PROCESSING_BREAKER_RATE_DECREASE": "0.75",
            "MIOCTX_PROCESSING_BREAKER_RATE_INCREASE": "0.05",
            "MIOCTX_PROCESSING_BREAKER_MAX_RATE_INCREASE": "0.4",
        ])
        let configuration = WorkerAssembly.healthConfiguration(settings)
        #expect(configuration.window == .seconds(7))
        #expect(configuration.failureThreshold == 13)
        #expect(configuration.failureRatio == 0.3)
        #expect(configuration.probeInterval == .milliseconds(250))
        #expect(configuration.maxProbeInterval == .seconds(3))
        #expect(configuration.haltProbeInterval == .seconds(11))
        #expect(configuration.adaptiveConcurrency == false)
        #expect(configuration.maxConcurrency == 64)
        #expect(configuration.initialConcurrency == 5)
        #expect(configuration.rateDecrease == 0.75)
        #expect(configuration.rateIncrease == 0.05)
        #expect(configuration.maxRateIncrease == 0.4)
    }

    @Test func theDefaultsAreMioHealthsOwnWithTheSlowStartOf16AndTheInFlightLimit() async throws {
        let configuration = WorkerAssembly.healthConfiguration(try await settings([:]))
        #expect(configuration == MioHealth.Configuration(maxConcurrency: 256, initialConcurrency: 16))
        #expect(configuration.rateDecrease == 0.9)
        #expect(configuration.rateIncrease == 0.1)
        #expect(configuration.maxRateIncrease == 1)
    }

    @Test func theSlowStartNeverExceedsTheInFlightLimit() async throws {
        let configuration = WorkerAssembly.healthConfiguration(try await settings([
            "MIOCTX_PROCESSING_MAX_IN_FLIGHT": "8", "MIOCTX_PROCESSING_BREAKER_INITIAL_CONCURRENCY": "32",
        ]))
        #expect(configuration.maxConcurrency == 8)
        #expect(configuration.initialConcurrency == 8)
    }
}
