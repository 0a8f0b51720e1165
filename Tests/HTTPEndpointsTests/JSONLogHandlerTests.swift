import Foundation
import HTTPEndpoints
import Logging
import Synchronization
import Testing

/// Collects the lines a `JSONLogHandler` writes.
final class LineCollector: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func logger(label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { label in
            JSONLogHandler(label: label) { line in self.lines.withLock { $0.append(line) } }
        }
        logger.logLevel = level
        return logger
    }
}

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    @Test func everyLineIsOneJSONObjectWithTimestampLevelLabelMessageAndFlatMetadata() throws {
        let collector = LineCollector()
        var logger = collector.logger(label: "mioctx.worker")
        logger[metadataKey: "job.id"] = "j-1"
        logger.info(
            "tricky \"quoted\" \\ text\nsecond line\ttab \u{1} control, unicode é 🚀",
            metadata: [
                "kafka": ["partition": "3", "offset": .stringConvertible(42)],
                "users": ["a", "b"],
                "message": "not the message",
            ]
        )
        logger.trace("plain")

        let lines = collector.all
        #expect(lines.count == 2)
        for line in lines {
            #expect(line.hasSuffix("}\n"))
            #expect(line.dropLast().contains("\n") == false)
        }
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["level"] as? String == "info")
        #expect(first["label"] as? String == "mioctx.worker")
        #expect(first["message"] as? String == "tricky \"quoted\" \\ text\nsecond line\ttab \u{1} control, unicode é 🚀")
        #expect(first["job.id"] as? String == "j-1")
        #expect(first["kafka.partition"] as? String == "3")
        #expect(first["kafka.offset"] as? String == "42")
        #expect(first["users"] as? [String] == ["a", "b"])
        #expect(first["metadata.message"] as? String == "not the message")

        let timestamp = try #require(first["timestamp"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(formatter.date(from: timestamp))
        #expect(abs(date.timeIntervalSinceNow) < 3600)
        #expect(timestamp.hasSuffix("Z"))

        let second = try #require(try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])
        #expect(second["level"] as? String == "trace")
        #expect(second["message"] as? String == "plain")
    }

    @Test func theLevelFiltersLines() {
        let collector = LineCollector()
        let logger = collector.logger(level: .warning)
        logger.info("dropped")
        logger.warning("kept")
        #expect(collector.all.count == 1)
        #expect(collector.all.first?.contains("\"kept\"") == true)
    }
}
