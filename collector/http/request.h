#ifndef PX_REQUEST_H
#define PX_REQUEST_H

/* One HTTP request as the handlers see it, and how they answer
 * (collector/http/respond.c). */

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "collector/collector.h"
#include "collector/http/query.h"

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

/* The researcher API's filters from a parsed query (collector/http/api_read.c):
 * paged allows limit and cursor. The *_buf arguments hold normalised
 * copies (16, 3 and 256 bytes); other strings point into q. 0, or -EINVAL
 * with the reason for the 400 in detail. */
int px_filter_from_query(const px_query_t *q, bool paged, px_filter_t *f, char *asn_buf,
                         char *cc_buf, char *domain_buf, char *detail, size_t detail_len);

/* The base URL to build measurement_url from: --public-url, or the Host
 * header (https behind a trusted proxy that says so). */
void px_public_base(px_request_t *r, char *out, size_t n);

#endif
