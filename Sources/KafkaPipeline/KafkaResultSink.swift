public import Kafka
public import Pipeline
public import Logging
public import Tracing

/// Delivers results to the output topic and invalid messages to the dead-letter topic.
///
/// Both return only once the broker acknowledged the message, which is what makes a job's offset
/// committable.
public struct KafkaResultSink: ResultSink {
    /// Header carrying the job id on a result.
    public static let jobIDHeader = "mioctx-job-id"
    /// Headers of a dead-lettered message, added after its original headers.
    public enum DeadLetterHeader {
        /// The machine code of the reason (`not_json`, `missing_field`, ...).
        public static let reason = "mioctx-dlq-reason"
        /// The human explanation, naming the field.
        public static let message = "mioctx-dlq-message"
        /// The field concerned, when there is one.
        public static let field = "mioctx-dlq-field"
        /// Where the message was read: topic, partition and offset.
        public static let sourceTopic = "mioctx-dlq-source-topic"
        public static let sourcePartition = "mioctx-dlq-source-partition"
        public static let sourceOffset = "mioctx-dlq-source-offset"
        /// Present when the copy carries no value (a null value) although the message had one: why it was
        /// dropped, e.g. `message_too_large: 1048576 bytes` (the input was over the job limit and was not read) or
        /// `MSG_SIZE_TOO_LARGE: 1048576 bytes` (Kafka refused the copy with its value).
        public static let valueDropped = "mioctx-dlq-value-dropped"
    }

    /// W3C trace-context headers carried from a job to its result.
    static let propagatedHeaders: Set<String> = ["traceparent", "tracestate"]

    private let producer: KafkaProducer
    private let outputTopic: String
    private let deadLetterTopic: String
    private let tracer: any Tracer

    /// Creates a sink.
    ///
    /// - Parameters:
    ///   - producer: a running producer.
    ///   - outputTopic: where results go, keyed by user id.
    ///   - deadLetterTopic: where invalid messages go, unchanged, with the reason in headers.
    ///   - tracer: injects the current span's context (`traceparent`, `tracestate`) into a result's headers; a
    ///     tracer that injects nothing (the default `NoOpTracer`) leaves the job's own trace headers to be copied.
    public init(
        producer: KafkaProducer,
        outputTopic: String,
        deadLetterTopic: String,
        tracer: any Tracer = InstrumentationSystem.tracer
    ) {
        self.tracer = tracer
        self.producer = producer
        self.outputTopic = outputTopic
        self.deadLetterTopic = deadLetterTopic
    }

    /// Looks the output and dead-letter topics up before the first job, so that the first results are not held
    /// back by the producer's first metadata lookup (up to a second), and says in the log when one of them
    /// does not exist or cannot be looked up. Never fails: delivery itself reports and retries what goes wrong.
    /// - Parameters:
    ///   - timeout: how long to wait for the cluster's answer, per topic.
    ///   - logger: receives a warning per topic that is unknown or could not be looked up.
    public func prepare(timeout: Duration = .seconds(10), logger: Logger) async {
        for (setting, topic) in [("kafka.outputTopic", outputTopic), ("kafka.deadLetterTopic", deadLetterTopic)] {
            do {
                if let partitions = try await producer.prepare(topic: topic, timeout: timeout) {
                    logger.debug("topic ready", metadata: ["kafka.topic": "\(topic)", "kafka.partitions": "\(partitions)"])
                } else {
                    logger.warning(
                        "\(setting) names a topic the cluster does not know; its messages wait until it exists (or the broker creates it)",
                        metadata: ["kafka.topic": "\(topic)"]
                    )
                }
            } catch {
                logger.warning(
                    "\(setting) could not be looked up before the first job",
                    metadata: ["kafka.topic": "\(topic)", "error": "\(error)"]
                )
            }
        }
    }

    public func publish(_ result: JobResult, for item: InputItem) async throws {
        var headers = [KafkaHeader(key: Self.jobIDHeader, value: result.jobID)]
        var injected: [(String, String)] = []
        if let context = ServiceContext.current {
            tracer.inject(context, into: &injected, using: StringPairInjector())
        }
        if injected.isEmpty {
            for header in item.headers where Self.propagatedHeaders.contains(header.name) {
                headers.append(KafkaHeader(key: header.name, value: header.value))
            }
        } else {
            headers += injected.map { KafkaHeader(key: $0.0, value: $0.1) }
        }
        do {
            _ = try await producer.send(
                topic: outputTopic,
                key: Array(result.userID.utf8),
                value: result.encoded(),
                headers: headers
            )
        } catch {
            throw Self.classified(error)
        }
    }

    /// A producer's error as the engine's ``DeliveryFailure`` when its meaning is known: the message itself
    /// refused (`refused`: a result goes to the dead-letter topic), a fatal producer error (`fatal`), or a
    /// retriable one (`unavailable`: retried while the outage lasts less than the limit). Any other error (an
    /// authorization error, for one) is returned as it is: retried a few times, then the worker stops.
    static func classified(_ error: KafkaError) -> any Error {
        let code = (error.rdKafkaErrorName ?? error.code.description).lowercased()
        if error.isFatal {
            return DeliveryFailure(.fatal, code: code, underlying: error)
        }
        if error.refusesMessage {
            return DeliveryFailure(.refused, code: code, underlying: error)
        }
        if error.isRetriable {
            return DeliveryFailure(.unavailable, code: code, underlying: error)
        }
        return error
    }

    public func deadLetter(_ item: InputItem, reason: InvalidJob) async throws {
        var headers = item.headers.map { KafkaHeader(key: $0.name, value: $0.value) }
        headers.append(KafkaHeader(key: DeadLetterHeader.reason, value: reason.code.description))
        headers.append(KafkaHeader(key: DeadLetterHeader.message, value: reason.message))
        if let field = reason.field {
            headers.append(KafkaHeader(key: DeadLetterHeader.field, value: field))
        }
        headers.append(KafkaHeader(key: DeadLetterHeader.sourceTopic, value: item.source.partition.topic))
        headers.append(KafkaHeader(key: DeadLetterHeader.sourcePartition, value: "\(item.source.partition.partition)"))
        headers.append(KafkaHeader(key: DeadLetterHeader.sourceOffset, value: "\(item.source.offset)"))
        if reason.code == .messageTooLarge {
            // The consumer did not read the value: the copy says so rather than carry an empty one.
            headers.append(KafkaHeader(key: DeadLetterHeader.valueDropped, value: reason.message))
            try await sendDeadLetter(key: item.key, value: nil, headers: headers)
            return
        }
        do {
            try await sendDeadLetter(key: item.key, value: item.value, headers: headers)
        } catch let failure as DeliveryFailure where (failure.underlying as? KafkaError)?.isMessageTooLarge == true {
            // Too large with its value (a dead-letter topic with a smaller max.message.bytes, or a value that
            // fills a message alone): the reason and the source go on without it.
            let name = (failure.underlying as? KafkaError)?.rdKafkaErrorName ?? failure.code
            headers.append(KafkaHeader(key: DeadLetterHeader.valueDropped, value: "\(name): \(item.value.count) bytes"))
            try await sendDeadLetter(key: item.key, value: nil, headers: headers)
        }
    }

    private func sendDeadLetter(key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader]) async throws {
        do {
            _ = try await producer.send(topic: deadLetterTopic, key: key, value: value, headers: headers)
        } catch {
            throw Self.classified(error)
        }
    }
}
