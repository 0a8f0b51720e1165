import CRdKafka
import Synchronization

/// Owns one `rd_kafka_t` handle and the Swift callbacks librdkafka reaches through its opaque pointer.
///
/// `@unchecked Sendable` is safe because librdkafka's handle is thread-safe for every call mioctx makes
/// on it, the pointers never change after `init` (the topic handles are behind a mutex), and `deinit` runs
/// only when no Swift code can still reach the handle.
///
/// The calls of each kind of client are in extensions: `RDKafkaClient+Consumer.swift`,
/// `RDKafkaClient+Producer.swift`, `RDKafkaClient+Admin.swift`, `RDKafkaTopicMetadata.swift`.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind {
        case producer
        case consumer

        var rdKafkaType: rd_kafka_type_t {
            switch self {
            case .producer: return RD_KAFKA_PRODUCER
            case .consumer: return RD_KAFKA_CONSUMER
            }
        }
    }

    let pointer: OpaquePointer
    /// The consumer queue of a consumer handle (`nil` for a producer), destroyed before the handle.
    let consumerQueue: OpaquePointer?
    /// The retained callbacks; released once, after the handle is destroyed.
    private let callbacks: Unmanaged<RDKafkaCallbacks>
    /// Topic handles kept until the client is destroyed (see ``keepTopic(_:)``).
    private let topics = Mutex<[String: OpaquePointer]>([:])

    /// Creates a handle from `properties`.
    ///
    /// A consumer's main queue is routed to its consumer queue (`rd_kafka_poll_set_consumer`), so that one
    /// ``consumerPoll(timeout:)`` loop serves messages, rebalances, commit results, statistics and logs.
    ///
    /// - Parameters:
    ///   - kind: producer or consumer.
    ///   - properties: librdkafka properties, each validated by librdkafka.
    ///   - callbacks: the Swift side of librdkafka's callbacks; retained until the handle is destroyed.
    /// - Throws: ``KafkaError`` with code `configuration` naming a refused property, or `clientCreation`.
    init(kind: Kind, properties: [String: String], callbacks: RDKafkaCallbacks) throws(KafkaError) {
        let conf = try RDKafkaConfig.make(properties)
        let retained = Unmanaged.passRetained(callbacks)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())
        callbacks.install(on: conf)

        let capacity = 512
        var buffer = [CChar](repeating: 0, count: capacity)
        guard let handle = rd_kafka_new(kind.rdKafkaType, conf, &buffer, capacity) else {
            // rd_kafka_new does not take ownership of conf when it fails, and no callback can run any more.
            rd_kafka_conf_destroy(conf)
            retained.release()
            let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw KafkaError(code: .clientCreation, message: "could not create Kafka client: \(message)")
        }
        self.pointer = handle
        self.callbacks = retained
        if kind == .consumer {
            rd_kafka_poll_set_consumer(handle)
            self.consumerQueue = rd_kafka_queue_get_consumer(handle)
        } else {
            self.consumerQueue = nil
        }
    }

    deinit {
        // Everything tied to the handle goes before the handle.
        if let consumerQueue { rd_kafka_queue_destroy(consumerQueue) }
        topics.withLock { topics in
            for handle in topics.values {
                rd_kafka_topic_destroy(handle)
            }
        }
        rd_kafka_destroy(pointer)
        callbacks.release()
    }

    /// A topic handle for `name`, created once and kept for the client's lifetime: librdkafka then keeps the
    /// topic's metadata, and messages to the topic never wait for a first lookup. `nil` if librdkafka refused
    /// the name (see `rd_kafka_last_error`).
    func keepTopic(_ name: String) -> OpaquePointer? {
        topics.withLock { topics in
            if let handle = topics[name] {
                return handle
            }
            guard let handle = rd_kafka_topic_new(pointer, name, nil) else { return nil }
            topics[name] = handle
            return handle
        }
    }
}
