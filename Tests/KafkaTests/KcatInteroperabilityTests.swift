import Foundation
import Kafka
import Testing

/// Another process's mock cluster and Debian's kcat: the wrapper speaks Kafka as every client does.
@Suite("Interoperability with kcat and mioctx mock-kafka")
struct KcatInteroperabilityTests {
    @Test func kcatAndTheSwiftClientReadEachOthersMessages() async throws {
        let mockKafka = try ChildProcess(mioctxExecutable(), ["mock-kafka", "--brokers", "1", "--topic", "from-kcat:2", "--topic", "from-swift:1"])
        defer { mockKafka.terminate() }
        let bootstrap = try mockKafka.firstLine()
        #expect(bootstrap.hasPrefix("127.0.0.1:"))

        let produced = try runKcat(
            ["-b", bootstrap, "-P", "-t", "from-kcat", "-K", ":", "-H", "source=kcat"],
            input: "user-1:first job\nuser-2:second job\nuser-3:third job\n"
        )
        #expect(produced.status == 0, "kcat -P failed: \(produced.error)")

        let cluster = ExternalCluster(bootstrapServers: bootstrap)
        let consumer = try KafkaConsumer(
            configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, properties: fastGroupProperties),
            groupID: "interop-group",
            topics: ["from-kcat"],
            logger: testLogger()
        )
        let consuming = Task { try await consumer.run() }
        let received = try await withPatience("kcat's messages") {
            var messages: [KafkaMessage] = []
            for await message in consumer.messages {
                messages.append(message)
                if messages.count == 3 { break }
            }
            return messages
        }
        consumer.close()
        try await consuming.value
        let pairs = Set(received.map { "\(String(decoding: $0.key ?? [], as: UTF8.self))=\($0.valueString)" })
        #expect(pairs == ["user-1=first job", "user-2=second job", "user-3=third job"])
        #expect(received.allSatisfy { $0.header("source")?.stringValue == "kcat" })

        let producer = try KafkaProducer(
            configuration: KafkaConfiguration(bootstrapServers: bootstrap),
            logger: testLogger()
        )
        let producing = Task { try await producer.run() }
        for index in 1...3 {
            _ = try await producer.send(
                topic: "from-swift",
                key: Array("k\(index)".utf8),
                value: Array("swift says \(index)".utf8),
                headers: [KafkaHeader(key: "job-id", value: "j\(index)")]
            )
        }
        producer.shutdown()
        try await producing.value

        let consumed = try runKcat(["-b", bootstrap, "-C", "-t", "from-swift", "-o", "beginning", "-e", "-q", "-f", "%k|%s|%h\\n"])
        #expect(consumed.status == 0, "kcat -C failed: \(consumed.error)")
        let lines = consumed.output.split(separator: "\n").map(String.init)
        #expect(lines == ["k1|swift says 1|job-id=j1", "k2|swift says 2|job-id=j2", "k3|swift says 3|job-id=j3"])
    }

    @Test func mockKafkaExitsZeroOnSIGTERM() throws {
        let mockKafka = try ChildProcess(mioctxExecutable(), ["mock-kafka", "--brokers", "2", "--topic", "t:3"])
        let bootstrap = try mockKafka.firstLine()
        #expect(bootstrap.split(separator: ",").count == 2)
        let status = mockKafka.terminate()
        #expect(status == 0)
    }

    @Test func mockKafkaRejectsABadTopicSpecNamingIt() throws {
        let process = try ChildProcess(mioctxExecutable(), ["mock-kafka", "--topic", "jobs:zero"])
        let status = process.wait()
        #expect(status != 0)
        #expect(process.standardError().contains("jobs:zero"))
    }
}

/// A bootstrap address of a cluster this process does not own.
struct ExternalCluster {
    var bootstrapServers: String
}

/// The `mioctx` executable built next to the test bundle.
func mioctxExecutable() throws -> URL {
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = testBinary.deletingLastPathComponent()
    // The bundle may be a directory (…/mioctxPackageTests.xctest/…); walk up until the executable appears.
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("mioctx")
        if FileManager.default.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
        directory = directory.deletingLastPathComponent()
    }
    throw TestTimeout(what: "the mioctx executable next to \(testBinary.path) (build it with `swift build`)")
}

/// A child process whose standard output is read line by line.
final class ChildProcess: @unchecked Sendable {
    private let process = Process()
    private let output = Pipe()
    private let errors = Pipe()

    init(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        if let environment {
            process.environment = environment
        }
        try process.run()
    }

    /// Reads standard output up to the first newline.
    func firstLine() throws -> String {
        var bytes: [UInt8] = []
        let handle = output.fileHandleForReading
        while true {
            let chunk = handle.readData(ofLength: 1)
            guard let byte = chunk.first else {
                throw TestTimeout(what: "a first line from \(process.executableURL?.lastPathComponent ?? "child"); stderr: \(standardError())")
            }
            if byte == UInt8(ascii: "\n") {
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.append(byte)
        }
    }

    func standardError() -> String {
        String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
    }

    @discardableResult
    func terminate() -> Int32 {
        if process.isRunning {
            process.terminate()
        }
        return wait()
    }

    func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }
}

struct CommandResult {
    var status: Int32
    var output: String
    var error: String
}

/// Runs Debian's kcat with `arguments`, feeding `input` on standard input.
func runKcat(_ arguments: [String], input: String? = nil) throws -> CommandResult {
    let kcat = ["/usr/bin/kcat", "/usr/local/bin/kcat"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let kcat else {
        throw TestTimeout(what: "kcat (install the Debian package: apt-get install kcat)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: kcat)
    process.arguments = arguments
    let stdout = Pipe()
    let stderr = Pipe()
    let stdin = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
    }
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    let err = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus,
        output: String(decoding: out, as: UTF8.self),
        error: String(decoding: err, as: UTF8.self)
    )
}
