import Foundation
import MioctxTestSupport
import Testing

/// `mioctx run` refuses, before it connects, a result limit that the producer's `message.max.bytes` cannot carry.
@Suite struct ResultLimitStartTests {
    @Test(arguments: [
        (["MIOCTX_PROCESSING_MAX_RESULT_BYTES": "995000"], "(1000000, librdkafka's default)"),
        (["MIOCTX_KAFKA_PROPERTIES": "message.max.bytes=500000"], "(500000, kafka.properties)"),
    ])
    func aResultLimitThatDoesNotFitMessageMaxBytesStopsRunAtStart(_ extra: [String: String], _ source: String) throws {
        let output = try MioctxProcess.run(
            ["run", "--token-store", "sqlite:/nonexistent/never-opened.sqlite", "--http-port", "0"],
            environment: ConfigCheckProcessTests.environment.merging(extra) { _, new in new }
        )
        #expect(output.status == 78, "\(output.standardError)")
        #expect(output.standardError.hasPrefix("invalid configuration (1 problem):\n"), "\(output.standardError)")
        #expect(output.standardError.contains("processing.maxResultBytes ("), "\(output.standardError)")
        #expect(output.standardError.contains("message.max.bytes \(source)"), "\(output.standardError)")
    }
}
