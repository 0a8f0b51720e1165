import CRdKafka
import Logging

/// The Swift side of librdkafka's C callbacks, in Swift types, found through the handle's opaque pointer.
///
/// ``RDKafkaClient`` retains it once when it creates the handle and releases it once after destroying the
/// handle (or at once when the handle could not be created), so it outlives every callback. A C callback
/// cannot capture context, so each one installed by ``install(on:)`` finds this object through
/// `rd_kafka_opaque` and calls the matching closure. Every handler runs on the thread that polls the handle.
final class RDKafkaCallbacks: Sendable {
    /// Receives librdkafka's own log lines.
    let logger: Logger
    /// Called for each rebalance, inside `rd_kafka_consumer_poll`; it must apply the change
    /// (``RDKafkaRebalance/apply()``) before returning.
    let rebalance: (@Sendable (RDKafkaRebalance) -> Void)?
    /// Called with the result of every offset commit (librdkafka's automatic ones and the application's, sync or
    /// not): the offsets committed, and the failure of the commit as a whole or of its first failed partition.
    /// A commit with nothing to commit (`_NO_OFFSET`) is not reported.
    let committed: (@Sendable (_ offsets: [KafkaTopicPartitionOffset], _ failure: KafkaError?) -> Void)?
    /// Called with each statistics JSON document (`statistics.interval.ms`); the buffer is valid during the call.
    let statistics: (@Sendable (UnsafeRawBufferPointer) -> Void)?
    /// Called after each delivery report of a producer, once the waiting `send` has been resumed.
    let deliveryReported: (@Sendable () -> Void)?

    init(
        logger: Logger,
        rebalance: (@Sendable (RDKafkaRebalance) -> Void)? = nil,
        committed: (@Sendable (_ offsets: [KafkaTopicPartitionOffset], _ failure: KafkaError?) -> Void)? = nil,
        statistics: (@Sendable (UnsafeRawBufferPointer) -> Void)? = nil,
        deliveryReported: (@Sendable () -> Void)? = nil
    ) {
        self.logger = logger
        self.rebalance = rebalance
        self.committed = committed
        self.statistics = statistics
        self.deliveryReported = deliveryReported
    }

    /// The callbacks of `handle`, set by ``RDKafkaClient`` as its opaque pointer.
    static func of(_ handle: OpaquePointer) -> RDKafkaCallbacks? {
        guard let opaque = rd_kafka_opaque(handle) else { return nil }
        return Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
    }

    /// Installs the C callbacks on a configuration: the log callback always, each other one when its closure is set.
    func install(on conf: OpaquePointer) {
        rd_kafka_conf_set_log_cb(conf) { handle, level, facility, message in
            guard let handle, let callbacks = RDKafkaCallbacks.of(handle) else { return }
            callbacks.log(level: level, facility: facility, message: message)
        }
        if rebalance != nil {
            rd_kafka_conf_set_rebalance_cb(conf) { handle, error, partitions, _ in
                guard let handle, let rebalance = RDKafkaCallbacks.of(handle)?.rebalance else { return }
                rebalance(RDKafkaRebalance(handle: handle, error: error, list: partitions))
            }
        }
        if committed != nil {
            rd_kafka_conf_set_offset_commit_cb(conf) { handle, error, offsets, _ in
                guard let handle, let committed = RDKafkaCallbacks.of(handle)?.committed else { return }
                guard error != RD_KAFKA_RESP_ERR__NO_OFFSET else { return }
                var succeeded: [KafkaTopicPartitionOffset] = []
                if error == RD_KAFKA_RESP_ERR_NO_ERROR, let offsets {
                    for entry in RDKafkaTopicPartitionList.entries(offsets)
                    where entry.err == RD_KAFKA_RESP_ERR_NO_ERROR && entry.offset >= 0 {
                        succeeded.append(KafkaTopicPartitionOffset(entry.topicPartition, offset: entry.offset))
                    }
                }
                committed(succeeded, RDKafkaCallbacks.commitFailure(error, offsets))
            }
        }
        if statistics != nil {
            rd_kafka_conf_set_stats_cb(conf) { handle, json, length, _ in
                if let handle, let json, let statistics = RDKafkaCallbacks.of(handle)?.statistics {
                    statistics(UnsafeRawBufferPointer(start: json, count: length))
                }
                // 0: librdkafka frees the JSON buffer.
                return 0
            }
        }
        if deliveryReported != nil {
            rd_kafka_conf_set_dr_msg_cb(conf) { handle, message, _ in
                guard let message else { return }
                RDKafkaDelivery.complete(message.pointee)
                if let handle, let deliveryReported = RDKafkaCallbacks.of(handle)?.deliveryReported {
                    deliveryReported()
                }
            }
        }
    }

    /// The failure a commit's result reports, if any (`_NO_OFFSET`, nothing to commit, is none).
    private static func commitFailure(
        _ error: rd_kafka_resp_err_t,
        _ offsets: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
    ) -> KafkaError? {
        if error != RD_KAFKA_RESP_ERR_NO_ERROR && error != RD_KAFKA_RESP_ERR__NO_OFFSET {
            return .rdKafka(error, code: .commit, context: "offset commit failed")
        }
        if let offsets, let (partition, partitionError) = RDKafkaTopicPartitionList.firstError(offsets) {
            return .rdKafka(partitionError, code: .commit, context: "offset commit of \(partition) failed")
        }
        return nil
    }

    private func log(level: Int32, facility: UnsafePointer<CChar>?, message: UnsafePointer<CChar>?) {
        let swiftLevel: Logger.Level
        switch level {
        case ...2: swiftLevel = .critical
        case 3: swiftLevel = .error
        case 4: swiftLevel = .warning
        case 5, 6: swiftLevel = .info
        default: swiftLevel = .debug
        }
        guard logger.logLevel <= swiftLevel else { return }
        let facilityText = facility.map { String(cString: $0) } ?? "-"
        let text = message.map { String(cString: $0) } ?? ""
        logger.log(level: swiftLevel, "\(text)", metadata: ["rdkafka.facility": "\(facilityText)"])
    }
}
