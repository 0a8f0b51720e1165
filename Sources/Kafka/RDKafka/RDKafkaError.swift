import CRdKafka

extension KafkaError {
    /// Builds an error from a librdkafka response code.
    static func rdKafka(_ error: rd_kafka_resp_err_t, code: Code, context: String) -> KafkaError {
        let name = String(cString: rd_kafka_err2name(error))
        let text = String(cString: rd_kafka_err2str(error))
        return KafkaError(
            code: code,
            message: "\(context): \(text)",
            rdKafkaErrorCode: error.rawValue,
            rdKafkaErrorName: name,
            isRetriable: error.isRetriable,
            isFatal: error == RD_KAFKA_RESP_ERR__FATAL,
            refusesMessage: error.refusesMessage
        )
    }

    /// Builds an error from a librdkafka `rd_kafka_error_t`, destroying it.
    static func rdKafka(consuming error: OpaquePointer, code: Code, context: String) -> KafkaError {
        defer { rd_kafka_error_destroy(error) }
        let errorCode = rd_kafka_error_code(error)
        return KafkaError(
            code: code,
            message: "\(context): \(String(cString: rd_kafka_error_string(error)))",
            rdKafkaErrorCode: errorCode.rawValue,
            rdKafkaErrorName: String(cString: rd_kafka_error_name(error)),
            isRetriable: rd_kafka_error_is_retriable(error) != 0 || errorCode.isRetriable,
            isFatal: rd_kafka_error_is_fatal(error) != 0,
            refusesMessage: errorCode.refusesMessage
        )
    }
}

extension rd_kafka_resp_err_t {
    /// Errors after which the same request may succeed: broker, leadership and timing trouble.
    var isRetriable: Bool {
        switch self {
        case RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
            RD_KAFKA_RESP_ERR__TIMED_OUT,
            RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE,
            RD_KAFKA_RESP_ERR__QUEUE_FULL,
            RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
            RD_KAFKA_RESP_ERR__WAIT_COORD,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
            RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND:
            return true
        default:
            return false
        }
    }
}

extension rd_kafka_resp_err_t {
    /// Errors about one message itself (its size, its records): sending it again cannot succeed, other messages can.
    var refusesMessage: Bool {
        switch self {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
            RD_KAFKA_RESP_ERR_INVALID_RECORD,
            RD_KAFKA_RESP_ERR_INVALID_MSG,
            RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
            RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP,
            RD_KAFKA_RESP_ERR__BAD_MSG:
            return true
        default:
            return false
        }
    }

    /// Errors saying that a message's size is what is refused.
    var isMessageTooLarge: Bool {
        self == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || self == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE
    }
}

extension KafkaError {
    /// Whether the message is refused for its size (`MSG_SIZE_TOO_LARGE`, from librdkafka's own check or the broker, or
    /// `RECORD_LIST_TOO_LARGE`): the same message without its value may go through.
    public var isMessageTooLarge: Bool {
        guard let rdKafkaErrorCode else { return false }
        return rd_kafka_resp_err_t(rawValue: rdKafkaErrorCode).isMessageTooLarge
    }

    /// Whether this is librdkafka's "local queue full" refusal of a message (`_QUEUE_FULL`): waiting for
    /// delivery reports makes room.
    var isLocalQueueFull: Bool {
        rdKafkaErrorCode == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue
    }
}
