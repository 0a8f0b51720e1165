#ifndef MIOCTX_CRDKAFKA_SHIM_H
#define MIOCTX_CRDKAFKA_SHIM_H

// rdkafka.h must come first: rdkafka_mock.h stops with #error without it.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

// rd_kafka_producev is variadic and does not import into Swift. This wrapper fixes the argument list
// mioctx needs. On success librdkafka owns `headers`; on failure the caller still owns them.
static inline rd_kafka_resp_err_t mioctx_rd_kafka_produce(rd_kafka_t *rk,
                                                          const char *topic,
                                                          int32_t partition,
                                                          const void *key,
                                                          size_t key_len,
                                                          const void *value,
                                                          size_t value_len,
                                                          rd_kafka_headers_t *headers,
                                                          void *msg_opaque) {
    return rd_kafka_producev(rk,
                             RD_KAFKA_V_TOPIC(topic),
                             RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_HEADERS(headers),
                             RD_KAFKA_V_OPAQUE(msg_opaque),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END);
}

// rd_kafka_mock_broker_push_request_error_rtts is variadic too. This pushes one (error, delay) entry onto a
// broker's stack for ApiKey; call it once per entry, in order.
static inline rd_kafka_resp_err_t mioctx_rd_kafka_mock_push_request_error_rtt(rd_kafka_mock_cluster_t *mcluster,
                                                                             int32_t broker_id,
                                                                             int16_t api_key,
                                                                             rd_kafka_resp_err_t error,
                                                                             int rtt_ms) {
    return rd_kafka_mock_broker_push_request_error_rtts(mcluster, broker_id, api_key, 1, error, rtt_ms);
}

#endif
