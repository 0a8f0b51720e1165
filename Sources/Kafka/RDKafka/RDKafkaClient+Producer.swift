import CRdKafka

/// Carries one waiting `send` through librdkafka's per-message opaque to the delivery report callback.
///
/// ``RDKafkaClient/produce(topic:partition:key:value:headers:delivery:)`` retains it once; the delivery report
/// (``complete(_:)``) releases it, or `produce` itself when librdkafka did not take the message.
final class RDKafkaDelivery: Sendable {
    let topic: String
    let continuation: CheckedContinuation<Result<KafkaDeliveryReport, KafkaError>, Never>

    init(topic: String, continuation: CheckedContinuation<Result<KafkaDeliveryReport, KafkaError>, Never>) {
        self.topic = topic
        self.continuation = continuation
    }

    /// Resumes the waiting `send` of a delivery report's message, releasing its delivery.
    static func complete(_ message: rd_kafka_message_t) {
        guard let opaque = message._private else { return }
        let delivery = Unmanaged<RDKafkaDelivery>.fromOpaque(opaque).takeRetainedValue()
        let topic = delivery.topic
        if message.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            delivery.continuation.resume(
                returning: .success(KafkaDeliveryReport(topic: topic, partition: message.partition, offset: message.offset))
            )
        } else {
            let error = KafkaError.rdKafka(message.err, code: .delivery, context: "message to '\(topic)' not delivered")
            delivery.continuation.resume(returning: .failure(error))
        }
    }
}

extension RDKafkaClient {
    /// Enqueues one message (copied); its delivery report resumes `delivery`'s continuation.
    ///
    /// - Returns: the error when librdkafka did not take the message (`delivery` is then not resumed: the
    ///   caller reports the error).
    func produce(
        topic: String,
        partition: Int32?,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [KafkaHeader],
        delivery: RDKafkaDelivery
    ) -> KafkaError? {
        let opaque = Unmanaged.passRetained(delivery).toOpaque()
        let cHeaders = headers.isEmpty ? nil : Self.makeHeaders(headers)
        let error = withOptionalBytes(key) { keyPointer, keyCount in
            withOptionalBytes(value) { valuePointer, valueCount in
                mioctx_rd_kafka_produce(
                    pointer,
                    topic,
                    partition ?? RD_KAFKA_PARTITION_UA,
                    keyPointer,
                    keyCount,
                    valuePointer,
                    valueCount,
                    cHeaders,
                    opaque
                )
            }
        }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            // librdkafka took neither the message nor its headers: no delivery report will release the delivery.
            if let cHeaders { rd_kafka_headers_destroy(cHeaders) }
            Unmanaged<RDKafkaDelivery>.fromOpaque(opaque).release()
            return .rdKafka(error, code: .produce, context: "could not send to '\(topic)'")
        }
        return nil
    }

    /// Serves delivery reports for up to `timeout` (blocking: on the producer's poll thread).
    func poll(timeout: Duration) {
        rd_kafka_poll(pointer, timeout.rdKafkaMilliseconds)
    }

    /// Waits until every message enqueued so far is acknowledged or failed (blocking: off the cooperative pool).
    ///
    /// - Returns: a `timeout` error when messages are still in flight after `timeout`.
    func flush(timeout: Duration) -> KafkaError? {
        let error = rd_kafka_flush(pointer, timeout.rdKafkaMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .rdKafka(error, code: .timeout, context: "messages still in flight after flushing for \(timeout)")
        }
        return nil
    }

    /// Flushes what is in flight within `timeout`, then fails what is left (their delivery reports are served
    /// here), so that no `send` waits forever (blocking: on the producer's poll thread).
    ///
    /// - Returns: how many messages were left unacknowledged, or `nil` when the flush acknowledged every one.
    func drain(timeout: Duration) -> Int? {
        let error = rd_kafka_flush(pointer, timeout.rdKafkaMilliseconds)
        guard error != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        let left = rd_kafka_outq_len(pointer)
        rd_kafka_purge(pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        rd_kafka_poll(pointer, 0)
        return Int(left)
    }

    /// The fatal error of an idempotent producer, if one was raised.
    func fatalError() -> KafkaError? {
        let capacity = 512
        var buffer = [CChar](repeating: 0, count: capacity)
        let code = rd_kafka_fatal_error(pointer, &buffer, capacity)
        guard code != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return KafkaError(
            code: .delivery,
            message: "fatal producer error: \(message)",
            rdKafkaErrorCode: code.rawValue,
            rdKafkaErrorName: String(cString: rd_kafka_err2name(code)),
            isRetriable: false,
            isFatal: true
        )
    }

    private static func makeHeaders(_ headers: [KafkaHeader]) -> OpaquePointer {
        let list = rd_kafka_headers_new(headers.count)!
        for header in headers {
            withOptionalBytes(header.value) { pointer, count in
                _ = rd_kafka_header_add(list, header.key, -1, pointer, count)
            }
        }
        return list
    }
}

/// Calls `body` with a pointer to `bytes` (or NULL and 0 for `nil`).
private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { buffer in
        // An empty array may have a nil base address; librdkafka treats (non-NULL, 0) as empty, not null.
        body(buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1), buffer.count)
    }
}
