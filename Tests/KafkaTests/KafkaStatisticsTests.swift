import Kafka
import MioctxTestSupport
import Synchronization
import Testing

@Suite("librdkafka statistics")
struct KafkaStatisticsTests {
    @Test func consumerLagIsTheDistanceFromTheCommittedOffsetToTheEndOfEachPartition() async throws {
        let cluster = try makeCluster(topics: ["lagging": 2])
        try await withProducer(cluster) { producer in
            try await produce(producer, topic: "lagging", partition: 0, count: 10, prefix: "p0")
            try await produce(producer, topic: "lagging", partition: 1, count: 4, prefix: "p1")
        }
        let latest = Mutex<KafkaStatistics?>(nil)
        var options = KafkaConsumer.Options()
        options.statisticsHandler = { statistics in latest.withLock { $0 = statistics } }
        let member = try RunningConsumer(
            cluster,
            group: "lag-group",
            topics: ["lagging"],
            properties: ["statistics.interval.ms": "100"],
            options: options
        )
        _ = try await member.read(14)
        try await member.consumer.commit([
            KafkaTopicPartitionOffset(topic: "lagging", partition: 0, offset: 3),
            KafkaTopicPartitionOffset(topic: "lagging", partition: 1, offset: 4),
        ])
        let first = KafkaTopicPartition(topic: "lagging", partition: 0)
        let second = KafkaTopicPartition(topic: "lagging", partition: 1)
        try await waitUntil("statistics reporting the lag after the commit") {
            let partitions = latest.withLock { $0?.partitions } ?? [:]
            return partitions[first]?.consumerLag == 7 && partitions[second]?.consumerLag == 0
        }
        try await member.stop()
    }

    @Test func parsingKeepsKnownLagsAndSkipsTheInternalPartitionAndUnknownLags() throws {
        let json = """
            {"name":"rdkafka#consumer-1","topics":{"jobs":{"topic":"jobs","partitions":{
              "0":{"partition":0,"consumer_lag":12,"consumer_lag_stored":3},
              "1":{"partition":1,"consumer_lag":-1},
              "-1":{"partition":-1,"consumer_lag":-1}}},
              "other":{"topic":"other","partitions":{"3":{"partition":3,"consumer_lag":0}}}}}
            """
        let statistics = try #require(KafkaStatistics.parse(Array(json.utf8)))
        #expect(
            statistics.partitions == [
                KafkaTopicPartition(topic: "jobs", partition: 0): .init(consumerLag: 12),
                KafkaTopicPartition(topic: "jobs", partition: 1): .init(consumerLag: nil),
                KafkaTopicPartition(topic: "other", partition: 3): .init(consumerLag: 0),
            ]
        )
        #expect(KafkaStatistics.parse(Array("not json".utf8)) == nil)
    }

    @Test func aHandlerGetsStatisticsWithTheDefaultIntervalWhenTheConfigurationSetsNone() async throws {
        let cluster = try makeCluster(topics: ["quiet": 1])
        let received = Mutex(0)
        var options = KafkaConsumer.Options()
        options.statisticsHandler = { _ in received.withLock { $0 += 1 } }
        let member = try RunningConsumer(cluster, group: "quiet-group", topics: ["quiet"], options: options)
        // librdkafka's own default is 0 (no statistics): any callback proves the default interval was set.
        try await waitUntil("a statistics callback") { received.withLock { $0 } > 0 }
        try await member.stop()
    }
}
