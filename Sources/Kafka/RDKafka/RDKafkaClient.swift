import CRdKafka
import Logging
import Synchronization

/// Owns one `rd_kafka_t` handle and the Swift context its callbacks reach through the opaque pointer.
///
/// `@unchecked Sendable` is safe because librdkafka's handle is thread-safe for every call mioctx makes
/// on it, the pointer itself never changes after `init`, and `deinit` runs only when no Swift code can
/// still reach the handle.
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
    /// The retained callback context; released once, after the handle is destroyed.
    private let context: Unmanaged<RDKafkaCallbackContext>
    /// Topic handles kept until the client is destroyed (see ``keepTopic(_:)``).
    private let topics = Mutex<[String: OpaquePointer]>([:])
    /// The consumer queue of a consumer handle (see ``consumerQueue``).
    private let consumerQueueHandle = Mutex<OpaquePointer?>(nil)

    /// Creates a handle from `properties`.
    ///
    /// - Parameters:
    ///   - configure: installs callbacks on the configuration before the handle is created.
    init(
        kind: Kind,
        properties: [String: String],
        context: RDKafkaCallbackContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        let conf = try RDKafkaConfig.make(properties)
        let retained = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())
        rd_kafka_conf_set_log_cb(conf) { handle, level, facility, message in
            guard let handle, let context = RDKafkaCallbackContext.from(handle) else { return }
            context.log(level: level, facility: facility, message: message)
        }
        configure(conf)

        let capacity = 512
        var buffer = [CChar](repeating: 0, count: capacity)
        guard let handle = rd_kafka_new(kind.rdKafkaType, conf, &buffer, capacity) else {
            // rd_kafka_new does not take ownership of conf when it fails.
            rd_kafka_conf_destroy(conf)
            retained.release()
            let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw KafkaError(code: .clientCreation, message: "could not create Kafka client: \(message)")
        }
        self.pointer = handle
        self.context = retained
    }

    deinit {
        // Everything tied to the handle goes before the handle.
        consumerQueueHandle.withLock { queue in
            if let queue { rd_kafka_queue_destroy(queue) }
        }
        topics.withLock { topics in
            for handle in topics.values {
                rd_kafka_topic_destroy(handle)
            }
        }
        rd_kafka_destroy(pointer)
        context.release()
    }

    /// The consumer's queue (nil for a producer), owned by this client and destroyed before its handle.
    var consumerQueue: OpaquePointer? {
        consumerQueueHandle.withLock { queue in
            if queue == nil {
                queue = rd_kafka_queue_get_consumer(pointer)
            }
            return queue
        }
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
}

/// What librdkafka's C callbacks need from Swift, found through the handle's opaque pointer.
class RDKafkaCallbackContext: @unchecked Sendable {
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    static func from(_ handle: OpaquePointer) -> RDKafkaCallbackContext? {
        guard let opaque = rd_kafka_opaque(handle) else { return nil }
        return Unmanaged<RDKafkaCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    }

    func log(level: Int32, facility: UnsafePointer<CChar>?, message: UnsafePointer<CChar>?) {
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
