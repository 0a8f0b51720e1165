import Foundation
@testable import Kafka
import Testing

/// The properties every client mioctx creates gets unless the operator set them.
@Suite struct KafkaConfigurationTests {
    @Test func everyClientIsNamedAfterTheHostUnlessTheOperatorNamedIt() {
        let host = ProcessInfo.processInfo.hostName
        #expect(KafkaConfiguration.defaultClientID == "mioctx-\(host)")
        let defaulted = KafkaConfiguration(bootstrapServers: "127.0.0.1:9092").withDefaults([:])
        #expect(defaulted["client.id"] == "mioctx-\(host)")
        #expect(defaulted["reconnect.backoff.max.ms"] == "1000")
        let named = KafkaConfiguration(bootstrapServers: "127.0.0.1:9092", properties: ["client.id": "billing-7"])
        #expect(named.withDefaults(["client.id": "ignored"])["client.id"] == "billing-7")
    }

    @Test func theLibrdkafkaVersionIsTheLoadedLibrarys() {
        let parts = KafkaConfiguration.librdkafkaVersion.split(separator: ".")
        #expect(parts.count >= 3, "\(KafkaConfiguration.librdkafkaVersion)")
        #expect(parts.allSatisfy { Int($0.prefix { $0.isNumber }) != nil })
    }
}
