import CRdKafka
public import Logging
public import ServiceLifecycle
import Synchronization

/// Sends messages to Kafka and reports, for each one, the broker's acknowledgement.
///
/// `send` returns only once the broker acknowledged the message (its delivery report), so a caller that
/// awaits it knows the message is safely stored. Idempotence (`enable.idempotence=true`) is on unless the
/// configuration turns it off, which gives ordered, de-duplicated retries per partition.
///
/// The producer is a `Service`: delivery reports are served while ``run()`` runs, on a dedicated thread.
/// When `run()` ends (graceful shutdown, cancellation or ``shutdown()``), it stops accepting messages,
/// flushes those in flight within ``Options/flushTimeout``, and fails the remaining ones with
/// ``KafkaError/Code/shutdown``.
public final class KafkaProducer: Service, Sendable {
    /// Behaviour that is not a librdkafka property.
    public struct Options: Sendable {
        /// How long shutdown waits for messages in flight to be acknowledged. Default 10 s.
        public var flushTimeout: Duration = .seconds(10)
        /// How long one poll waits for delivery reports. Default 100 ms.
        public var pollInterval: Duration = .milliseconds(100)

        /// Creates options with the defaults.
        public init() {}
    }

    /// librdkafka defaults that mioctx sets unless the configuration overrides them.
    static let defaultProperties: [String: String] = [
        "enable.idempotence": "true",
        "linger.ms": "5",
    ]

    private let client: RDKafkaClient
    private let options: Options
    private let logger: Logger
    private let pollThread = RDKafkaPollThread(name: "mioctx.kafka.producer")
    private let accepting = Atomic<Bool>(true)

