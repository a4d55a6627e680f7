#ifndef PX_SUBMIT_H
#define PX_SUBMIT_H

#include <jansson.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "collector/collector.h"

/* The submit handler without HTTP: the request body in, the status and
 * the JSON answer (*answer, caller owns) out. client is the uploader's
 * address for geolocation (NULL: unknown); received_at the time of
 * receipt (what the time bounds are judged against). Lets the fuzzers
 * drive the whole path, envelope to durable store, without a server. */
unsigned px_submit_process(px_collector_t *c, const struct sockaddr *client, const char *body,
                           size_t body_len, time_t received_at, json_t **answer);

#endif
