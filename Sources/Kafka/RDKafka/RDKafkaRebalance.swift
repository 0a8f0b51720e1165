import CRdKafka

/// One call of librdkafka's rebalance callback, in Swift types.
///
/// Valid only during the callback: it borrows the handle and librdkafka's partition list, so it is not
/// `Sendable` and must not be kept. With a rebalance callback installed, the application itself applies
/// each change (``apply()``), librdkafka does not.
struct RDKafkaRebalance {
    /// What the group coordinator decided.
    enum Kind {
        /// ``RDKafkaRebalance/partitions`` are assigned to this member.
        case assign
        /// ``RDKafkaRebalance/partitions`` are taken away; `lost` when the session expired and they already
        /// belong to another member (no commit for them can succeed).
        case revoke(lost: Bool)
        /// The rebalance failed; applying it drops the whole assignment.
        case failed(KafkaError)
    }

    let kind: Kind
    /// The partitions assigned or revoked.
    let partitions: [KafkaTopicPartition]
    /// Whether the group uses the cooperative protocol (`cooperative-sticky`): changes are incremental.
    let isCooperative: Bool
    private let handle: OpaquePointer
    private let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?

    init(handle: OpaquePointer, error: rd_kafka_resp_err_t, list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        self.handle = handle
        self.list = list
        self.partitions = list.map { RDKafkaTopicPartitionList.partitions($0) } ?? []
        self.isCooperative = String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
        switch error {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            self.kind = .assign
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            self.kind = .revoke(lost: rd_kafka_assignment_lost(handle) != 0)
        default:
            self.kind = .failed(.rdKafka(error, code: .subscription, context: "rebalance failed"))
        }
    }

    /// Resumes `partitions` in librdkafka (inside the callback, before a revocation is applied): librdkafka keeps a
    /// pause on a partition across its unassign, so a revoked partition left paused would come back paused.
    ///
    /// - Returns: the error when librdkafka refused the resume.
    func resume(_ partitions: [KafkaTopicPartition]) -> KafkaError? {
        let error = RDKafkaTopicPartitionList.with(partitions) { rd_kafka_resume_partitions(handle, $0) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .partitionControl, context: "resume of revoked partitions failed")
        }
        return nil
    }

    /// Sets where assigned partitions start (before ``apply()``); the others start at the committed offset.
    func setStartOffsets(_ offsets: [KafkaTopicPartition: Int64]) {
        guard !offsets.isEmpty, let list else { return }
        for index in 0..<Int(list.pointee.cnt) {
            let entry = list.pointee.elems.advanced(by: index)
            if let offset = offsets[entry.pointee.topicPartition] {
                entry.pointee.offset = offset
            }
        }
    }

    /// The group's committed offsets of `partitions` (blocking, inside the callback); partitions without one are
    /// left out.
    func committedOffsets(for partitions: [KafkaTopicPartition], timeout: Duration) -> Result<[KafkaTopicPartition: Int64], KafkaError> {
        RDKafkaClient.committedOffsets(of: handle, for: partitions, timeout: timeout)
    }

    /// Stores `offsets` for the next commit (after ``apply()``, once the partitions are assigned).
    func storeOffsets(_ offsets: [KafkaTopicPartition: Int64]) -> KafkaError? {
        let list = offsets.map { KafkaTopicPartitionOffset($0.key, offset: $0.value) }
        let error = RDKafkaTopicPartitionList.with(list) { rd_kafka_offsets_store(handle, $0) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .commit, context: "could not store the offsets of resumed partitions")
        }
        return nil
    }

    /// Applies the change in librdkafka: an incremental assign or unassign with the cooperative protocol; with the
    /// eager one, an assign of the whole new assignment, or of nothing on a revocation. A failed rebalance drops
    /// the whole assignment.
    ///
    /// - Returns: the error of an incremental change librdkafka refused (eager changes report none).
    func apply() -> KafkaError? {
        switch kind {
        case .assign where isCooperative:
            return rd_kafka_incremental_assign(handle, list).map {
                KafkaError.rdKafka(consuming: $0, code: .subscription, context: "incremental assign failed")
            }
        case .revoke where isCooperative:
            return rd_kafka_incremental_unassign(handle, list).map {
                KafkaError.rdKafka(consuming: $0, code: .subscription, context: "incremental unassign failed")
            }
        case .assign:
            rd_kafka_assign(handle, list)
            return nil
        case .revoke, .failed:
            rd_kafka_assign(handle, nil)
            return nil
        }
    }
}
