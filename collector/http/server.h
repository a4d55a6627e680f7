#ifndef PX_SERVER_H
#define PX_SERVER_H

/* The HTTP server (collector/http/server.c): libmicrohttpd, the limits it
 * lacks (a deadline per request, per-client allowances that see through
 * trusted proxies), and the routing of each request to its handler
 * (collector/http/routes.h). */

#include "collector/collector.h"

/* MHD's own connection limit is --max-connections plus this: the cap is
 * enforced (and counted) in server.c's accept policy, and MHD, which
 * refuses silently, only ever sees the few connections a refusal keeps
 * open for an instant. main.c leaves descriptors for them. */
#define PX_SERVER_CONN_SLACK 16u

int px_server_start(px_collector_t *c, char *err, size_t errlen);
/* Stops accepting, waits (bounded) for requests in flight, stops. */
void px_server_stop(px_collector_t *c);

#endif
