import CRdKafka

/// What one consumer poll returned.
enum RDKafkaConsumerPoll {
    /// A message.
    case message(KafkaMessage)
    /// An error librdkafka reported while polling (most are transient; the client recovers by itself).
    case error(KafkaError)
}

extension RDKafkaClient {
    /// Subscribes the consumer to `topics`.
    ///
    /// - Returns: the error when the subscription is refused.
    func subscribe(_ topics: [String]) -> KafkaError? {
        let partitions = topics.map { KafkaTopicPartition(topic: $0, partition: RD_KAFKA_PARTITION_UA) }
        let error = RDKafkaTopicPartitionList.with(partitions) { rd_kafka_subscribe(pointer, $0) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .subscription, context: "could not subscribe to \(topics)")
        }
        return nil
    }

    /// Polls the consumer queue (blocking: on the poll thread only). Rebalance, commit and statistics callbacks
    /// run inside this call.
    ///
    /// - Parameters:
    ///   - timeout: how long to wait for a message.
    ///   - maxValueBytes: a larger value is not copied (see ``KafkaMessage/droppedValueBytes``).
    /// - Returns: a message, a consumer error, or `nil` when nothing came (or only an end-of-partition event).
    func consumerPoll(timeout: Duration, maxValueBytes: Int = .max) -> RDKafkaConsumerPoll? {
        guard let message = rd_kafka_consumer_poll(pointer, timeout.rdKafkaMilliseconds) else { return nil }
        defer { rd_kafka_message_destroy(message) }
        let error = message.pointee.err
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            guard error != RD_KAFKA_RESP_ERR__PARTITION_EOF else { return nil }
            return .error(.rdKafka(error, code: .consumer, context: "consumer error"))
        }
        return .message(KafkaMessage(copying: message, maxValueBytes: maxValueBytes))
    }

    /// Interrupts a blocking ``consumerPoll(timeout:)`` so the poll thread looks at its state again.
    func wakeConsumerPoll() {
        if let consumerQueue {
            rd_kafka_queue_yield(consumerQueue)
        }
    }

    /// Leaves the group (blocking: on the poll thread only); the final revocation runs inside this call.
    ///
    /// - Returns: the error when librdkafka could not close the consumer cleanly.
    func consumerClose() -> KafkaError? {
        let error = rd_kafka_consumer_close(pointer)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .shutdown, context: "consumer close failed")
        }
        return nil
    }

    /// Commits offsets and waits for the broker (blocking: off the cooperative pool).
    ///
    /// - Returns: the error of the commit, or of the first partition whose commit failed.
    func commit(_ offsets: [KafkaTopicPartitionOffset]) -> KafkaError? {
        RDKafkaTopicPartitionList.with(offsets) { list in
            let error = rd_kafka_commit(pointer, list, 0)
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .rdKafka(error, code: .commit, context: "could not commit \(offsets)")
            }
            if let (partition, error) = RDKafkaTopicPartitionList.firstError(list) {
                return .rdKafka(error, code: .commit, context: "could not commit offsets of \(partition)")
            }
            return nil
        }
    }

    /// Stores offsets for librdkafka's automatic commit (`enable.auto.offset.store=false`); no I/O. A partition no
    /// longer assigned (`_STATE`: revoked or lost) is skipped: its next owner reads it from the committed offset.
    ///
    /// - Returns: the error when the store was refused as a whole, or for an assigned partition.
    func storeOffsets(_ offsets: [KafkaTopicPartitionOffset]) -> KafkaError? {
        RDKafkaTopicPartitionList.with(offsets) { list in
            let error = rd_kafka_offsets_store(pointer, list)
            for entry in RDKafkaTopicPartitionList.entries(list)
            where entry.err != RD_KAFKA_RESP_ERR_NO_ERROR && entry.err != RD_KAFKA_RESP_ERR__STATE {
                return .rdKafka(entry.err, code: .commit, context: "could not store the offset of \(entry.topicPartition)")
            }
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR || error == RD_KAFKA_RESP_ERR__STATE else {
                return .rdKafka(error, code: .commit, context: "could not store offsets \(offsets)")
            }
            return nil
        }
    }

    /// Sends a commit without waiting; its result reaches ``RDKafkaCallbacks/commitFailed`` when it fails.
    ///
    /// - Returns: the error when the commit could not even be sent.
    func commitAsync(_ offsets: [KafkaTopicPartitionOffset]) -> KafkaError? {
        let error = RDKafkaTopicPartitionList.with(offsets) { rd_kafka_commit(pointer, $0, 1) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .commit, context: "could not send commit of \(offsets)")
        }
        return nil
    }

    /// The group's committed offsets (blocking: off the cooperative pool); partitions without one are left out.
    func committedOffsets(
        for partitions: [KafkaTopicPartition],
        timeout: Duration
    ) -> Result<[KafkaTopicPartition: Int64], KafkaError> {
        Self.committedOffsets(of: pointer, for: partitions, timeout: timeout)
    }

    /// The committed offsets of `partitions` in the group of the consumer `handle` (blocking); partitions without
    /// one are left out. Shared with the rebalance callback, which holds only the handle.
    static func committedOffsets(
        of handle: OpaquePointer,
        for partitions: [KafkaTopicPartition],
        timeout: Duration
    ) -> Result<[KafkaTopicPartition: Int64], KafkaError> {
        RDKafkaTopicPartitionList.with(partitions) { list in
            let error = rd_kafka_committed(handle, list, timeout.rdKafkaMilliseconds)
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(.rdKafka(error, code: .partitionControl, context: "could not read committed offsets"))
            }
            var offsets: [KafkaTopicPartition: Int64] = [:]
            for entry in RDKafkaTopicPartitionList.entries(list) where entry.offset >= 0 {
                offsets[entry.topicPartition] = entry.offset
            }
            return .success(offsets)
        }
    }

    /// Stops fetching `partitions` (the consumer keeps polling).
    func pause(_ partitions: [KafkaTopicPartition]) -> KafkaError? {
        let error = RDKafkaTopicPartitionList.with(partitions) { rd_kafka_pause_partitions(pointer, $0) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .partitionControl, context: "pause failed")
        }
        return nil
    }

    /// Restarts fetching `partitions`.
    func resume(_ partitions: [KafkaTopicPartition]) -> KafkaError? {
        let error = RDKafkaTopicPartitionList.with(partitions) { rd_kafka_resume_partitions(pointer, $0) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .partitionControl, context: "resume failed")
        }
        return nil
    }

    /// Seeks partitions asynchronously (timeout 0): librdkafka reports no per-partition error here, and a seek
    /// that fails leaves the partition where it was.
    ///
    /// - Returns: librdkafka's message when it refused the request as a whole.
    func seek(_ targets: [KafkaTopicPartitionOffset]) -> String? {
        guard let error = RDKafkaTopicPartitionList.with(targets, { rd_kafka_seek_partitions(pointer, $0, 0) }) else {
            return nil
        }
        defer { rd_kafka_error_destroy(error) }
        return String(cString: rd_kafka_error_string(error))
    }
}

extension KafkaMessage {
    /// Copies a polled message's topic, key, value, headers and timestamp; a value larger than `maxValueBytes` is
    /// not copied (only its size is kept).
    init(copying pointer: UnsafeMutablePointer<rd_kafka_message_t>, maxValueBytes: Int = .max) {
        let raw = pointer.pointee
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        if rd_kafka_message_headers(pointer, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            var index = 0
            var name: UnsafePointer<CChar>?
            var valuePointer: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(headerList, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let headerValue = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(key: name.map { String(cString: $0) } ?? "", value: headerValue))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        self.init(
            topic: String(cString: rd_kafka_topic_name(raw.rkt)),
            partition: raw.partition,
            offset: raw.offset,
            key: raw.key.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) },
            value: raw.len > maxValueBytes ? nil : raw.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.len)) },
            headers: headers,
            timestampMilliseconds: timestamp >= 0 ? timestamp : nil,
            droppedValueBytes: raw.payload != nil && raw.len > maxValueBytes ? raw.len : nil
        )
    }
}
