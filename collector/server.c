#include "collector/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collector/metrics.h"
#include "common/json_util.h"
#include "common/netaddr.h"

static uint64_t px__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

enum MHD_Result px_respond(px_request_t *r, unsigned status, const char *content_type,
                           const void *body, size_t len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL)
    return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

enum MHD_Result px_respond_json(px_request_t *r, unsigned status, json_t *body) {
  char *text = px_json_dump(body);
  json_decref(body);
  if (text == NULL)
    return MHD_NO;
  size_t n = strlen(text);
  text[n] = '\n'; /* one line, newline-terminated, like every JSON we serve */
  enum MHD_Result ret = px_respond(r, status, "application/json", text, n + 1);
  free(text);
  return ret;
}

enum MHD_Result px_respond_error(px_request_t *r, unsigned status, const char *code,
                                 const char *detail) {
  json_t *e = json_object();
  json_object_set_new(e, "error", json_string(code));
  json_object_set_new(e, "detail", px_json_string_lossy(detail, strlen(detail)));
  return px_respond_json(r, status, e);
}

void px_public_base(px_request_t *r, char *out, size_t n) {
  if (r->c->cfg.public_url != NULL) {
    snprintf(out, n, "%s", r->c->cfg.public_url);
    size_t len = strlen(out);
    if (len > 0 && out[len - 1] == '/')
      out[len - 1] = '\0';
    return;
  }
  const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
  bool sane = host != NULL && host[0] != '\0' && strlen(host) < 256 &&
              strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
                  strlen(host);
  snprintf(out, n, "http://%s", sane ? host : "localhost");
}

static void *px__uri_cb(void *cls, const char *uri, struct MHD_Connection *conn) {
  px_collector_t *c = cls;
  px_request_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->c = c;
  r->conn = conn;
  r->start_ns = px__now_ns();
  r->uri = strdup(uri ? uri : "/");
  if (r->uri == NULL) {
    free(r);
    return NULL;
  }
  char *q = strchr(r->uri, '?');
  if (q != NULL) {
    *q = '\0';
    r->query = q + 1;
  }
  r->path = r->uri;
  atomic_fetch_add(&c->active, 1);
  px_metrics_request();
  return r;
}

static void px__completed_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                             enum MHD_RequestTerminationCode toe) {
  px_collector_t *c = cls;
  px_request_t *r = *req_cls;
  (void)conn;
  (void)toe;
  if (r == NULL)
    return;
  free(r->body);
  free(r->uri);
  free(r);
  *req_cls = NULL;
  atomic_fetch_sub(&c->active, 1);
}

/* Accumulates the body, refusing it beyond max_body. Returns false when
 * the request was answered (413) and must not be processed. */
static bool px__take_body(px_request_t *r, const char *data, size_t *size) {
  if (r->too_large || r->body_len + *size > r->c->cfg.max_body) {
    r->too_large = true;
    *size = 0;
    return true;
  }
  if (r->body_len + *size + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 8192;
    while (cap < r->body_len + *size + 1)
      cap *= 2;
    char *b = realloc(r->body, cap);
    if (b == NULL) {
      r->too_large = true;
      *size = 0;
      return true;
    }
    r->body = b;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, *size);
  r->body_len += *size;
  r->body[r->body_len] = '\0';
  *size = 0;
  return true;
}

static enum MHD_Result px__too_large(px_request_t *r) {
  char detail[96];
  px_metrics_rejected("too_large");
  snprintf(detail, sizeof(detail), "request bodies are limited to %zu bytes", r->c->cfg.max_body);
  return px_respond_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", detail);
}