    /// Creates a producer; nothing is sent until ``run()`` serves delivery reports.
    ///
    /// - Throws: ``KafkaError`` with code `configuration` naming a property librdkafka refused.
    public init(configuration: KafkaConfiguration, options: Options = Options(), logger: Logger) throws(KafkaError) {
        self.options = options
        self.logger = logger
        self.client = try RDKafkaClient(
            kind: .producer,
            properties: configuration.withDefaults(Self.defaultProperties),
            context: RDKafkaCallbackContext(logger: logger)
        ) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                let box = Unmanaged<DeliveryBox>.fromOpaque(opaque).takeRetainedValue()
                box.complete(message.pointee)
            }
        }
    }

    /// Serves delivery reports until graceful shutdown, cancellation or ``shutdown()``; then flushes.
    public func run() async throws {
        let client = self.client
        let options = self.options
        let logger = self.logger
        await withTaskCancellationOrGracefulShutdownHandler {
            await pollThread.run { thread in
                let pollMilliseconds = Int32(options.pollInterval.milliseconds)
                while !thread.isStopRequested {
                    rd_kafka_poll(client.pointer, pollMilliseconds)
                }
                Self.drain(client: client, timeout: options.flushTimeout, logger: logger)
            }
        } onCancelOrGracefulShutdown: {
            self.shutdown()
        }
    }

    /// Stops accepting messages and makes ``run()`` flush and return.
    public func shutdown() {
        accepting.store(false, ordering: .releasing)
        pollThread.requestStop()
    }

    /// Sends one message and waits for the broker's acknowledgement.
    ///
    /// - Parameters:
    ///   - topic: the topic to write to.
    ///   - partition: a partition, or `nil` to let the partitioner choose from the key.
    ///   - key: the message key (`nil` for none).
    ///   - value: the message value (`nil` for a tombstone).
    ///   - headers: headers, in order.
    /// - Returns: where the broker stored the message.
    /// - Throws: ``KafkaError`` with code `produce` when the message could not be enqueued, `delivery` when
    ///   the broker refused it or it timed out, `shutdown` after ``shutdown()``. `isRetriable` tells whether
    ///   sending it again may succeed.
    public func send(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [KafkaHeader] = []
    ) async throws(KafkaError) -> KafkaDeliveryReport {
        while true {
            guard accepting.load(ordering: .acquiring) else {
                throw KafkaError(code: .shutdown, message: "producer is shut down; message to '\(topic)' not sent")
            }
            let result = await withCheckedContinuation { continuation in
                let box = DeliveryBox(topic: topic, continuation: continuation)
                let opaque = Unmanaged.passRetained(box).toOpaque()
                let error = Self.enqueue(
                    client: client,
                    topic: topic,
                    partition: partition,
                    key: key,
                    value: value,
                    headers: headers,
                    opaque: opaque
                )
                if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                    // librdkafka did not take the message, so the callback will never release the box.
                    Unmanaged<DeliveryBox>.fromOpaque(opaque).release()
                    continuation.resume(
                        returning: .failure(.rdKafka(error, code: .produce, context: "could not send to '\(topic)'"))
                    )
                }
            }
            switch result {
            case .success(let report):
                return report
            case .failure(let error) where error.rdKafkaErrorCode == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue:
                // The local queue is full: wait for delivery reports to make room, as librdkafka advises.
                do {
                    try await Task.sleep(for: .milliseconds(5))
                } catch {
                    throw KafkaError(code: .produce, message: "cancelled while the send queue to '\(topic)' was full")
                }
            case .failure(let error):
                if let fatal = client.fatalError() {
                    throw fatal
                }
                throw error
            }
        }
    }

    /// Looks `topic` up in the cluster's metadata and keeps it known to the producer.
    ///
    /// librdkafka looks a topic up the first time a message is sent to it, on its periodic timer: the first
    /// messages then wait up to a second. Preparing the topics a producer will write to, before the first
    /// message, removes that wait, and tells whether the topics exist.
    ///
    /// - Parameters:
    ///   - topic: the topic.
    ///   - timeout: how long to wait for the cluster's answer.
    /// - Returns: the topic's partition count, or `nil` when the cluster does not know the topic (a broker
    ///   with `auto.create.topics.enable` creates it on the first message).
    /// - Throws: ``KafkaError`` with code `timeout` when the cluster did not answer in time, `admin` when it
    ///   reported another error for the topic (for example, not authorized).
    public func prepare(topic: String, timeout: Duration = .seconds(10)) async throws(KafkaError) -> Int? {
        let client = self.client
        let result = await runBlocking { client.topicMetadata(topic, timeout: timeout) }
        switch result {
        case .success(.exists(let partitions)):
            return partitions
        case .success(.unknown):
            return nil
        case .failure(let error):
            throw error
        }
    }

    /// Waits until every message sent so far is acknowledged or failed.
    ///
    /// - Throws: ``KafkaError`` with code `timeout` when messages are still in flight after `timeout`.
    public func flush(timeout: Duration) async throws(KafkaError) {
        let client = self.client
        let error = await runBlocking {
            rd_kafka_flush(client.pointer, Int32(timeout.milliseconds))
        }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw .rdKafka(error, code: .timeout, context: "messages still in flight after flushing for \(timeout)")
        }
    }

    private static func enqueue(
        client: RDKafkaClient,
        topic: String,
        partition: Int32?,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [KafkaHeader],
        opaque: UnsafeMutableRawPointer
    ) -> rd_kafka_resp_err_t {
        let cHeaders = headers.isEmpty ? nil : makeHeaders(headers)
        let error = withOptionalBytes(key) { keyPointer, keyCount in
            withOptionalBytes(value) { valuePointer, valueCount in
                mioctx_rd_kafka_produce(
                    client.pointer,
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
        if error != RD_KAFKA_RESP_ERR_NO_ERROR, let cHeaders {
            rd_kafka_headers_destroy(cHeaders)
        }
        return error
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

    /// Flushes what is in flight, then fails what is left so no caller waits forever.
    private static func drain(client: RDKafkaClient, timeout: Duration, logger: Logger) {
        let error = rd_kafka_flush(client.pointer, Int32(timeout.milliseconds))
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            let left = rd_kafka_outq_len(client.pointer)
            logger.error("Kafka producer shut down with messages not acknowledged", metadata: ["kafka.unacknowledged": "\(left)"])
            rd_kafka_purge(client.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            rd_kafka_poll(client.pointer, 0)
        }
    }
}

/// Carries one waiting `send` through librdkafka's per-message opaque to the delivery report callback.
private final class DeliveryBox: Sendable {
    let topic: String
    let continuation: CheckedContinuation<Result<KafkaDeliveryReport, KafkaError>, Never>

    init(topic: String, continuation: CheckedContinuation<Result<KafkaDeliveryReport, KafkaError>, Never>) {
        self.topic = topic
        self.continuation = continuation
    }

    func complete(_ message: rd_kafka_message_t) {
        if message.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            continuation.resume(
                returning: .success(KafkaDeliveryReport(topic: topic, partition: message.partition, offset: message.offset))
            )
        } else {
            let error = KafkaError.rdKafka(message.err, code: .delivery, context: "message to '\(topic)' not delivered")
            continuation.resume(returning: .failure(error))
        }
    }
}

/// Calls `body` with a pointer to `bytes` (or NULL and 0 for `nil`).
func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { buffer in
        // An empty array may have a nil base address; librdkafka treats (non-NULL, 0) as empty, not null.
        body(buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1), buffer.count)
    }
}

extension Duration {
    /// The duration in whole milliseconds, clamped to what librdkafka's `int` timeouts accept.
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        let total = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int(clamping: min(max(total, 0), Int64(Int32.max)))
    }
}
