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
    ///
    /// One produce request in flight per broker connection: with more, a success acknowledged after a retriable
    /// error makes librdkafka's idempotent producer report the failed request's messages as delivered
    /// ("implicit ack"), trusting the broker to have refused the later request out of sequence. A Kafka broker
    /// does; librdkafka's mock cluster does not check an idempotent producer's sequences, and neither do some
    /// Kafka-compatible servers, so there such a message would be acknowledged and never written (docs/kafka.md).
    static let defaultProperties: [String: String] = [
        "enable.idempotence": "true",
        "linger.ms": "5",
        "max.in.flight.requests.per.connection": "1",
    ]

    private let client: RDKafkaClient
    private let options: Options
    private let logger: Logger
    private let pollThread = RDKafkaPollThread(name: "mioctx.kafka.producer")
    private let accepting = Atomic<Bool>(true)
    private let room: ProducerQueueRoom

    /// Creates a producer; nothing is sent until ``run()`` serves delivery reports.
    ///
    /// - Parameters:
    ///   - configuration: librdkafka properties (`bootstrap.servers`, security, tuning).
    ///   - options: flush and poll bounds.
    ///   - logger: receives librdkafka's own log lines too.
    /// - Throws: ``KafkaError`` with code `configuration` naming a property librdkafka refused.
    public init(configuration: KafkaConfiguration, options: Options = Options(), logger: Logger) throws(KafkaError) {
        let room = ProducerQueueRoom()
        self.options = options
        self.logger = logger
        self.room = room
        self.client = try RDKafkaClient(
            kind: .producer,
            properties: configuration.withDefaults(Self.defaultProperties),
            callbacks: RDKafkaCallbacks(logger: logger, deliveryReported: { room.delivered() })
        )
    }

    /// Serves delivery reports until graceful shutdown, cancellation or ``shutdown()``; then flushes.
    public func run() async throws {
        let client = self.client
        let options = self.options
        let logger = self.logger
        await withTaskCancellationOrGracefulShutdownHandler {
            await pollThread.run { thread in
                while !thread.isStopRequested {
                    client.poll(timeout: options.pollInterval)
                }
                if let left = client.drain(timeout: options.flushTimeout) {
                    logger.error(
                        "Kafka producer shut down with messages not acknowledged",
                        metadata: ["kafka.unacknowledged": "\(left)"]
                    )
                }
            }
        } onCancelOrGracefulShutdown: {
            self.shutdown()
        }
    }

    /// Stops accepting messages and makes ``run()`` flush and return.
    public func shutdown() {
        accepting.store(false, ordering: .releasing)
        room.close()
        pollThread.requestStop()
    }

    /// Sends one message and waits for the broker's acknowledgement.
    ///
    /// A full local queue (`queue.buffering.max.messages`) is waited out: the message is enqueued again as soon
    /// as a delivery report makes room.
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
            let deliveriesBefore = room.deliveries
            let result = await withCheckedContinuation { continuation in
                let delivery = RDKafkaDelivery(topic: topic, continuation: continuation)
                let failure = client.produce(
                    topic: topic,
                    partition: partition,
                    key: key,
                    value: value,
                    headers: headers,
                    delivery: delivery
                )
                if let failure {
                    continuation.resume(returning: .failure(failure))
                }
            }
            switch result {
            case .success(let report):
                return report
            case .failure(let error) where error.isLocalQueueFull:
                // The local queue is full: wait for a delivery report to make room, as librdkafka advises.
                if await room.waitForRoom(after: deliveriesBefore) == .cancelled {
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
    /// - Parameter timeout: how long to wait.
    /// - Throws: ``KafkaError`` with code `timeout` when messages are still in flight after `timeout`.
    public func flush(timeout: Duration) async throws(KafkaError) {
        let client = self.client
        if let failure = await runBlocking({ client.flush(timeout: timeout) }) {
            throw failure
        }
    }
}