static enum MHD_Result px__get(px_request_t *r) {
  px_query_t q;
  const char *p = r->path;
  if (px_query_parse(r->query, &q) != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "malformed query string (bad %-escape or repeated parameter)");
  enum MHD_Result ret;
  if (strcmp(p, "/api/v1/measurements") == 0)
    ret = px_api_measurements(r, &q);
  else if (strcmp(p, "/api/v1/raw_measurement") == 0)
    ret = px_api_raw(r, &q, false);
  else if (strcmp(p, "/api/v1/measurement_signature") == 0)
    ret = px_api_raw(r, &q, true);
  else if (strcmp(p, "/api/v1/allowed_signers") == 0)
    ret = px_api_allowed_signers(r);
  else if (strcmp(p, "/api/v1/export.jsonl") == 0)
    ret = px_api_export(r, &q);
  else if (strcmp(p, "/healthz") == 0) {
    json_t *h = json_object();
    bool ok = px_store_ping(r->c->store) == 0;
    json_object_set_new(h, "status", json_string(ok ? "ok" : "database unavailable"));
    ret = px_respond_json(r, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, h);
  } else if (strcmp(p, "/metrics") == 0) {
    char *text = px_metrics_render();
    ret = text ? px_respond(r, MHD_HTTP_OK, "text/plain; version=0.0.4", text, strlen(text)) : MHD_NO;
    free(text);
  } else if (strcmp(p, "/") == 0) {
    static const char page[] =
        "<!doctype html><meta charset=utf-8><title>parallax collector</title>"
        "<h1>parallax collector</h1><p>Researcher API: "
        "<a href=/api/v1/measurements>/api/v1/measurements</a>, "
        "<a href=/api/v1/allowed_signers>/api/v1/allowed_signers</a>, "
        "<a href=/api/v1/export.jsonl>/api/v1/export.jsonl</a>.</p>";
    ret = px_respond(r, MHD_HTTP_OK, "text/html; charset=utf-8", page, sizeof(page) - 1);
  } else {
    ret = px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
  }
  px_query_free(&q);
  return ret;
}

static enum MHD_Result px__access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **req_cls) {
  px_request_t *r = *req_cls;
  (void)cls;
  (void)url;
  (void)version;
  if (r == NULL)
    return MHD_NO; /* out of memory in the URI callback */
  r->conn = conn;
  bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

  if (post && strcmp(r->path, "/api/v1/submit_measurement") == 0) {
    if (r->body == NULL && *upload_data_size == 0 && !r->too_large) {
      /* First call: refuse an announced oversized body before reading it. */
      const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_LENGTH);
      unsigned long long announced = cl != NULL ? strtoull(cl, NULL, 10) : 0;
      if (announced > r->c->cfg.max_body)
        return px__too_large(r);
      /* Sized from Content-Length when given: no growing and copying. */
      r->body_cap = announced > 0 ? (size_t)announced + 1 : 8192;
      r->body = malloc(r->body_cap);
      if (r->body == NULL)
        return MHD_NO;
      r->body[0] = '\0';
      return MHD_YES;
    }
    if (*upload_data_size > 0) {
      px__take_body(r, upload_data, upload_data_size);
      if (r->too_large)
        return px__too_large(r);
      return MHD_YES;
    }
    if (r->too_large)
      return px__too_large(r);
    enum MHD_Result ret = px_api_submit(r);
    px_metrics_submit_latency((double)(px__now_ns() - r->start_ns) / 1e9);
    return ret;
  }
  if (*upload_data_size > 0) {
    *upload_data_size = 0; /* bodies of other requests are ignored */
    return MHD_YES;
  }
  if (get)
    return px__get(r);
  if (post)
    return px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
  return px_respond_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                          "only GET and POST are served");
}

int px_server_start(px_collector_t *c, char *err, size_t errlen) {
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                   MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (c->cfg.listen.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  c->daemon = MHD_start_daemon(
      flags, px_addr_port((struct sockaddr *)&c->cfg.listen), NULL, NULL, px__access_cb, c,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&c->cfg.listen,
      MHD_OPTION_URI_LOG_CALLBACK, px__uri_cb, c,
      MHD_OPTION_NOTIFY_COMPLETED, px__completed_cb, c,
      MHD_OPTION_CONNECTION_LIMIT, c->cfg.max_connections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, c->cfg.per_ip_limit,
      MHD_OPTION_CONNECTION_TIMEOUT, c->cfg.timeout_s,
      MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
      MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
      MHD_OPTION_END);
  if (c->daemon == NULL) {
    char addr[PX_ADDRSTRLEN];
    px_addr_format((struct sockaddr *)&c->cfg.listen, addr, sizeof(addr));
    snprintf(err, errlen, "cannot listen on %s (address in use, or not permitted?)", addr);
    return -EADDRINUSE;
  }
  return 0;
}

void px_server_stop(px_collector_t *c) {
  if (c->daemon == NULL)
    return;
  /* No new connections; requests already in flight finish, so every
   * measurement that will get a 200 is committed first. */
  MHD_socket listen_fd = MHD_quiesce_daemon(c->daemon);
  for (int i = 0; i < 3000 && atomic_load(&c->active) > 0; i++)
    usleep(10000);
  MHD_stop_daemon(c->daemon);
  if (listen_fd != MHD_INVALID_SOCKET)
    close(listen_fd);
  c->daemon = NULL;
}
