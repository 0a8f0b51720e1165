#ifndef MIOCTX_CRDKAFKA_SHIM_H
#define MIOCTX_CRDKAFKA_SHIM_H

// rdkafka.h must come first: rdkafka_mock.h stops with #error without it.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#endif
