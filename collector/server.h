#ifndef PX_SERVER_H
#define PX_SERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "collector/geoip.h"
#include "collector/netacl.h"
#include "collector/query.h"
#include "collector/conn_list.h"
#include "collector/store.h"

typedef struct px_collector_config {
  struct sockaddr_storage listen;
  size_t max_body;
  unsigned max_connections;
  unsigned per_ip_limit;
  unsigned ipv6_prefix_len; /* IPv6 clients are counted by this prefix */
  unsigned max_exports;     /* concurrent GET /api/v1/export.jsonl */
  unsigned timeout_s;
  px_cidr_t *trusted;
  size_t ntrusted;
  const char *public_url; /* NULL: http://<Host header> */
  char **targets;         /* what check-in hands out */
  size_t ntargets;
  bool allow_nonpublic;   /* control addresses may be documentation ranges */
  px_geoip_t *geoip;      /* --geoip-db files; NULL: nothing is geolocated */
} px_collector_config_t;

typedef struct px__conn px__conn_t;
typedef struct px__ipcount px__ipcount_t;

struct px_analysis;

typedef struct px_collector {
  px_collector_config_t cfg;
  px_store_t *store;
  struct px_analysis *analysis;
  struct MHD_Daemon *daemon;
  atomic_int active;   /* requests between first byte and completion */

  /* Limits MHD does not have: a deadline for receiving each request, and
   * per-client counts that see through trusted proxies (server.c). */
  pthread_mutex_t mu;
  pthread_cond_t watchdog_cv;
  pthread_t watchdog;
  bool watchdog_running, stopping;
  px_conn_link_t *conns;    /* px__conn_t entries (conn_list.h) */
  unsigned nconns;          /* admitted connections (the --max-connections count) */
  px__ipcount_t **ipcounts; /* hash buckets */
  atomic_uint exports;      /* exports being streamed (api_read.c) */
} px_collector_t;

/* MHD's own connection limit is --max-connections plus this: the cap is
 * enforced (and counted) in server.c's accept policy, and MHD, which
 * refuses silently, only ever sees the few connections a refusal keeps
 * open for an instant. main.c leaves descriptors for them. */
#define PX_SERVER_CONN_SLACK 16u

/* One HTTP request; created by the URI callback (so the raw query string
 * is kept: MHD would turn '+' into ' '), freed when MHD completes it. */
typedef struct px_request {
  px_collector_t *c;
  struct MHD_Connection *conn;
  bool counted;                  /* holds one of its client's allowance */
  struct sockaddr_storage client; /* through trusted proxies */
  char *uri;
  const char *path;    /* uri up to '?' (NUL written over '?') */
  const char *query;   /* after '?', or NULL */
  uint64_t start_ns;
  char *body;
  size_t body_len, body_cap;
  size_t max_body;     /* this request's limit (--max-body, less for some) */
  bool too_large;      /* the rest of the body is read and dropped, then 413 */
  bool close;          /* the answer says Connection: close */
  bool answered;       /* a response was made for it */
} px_request_t;

int px_server_start(px_collector_t *c, char *err, size_t errlen);
/* Stops accepting, waits (bounded) for requests in flight, stops. */
void px_server_stop(px_collector_t *c);

/* Responses. Each returns the MHD result to return from the handler. */
enum MHD_Result px_respond(px_request_t *r, unsigned status, const char *content_type,
                           const void *body, size_t len);
/* px_respond with more headers: extra is name, value, ..., NULL. */
enum MHD_Result px_respond_with(px_request_t *r, unsigned status, const char *content_type,
                                const void *body, size_t len, const char *const *extra);
/* The headers every answer of the collector carries, whoever builds it:
 * its type, nosniff, no-store, and Connection: close when r->close. */
void px_response_headers(px_request_t *r, struct MHD_Response *resp, const char *content_type);
enum MHD_Result px_respond_json(px_request_t *r, unsigned status, json_t *body);
enum MHD_Result px_respond_error(px_request_t *r, unsigned status, const char *code,
                                 const char *detail);

/* {"error": code, "detail": detail}, the body of every error answer. */
json_t *px_error_json(const char *code, const char *detail);

/* Handlers (collector/api_submit.c, collector/api_read.c). */
enum MHD_Result px_api_submit(px_request_t *r);
/* The submit handler without HTTP: the request body in, the status and
 * the JSON answer (*answer, caller owns) out. client is the uploader's
 * address for geolocation (NULL: unknown); received_at the time of
 * receipt (what the time bounds are judged against). Lets the fuzzers
 * drive the whole path, envelope to durable store, without a server. */
unsigned px_submit_process(px_collector_t *c, const struct sockaddr *client, const char *body,
                           size_t body_len, time_t received_at, json_t **answer);
enum MHD_Result px_api_measurements(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_raw(px_request_t *r, const px_query_t *q, bool signature);
enum MHD_Result px_api_allowed_signers(px_request_t *r);
enum MHD_Result px_api_export(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_quarantine(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_compare(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_checkin(px_request_t *r);
/* POST /api/v1/key_rotation (collector/api_keys.c); bodies above
 * PX_ROTATION_MAX_BODY (or --max-body, if smaller) get 413. */
#define PX_ROTATION_MAX_BODY 16384
enum MHD_Result px_api_key_rotation(px_request_t *r);
/* The web view (collector/web.c): the page, and its script and style
 * under /static/ (404 for any other name there). */
enum MHD_Result px_web_page(px_request_t *r);
enum MHD_Result px_web_static(px_request_t *r);

/* The researcher API's filters from a parsed query (collector/api_read.c):
 * paged allows limit and cursor. The *_buf arguments hold normalised
 * copies (16, 3 and 256 bytes); other strings point into q. 0, or -EINVAL
 * with the reason for the 400 in detail. */
int px_filter_from_query(const px_query_t *q, bool paged, px_filter_t *f, char *asn_buf,
                         char *cc_buf, char *domain_buf, char *detail, size_t detail_len);

/* The base URL to build measurement_url from. */
void px_public_base(px_request_t *r, char *out, size_t n);

#endif
