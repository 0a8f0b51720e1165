import CoreMetrics
import Kafka
import Metrics
import Synchronization

/// Metrics of the ``KafkaWorker``.
///
/// - `mioctx_offset_commits_total` / `mioctx_offset_commit_failures_total`: commit requests that succeeded / failed.
/// - `mioctx_partitions_paused`: assigned partitions paused for backpressure (the consumer buffer is full).
/// - `mioctx_partitions_assigned`: partitions assigned to this member.
/// - `mioctx_kafka_rewinds_undone_total`: times librdkafka moved a partition back on its own and the consumer
///   sought it back to its position (the repeated message was dropped; see docs/kafka.md).
/// - `mioctx_kafka_offsets_skipped_total`: input offsets the consumer jumped over within a partition, never received:
///   deleted by the broker's retention before they were read (jobs lost before mioctx saw them), or compacted.
/// - `mioctx_partitions_lost_total`: partitions revoked as lost (the session or generation expired before this
///   member could commit them): their work since the last commit is repeated by their next owner.
/// - `mioctx_kafka_commit_hold`: 1 while the worker takes no new job because its finished work waited longer than
///   `processing.maxUncommittedTime` for a commit (the group is rebalancing, or commits fail); else 0.
///   `mioctx_kafka_commit_holds_total` counts such holds.
/// - `mioctx_rebalances_total{event}`: `assigned`, `revoked` or `lost` (session expired) partition sets.
/// - `mioctx_consumer_lag{topic, partition}`: messages between the partition's end and the committed offset, from
///   librdkafka's statistics; a partition's series disappears when it is no longer reported.
final class WorkerMetrics: Sendable {
    private let factory: any MetricsFactory
    private let commits: Counter
    private let commitFailures: Counter
    private let paused: Gauge
    private let assigned: Gauge
    private let rewindsUndone: Counter
    private let offsetsSkipped: Counter
    private let lost: Counter
    private let commitHold: Gauge
    private let commitHolds: Counter
    private let lagGauges = Mutex<[KafkaTopicPartition: Gauge]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
        commits = Counter(label: "mioctx_offset_commits_total", factory: factory)
        commitFailures = Counter(label: "mioctx_offset_commit_failures_total", factory: factory)
        paused = Gauge(label: "mioctx_partitions_paused", factory: factory)
        assigned = Gauge(label: "mioctx_partitions_assigned", factory: factory)
        rewindsUndone = Counter(label: "mioctx_kafka_rewinds_undone_total", factory: factory)
        offsetsSkipped = Counter(label: "mioctx_kafka_offsets_skipped_total", factory: factory)
        lost = Counter(label: "mioctx_partitions_lost_total", factory: factory)
        commitHold = Gauge(label: "mioctx_kafka_commit_hold", factory: factory)
        commitHolds = Counter(label: "mioctx_kafka_commit_holds_total", factory: factory)
        commitHold.record(0)
    }

    func holdingForCommits(_ holding: Bool) {
        commitHold.record(holding ? 1 : 0)
        if holding { commitHolds.increment() }
    }

    func committed(success: Bool) {
        (success ? commits : commitFailures).increment()
    }

    func partitionsPaused(_ count: Int) {
        paused.record(count)
    }

    func partitionsAssigned(_ count: Int) {
        assigned.record(count)
    }

    func undidRewinds(_ count: Int) {
        if count > 0 { rewindsUndone.increment(by: count) }
    }

    func skippedOffsets(_ count: Int64) {
        if count > 0 { offsetsSkipped.increment(by: count) }
    }

    func partitionsLost(_ count: Int) {
        if count > 0 { lost.increment(by: count) }
    }

    func rebalanced(_ event: String) {
        Counter(label: "mioctx_rebalances_total", dimensions: [("event", event)], factory: factory).increment()
    }

    /// Sets the lag gauges from librdkafka's statistics; removes the series of partitions without a known lag.
    func update(_ statistics: KafkaStatistics) {
        let factory = self.factory
        let stale = lagGauges.withLock { gauges -> [Gauge] in
            var stale: [Gauge] = []
            for (partition, gauge) in gauges where statistics.partitions[partition]?.consumerLag == nil {
                stale.append(gauge)
                gauges[partition] = nil
            }
            for (partition, figures) in statistics.partitions {
                guard let lag = figures.consumerLag else { continue }
                let gauge = gauges[partition] ?? Gauge(
                    label: "mioctx_consumer_lag",
                    dimensions: [("topic", partition.topic), ("partition", String(partition.partition))],
                    factory: factory
                )
                gauges[partition] = gauge
                gauge.record(lag)
            }
            return stale
        }
        for gauge in stale {
            gauge.destroy()
        }
    }
}
