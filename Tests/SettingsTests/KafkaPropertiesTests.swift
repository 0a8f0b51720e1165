import Foundation
import MioctxTestSupport
import Settings
import Testing

/// librdkafka properties as kcat and the Confluent clients take them: `-X name=value` and a properties file.
@Suite struct KafkaPropertiesTests {
    @Test func aPropertiesFileReadsAsTheConfluentClientsReadIt() throws {
        let text = """
            # Confluent Cloud client.properties
            ! a comment of the other kind

            bootstrap.servers=pkc-1.example:9092
            security.protocol = SASL_SSL
            sasl.mechanisms: PLAIN
            sasl.username key-with\\=equals
            sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\
                username="u" password="p=1";
            ssl.ca.location=C:\\\\certs\\\\ca.pem\r
            client.rack=r\\u00e9gion
            linger.ms=5
            linger.ms=10
            """
        let file = try KafkaPropertiesFile(parsing: text)
        let properties = Dictionary(file.properties.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        #expect(properties["bootstrap.servers"] == "pkc-1.example:9092")
        #expect(properties["security.protocol"] == "SASL_SSL")
        #expect(properties["sasl.mechanisms"] == "PLAIN")
        #expect(properties["sasl.username"] == "key-with=equals")
        #expect(
            properties["sasl.jaas.config"]
                == #"org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p=1";"#
        )
        #expect(properties["ssl.ca.location"] == #"C:\certs\ca.pem"#)
        #expect(properties["client.rack"] == "région")
        #expect(properties["linger.ms"] == "10")
        #expect(file.properties.count == 8)
    }

    @Test func aLineWithoutANameOrWithABadEscapeIsNamedByItsNumber() {
        #expect(throws: KafkaPropertiesFileError(line: 2, problem: "has no property name")) {
            try KafkaPropertiesFile(parsing: "a=1\n=2\n")
        }
        #expect(throws: KafkaPropertiesFileError(line: 3, problem: "has an invalid \\u escape")) {
            try KafkaPropertiesFile(parsing: "# x\n\nname=\\uZZ\n")
        }
    }

    @Test func theShortFlagIsTakenInBothSpellingsAndOtherShortFlagsAreLeft() {
        let split = SettingsArguments.split(["run", "-X", "linger.ms=5", "-Xacks=all", "-x", "--kafka-property", "a=b"])
        #expect(split.remaining == ["run", "-x"])
        #expect(split.settings.values.map(\.flag) == ["-X", "-X", "--kafka-property"])
        #expect(split.settings.values.map(\.value) == ["linger.ms=5", "acks=all", "a=b"])
    }

    @Test func theFileGoesUnderTheEnvironmentAndTheFlagsAndItsSourceIsNamed() async throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write(
            "client.properties", "linger.ms=7\nsocket.timeout.ms=9000\nclient.id=from-file\nstatistics.interval.ms=0\n"
        )
        let settings = try await SettingsLoader(
            arguments: SettingsArguments.split(["--kafka-config", path, "-X", "client.id=from-flag", "-Xlinger.ms=8"])
                .settings,
            environment: ["MIOCTX_KAFKA_PROPERTIES": "socket.timeout.ms=10000"],
            requiring: []
        ).load()
        #expect(settings.kafkaProperties["linger.ms"] == "8")
        #expect(settings.kafkaProperties["client.id"] == "from-flag")
        #expect(settings.kafkaProperties["socket.timeout.ms"] == "10000")
        #expect(settings.kafkaProperties["statistics.interval.ms"] == "0")
        #expect(settings.propertySources["statistics.interval.ms"] == .file(path: path))
        #expect(settings.propertySources["linger.ms"] == .flag(name: "-X"))
    }

    @Test func theFileFromTheEnvironmentIsReadAndReservedPropertiesInItAreRefused() async throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("client.properties", "group.id=other\nlinger.ms=3\n")
        let error = await #expect(throws: SettingsError.self) {
            try await SettingsLoader(
                arguments: SettingsArguments(), environment: ["MIOCTX_KAFKA_CONFIG": path], requiring: []
            ).load()
        }
        let description = error?.description ?? ""
        #expect(description.contains("kafka.properties.group.id"))
        #expect(description.contains(path))
    }

    @Test func aMissingOrUnreadableFileIsAProblemNamingIt() async throws {
        let directory = try TemporaryDirectory()
        let missing = directory.url.appendingPathComponent("absent.properties").path
        let error = await #expect(throws: SettingsError.self) {
            try await SettingsLoader(
                arguments: SettingsArguments.split(["--kafka-config", missing]).settings, environment: [:],
                requiring: []
            ).load()
        }
        #expect(error?.description.contains("the librdkafka properties file \(missing) does not exist") == true)
        let bad = try directory.write("bad.properties", "ok=1\n  = no name\n")
        let badError = await #expect(throws: SettingsError.self) {
            try await SettingsLoader(
                arguments: SettingsArguments.split(["--kafka-config", bad]).settings, environment: [:], requiring: []
            ).load()
        }
        #expect(badError?.description.contains("line 2 has no property name") == true)
    }

    @Test func theTopicsReplicationFactorIsMinusOneOrPositive() async throws {
        let settings = try await SettingsLoader(
            arguments: SettingsArguments.split(["--partitions", "12"]).settings, environment: [:], requiring: []
        ).load()
        #expect(settings[\.kafka.topicPartitions] == 12)
        #expect(settings[\.kafka.topicReplicationFactor] == -1)
        let error = await #expect(throws: SettingsError.self) {
            try await SettingsLoader(
                arguments: SettingsArguments.split(["--replication-factor", "0"]).settings, environment: [:],
                requiring: []
            ).load()
        }
        #expect(error?.description.contains("kafka.topicReplicationFactor") == true)
    }
}
