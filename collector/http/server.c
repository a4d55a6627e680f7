#include "collector/http/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "collector/metrics.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/timeutil.h"

static uint64_t px__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- limits -------------------------------------------------------------
 *
 * Per-client allowance: direct clients may hold --per-ip-limit connections;
 * requests arriving through a --trusted-proxy are counted per forwarded
 * address instead (concurrent requests), so one client behind nginx cannot
 * lock out the others. An IPv6 client is its --ipv6-prefix-len prefix
 * (px_limit_key). Counts live in a small hash table under c->mu. */

struct px__ipcount {
  int family;
  unsigned char addr[16];
  unsigned count;
  px__ipcount_t *next;
};

#define PX__IP_BUCKETS 1024

/* The caller holds c->mu. */
static px__ipcount_t **px__ip_slot(px_collector_t *c, const struct sockaddr *sa, int *family,
                                   unsigned char key[16]) {
  px_limit_key(sa, c->cfg.ipv6_prefix_len, family, key);
  unsigned h = 2166136261u;
  for (int i = 0; i < 16; i++)
    h = (h ^ key[i]) * 16777619u;
  px__ipcount_t **pp = &c->ipcounts[h % PX__IP_BUCKETS];
  while (*pp != NULL && ((*pp)->family != *family || memcmp((*pp)->addr, key, 16) != 0))
    pp = &(*pp)->next;
  return pp;
}

/* Takes one unit of sa's allowance; false when it has none left. */
static bool px__ip_acquire(px_collector_t *c, const struct sockaddr *sa) {
  int family;
  unsigned char key[16];
  bool ok = true;
  pthread_mutex_lock(&c->mu);
  px__ipcount_t **pp = px__ip_slot(c, sa, &family, key);
  if (*pp == NULL) {
    *pp = calloc(1, sizeof(**pp));
    if (*pp != NULL) {
      (*pp)->family = family;
      memcpy((*pp)->addr, key, 16);
    }
  }
  if (*pp == NULL || (*pp)->count >= c->cfg.per_ip_limit)
    ok = false;
  else
    (*pp)->count++;
  pthread_mutex_unlock(&c->mu);
  return ok;
}

/* Whether sa has an allowance left; the caller holds c->mu. */
static bool px__ip_room_locked(px_collector_t *c, const struct sockaddr *sa) {
  int family;
  unsigned char key[16];
  px__ipcount_t **pp = px__ip_slot(c, sa, &family, key);
  return *pp == NULL || (*pp)->count < c->cfg.per_ip_limit;
}

static void px__ip_release(px_collector_t *c, const struct sockaddr *sa) {
  int family;
  unsigned char key[16];
  pthread_mutex_lock(&c->mu);
  px__ipcount_t **pp = px__ip_slot(c, sa, &family, key);
  if (*pp != NULL && --(*pp)->count == 0) {
    px__ipcount_t *gone = *pp;
    *pp = gone->next;
    free(gone);
  }
  pthread_mutex_unlock(&c->mu);
}

/* One per open connection: the request deadline. MHD's own timeout only
 * counts idle time, so a client dribbling a byte at a time could hold a
 * connection thread forever. */
struct px__conn {
  px_conn_link_t link; /* first: the list's entries are these structs */
  int fd;
  uint64_t receiving_since; /* 0 while a response is being sent */
  bool counted;             /* holds one unit of its peer's allowance */
  bool admitted;            /* counts in c->nconns */
  bool cut;
  struct sockaddr_storage peer;
};

/* MHD's accept policy: called in MHD's listening thread for every
 * accepted socket before MHD makes a connection of it, so a refusal here
 * costs no thread. MHD checks its own limit before calling this, and
 * refuses silently, so the real cap, --max-connections, is enforced here,
 * MHD's limit being PX_SERVER_CONN_SLACK higher. c->nconns moves only in
 * this same thread (the STARTED and CLOSED notifications), so what is
 * checked here still holds when the connection starts. The per-address
 * check here is the cheap early one; the allowance itself is taken when
 * the connection starts. */
static enum MHD_Result px__accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
  px_collector_t *c = cls;
  (void)addrlen;
  bool trusted = px_collector_trusts(c, addr);
  pthread_mutex_lock(&c->mu);
  bool full = c->nconns >= c->cfg.max_connections;
  bool over = !full && !trusted && !px__ip_room_locked(c, addr);
  pthread_mutex_unlock(&c->mu);
  if (full)
    px_metrics_connection_refused(PX_CUT_MAX_CONNECTIONS);
  else if (over)
    px_metrics_connection_refused(PX_CUT_PER_IP_LIMIT);
  return full || over ? MHD_NO : MHD_YES;
}

/* The text MHD 0.9.75 logs each time it refuses a connection at its own
 * limit; there is no other way to learn of those refusals. */
#define PX__MHD_AT_LIMIT "Server reached connection limit"

/* MHD's messages go to stderr, as they did without a logger, except the
 * refusals at MHD's own limit: those are counted (a flood would fill the
 * journal with them). */
static void px__mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void px__mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  if (strncmp(fmt, PX__MHD_AT_LIMIT, sizeof(PX__MHD_AT_LIMIT) - 1) == 0) {
    px_metrics_connection_refused(PX_CUT_MAX_CONNECTIONS);
    return;
  }
  vfprintf(stderr, fmt, ap);
}

static void px__notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                  enum MHD_ConnectionNotificationCode code) {
  px_collector_t *c = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    px__conn_t *e = calloc(1, sizeof(*e));
    const union MHD_ConnectionInfo *fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *addr = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = e;
    if (e == NULL || fd == NULL || addr == NULL)
      return;
    e->fd = fd->connect_fd;
    memcpy(&e->peer, addr->client_addr, px_addr_len(addr->client_addr));
    e->receiving_since = px__now_ns();
    bool refuse = false;
    if (!px_collector_trusts(c, (struct sockaddr *)&e->peer)) {
      e->counted = px__ip_acquire(c, (struct sockaddr *)&e->peer);
      refuse = !e->counted;
    }
    pthread_mutex_lock(&c->mu);
    px_conn_list_push(&c->conns, &e->link);
    /* The accept policy looked already; this is the authoritative count
     * (the per-address one can have moved since: a proxied client's
     * requests share the table). */
    bool full = !refuse && c->nconns >= c->cfg.max_connections;
    if (refuse || full) {
      /* The connection thread sees end of file and closes; the socket
       * itself stays MHD's to close. */
      e->cut = true;
      shutdown(e->fd, SHUT_RDWR);
      px_metrics_connection_refused(full ? PX_CUT_MAX_CONNECTIONS : PX_CUT_PER_IP_LIMIT);
    } else {
      e->admitted = true;
      c->nconns++;
    }
    pthread_mutex_unlock(&c->mu);
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    px__conn_t *e = *socket_context;
    if (e == NULL)
      return;
    /* MHD closes the socket only after this returns, so the watchdog,
     * which shuts sockets down under c->mu, never touches a reused fd. */
    pthread_mutex_lock(&c->mu);
    px_conn_list_remove(&c->conns, &e->link);
    if (e->admitted)
      c->nconns--;
    pthread_mutex_unlock(&c->mu);
    if (e->counted)
      px__ip_release(c, (struct sockaddr *)&e->peer);
    free(e);
    *socket_context = NULL;
  }
}

static px__conn_t *px__conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *i = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return i != NULL ? i->socket_context : NULL;
}

/* receiving: the connection waits for (more of) a request from now on. */
static void px__set_receiving(px_collector_t *c, struct MHD_Connection *conn, bool receiving) {
  px__conn_t *e = px__conn_of(conn);
  if (e == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  e->receiving_since = receiving ? px__now_ns() : 0;
  pthread_mutex_unlock(&c->mu);
}

static void *px__watchdog_main(void *arg) {
  px_collector_t *c = arg;
  pthread_mutex_lock(&c->mu);
  while (!c->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&c->watchdog_cv, &c->mu, &ts);
    /* Half a second of grace: a connection that sends nothing at all is
     * MHD's idle timeout's, which fires at the limit itself; what is left
     * here are the clients that keep dribbling bytes. */
    uint64_t now = px__now_ns(),
             limit = (uint64_t)c->cfg.timeout_s * 1000000000ull + 500000000ull;
    for (px_conn_link_t *l = c->conns; l != NULL; l = l->next) {
      px__conn_t *e = (px__conn_t *)l;
      if (!e->cut && e->receiving_since != 0 && now - e->receiving_since > limit) {
        e->cut = true;
        shutdown(e->fd, SHUT_RDWR);
        px_metrics_connection_refused(PX_CUT_REQUEST_DEADLINE);
      }
    }
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static void *px__uri_cb(void *cls, const char *uri, struct MHD_Connection *conn) {
  px_collector_t *c = cls;
  px_request_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->c = c;
  (void)conn; /* set on the first access-handler call, which admits it */
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
  px__set_receiving(c, conn, true); /* a keep-alive connection waits for the next */
  if (r == NULL)
    return;
  /* MHD's idle timeout ended a request that had begun (its request line
   * was in) and never fully arrived: a cut at the request deadline, like
   * the watchdog's. (An idle connection between requests has no request,
   * and its closing is no refusal.) */
  if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED && !r->answered)
    px_metrics_connection_refused(PX_CUT_REQUEST_DEADLINE);
  if (r->counted)
    px__ip_release(c, (struct sockaddr *)&r->client);
  free(r->body);
  free(r->uri);
  free(r);
  *req_cls = NULL;
  atomic_fetch_sub(&c->active, 1);
}

/* Accumulates the body. Beyond r->max_body it drops what it has and the
 * rest as it comes (r->too_large): MHD 0.9.75 cannot queue an answer
 * while a body is arriving, only before (Content-Length) or after it, so
 * a chunked body that grows too large is read to its end, or to the
 * request deadline, and then answered 413. */
static void px__take_body(px_request_t *r, const char *data, size_t *size) {
  if (r->too_large || r->body_len + *size > r->max_body) {
    r->too_large = true;
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    *size = 0;
    return;
  }
  /* (No body yet means no capacity either, whatever body_cap says.) */
  if (r->body == NULL || r->body_len + *size + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 8192;
    while (cap < r->body_len + *size + 1)
      cap *= 2;
    char *b = realloc(r->body, cap);
    if (b == NULL) {
      r->too_large = true;
      free(r->body);
      r->body = NULL;
      r->body_len = r->body_cap = 0;
      *size = 0;
      return;
    }
    r->body = b;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, *size);
  r->body_len += *size;
  r->body[r->body_len] = '\0';
  *size = 0;
}

/* 413, and the connection ends: what was not read of the body must not
 * be taken for the next request. */
static enum MHD_Result px__too_large(px_request_t *r) {
  char detail[96];
  r->close = true;
  px_metrics_rejected("too_large");
  snprintf(detail, sizeof(detail), "request bodies are limited to %zu bytes", r->max_body);
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
  else if (strcmp(p, "/api/v1/observations.csv") == 0)
    ret = px_api_observations(r, &q);
  else if (strcmp(p, "/api/v1/compare") == 0)
    ret = px_api_compare(r, &q);
  else if (strcmp(p, "/api/v1/overview") == 0)
    ret = px_api_overview(r, &q);
  else if (strcmp(p, "/api/v1/compare/history") == 0)
    ret = px_api_compare_history(r, &q);
  else if (strcmp(p, "/api/v1/quarantine") == 0)
    ret = px_api_quarantine(r, &q);
  else if (strcmp(p, "/api/v1/log/sth") == 0)
    ret = px_api_log_sth(r, &q);
  else if (strcmp(p, "/api/v1/log/proof/inclusion") == 0)
    ret = px_api_log_inclusion(r, &q);
  else if (strcmp(p, "/api/v1/log/proof/consistency") == 0)
    ret = px_api_log_consistency(r, &q);
  else if (strcmp(p, "/api/v1/log/leaves") == 0)
    ret = px_api_log_leaves(r, &q);
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
    /* domain= (even empty) is one domain's page, as it always was. */
    ret = px_query_get(&q, "domain") != NULL ? px_web_page(r) : px_web_overview(r, &q);
  } else if (strncmp(p, "/static/", 8) == 0) {
    ret = px_web_static(r);
  } else {
    ret = px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
  }
  px_query_free(&q);
  return ret;
}

/* The headers that frame a request's body, counted. */
typedef struct {
  unsigned cl, te;
  const char *cl_value, *te_value;
} px__framing_t;

static enum MHD_Result px__framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value) {
  px__framing_t *f = cls;
  (void)kind;
  if (key == NULL)
    return MHD_YES;
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    f->cl++;
    f->cl_value = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->te++;
    f->te_value = value;
  }
  return MHD_YES;
}

/* NULL when the request's body has one unambiguous length, else why not.
 * A proxy in front may read such a request differently from MHD (which
 * takes chunked over Content-Length, and the first Content-Length), and
 * what one of them takes for the body the other takes for a next request:
 * request smuggling. So these are refused outright. (A Content-Length MHD
 * cannot parse at all never gets here: MHD answers it 400 itself.) */
static const char *px__bad_framing(struct MHD_Connection *conn) {
  px__framing_t f = {0};
  MHD_get_connection_values(conn, MHD_HEADER_KIND, px__framing_header, &f);
  if (f.cl > 0 && f.te > 0)
    return "both Content-Length and Transfer-Encoding";
  if (f.cl > 1)
    return "more than one Content-Length";
  if (f.te > 1)
    return "more than one Transfer-Encoding";
  if (f.cl == 1 && (f.cl_value == NULL || f.cl_value[0] == '\0' ||
                    strspn(f.cl_value, "0123456789") != strlen(f.cl_value)))
    return "Content-Length is not a decimal number";
  if (f.te == 1 && (f.te_value == NULL || strcasecmp(f.te_value, "chunked") != 0))
    return "the only Transfer-Encoding accepted is chunked";
  return NULL;
}

static bool px__upload_path(const char *path) {
  return strcmp(path, "/api/v1/submit_measurement") == 0 || strcmp(path, "/api/v1/check-in") == 0 ||
         strcmp(path, "/api/v1/key_rotation") == 0;
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
  bool first = r->conn == NULL;
  if (first) {
    r->conn = conn;
    const char *framing = px__bad_framing(conn);
    if (framing != NULL) {
      /* Answered before the body is read, and the connection closes:
       * nothing after these headers is read as a request. */
      char detail[128];
      r->close = true;
      if (strcmp(method, MHD_HTTP_METHOD_POST) == 0 && px__upload_path(r->path))
        px_metrics_rejected("malformed_request");
      snprintf(detail, sizeof(detail), "ambiguous request framing: %s", framing);
      return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", detail);
    }
    /* First call: headers are in. Behind a trusted proxy, the client is
     * the forwarded address, and it has an allowance of its own. */
    const union MHD_ConnectionInfo *peer =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (peer != NULL && !px_collector_trusts(r->c, peer->client_addr)) {
      /* A direct client: it is the peer (geolocation reads r->client). */
      memcpy(&r->client, peer->client_addr, px_addr_len(peer->client_addr));
    } else if (peer != NULL) {
      const char *xff = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For");
      px_client_address(peer->client_addr, xff, r->c->cfg.trusted, r->c->cfg.ntrusted,
                        &r->client);
      if (!px_collector_trusts(r->c, (struct sockaddr *)&r->client)) {
        if (!px__ip_acquire(r->c, (struct sockaddr *)&r->client)) {
          px_metrics_connection_refused(PX_CUT_TOO_MANY_REQUESTS);
          return px_respond_error(r, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_requests",
                                  "this client already has as many requests in flight as allowed");
        }
        r->counted = true;
      }
    }
  }
  bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

  bool submit = post && strcmp(r->path, "/api/v1/submit_measurement") == 0;
  bool checkin = post && strcmp(r->path, "/api/v1/check-in") == 0;
  bool rotation = post && strcmp(r->path, "/api/v1/key_rotation") == 0;
  if (submit || checkin || rotation) {
    if (r->body == NULL && *upload_data_size == 0 && !r->too_large) {
      /* A rotation statement is a few hundred bytes: no reason to buffer
       * a megabyte of anything else. */
      r->max_body = r->c->cfg.max_body;
      if (rotation && r->max_body > PX_ROTATION_MAX_BODY)
        r->max_body = PX_ROTATION_MAX_BODY;
      /* First call: refuse an announced oversized body before reading it. */
      const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_LENGTH);
      unsigned long long announced = cl != NULL ? strtoull(cl, NULL, 10) : 0;
      if (announced > r->max_body) {
        r->too_large = true;
        return px__too_large(r);
      }
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
      return MHD_YES;
    }
    if (r->too_large)
      return px__too_large(r);
    px__set_receiving(r->c, conn, false);
    if (checkin)
      return px_api_checkin(r);
    if (rotation)
      return px_api_key_rotation(r);
    enum MHD_Result ret = px_api_submit(r);
    px_metrics_submit_latency((double)(px__now_ns() - r->start_ns) / 1e9);
    return ret;
  }
  if (*upload_data_size > 0) {
    *upload_data_size = 0; /* bodies of other requests are ignored */
    return MHD_YES;
  }
  /* Answered on the next call: MHD 0.9.75 closes the connection after an
   * answer queued in the first one, so every GET cost a new connection. */
  if (first)
    return MHD_YES;
  px__set_receiving(r->c, conn, false);
  if (get)
    return px__get(r);
  if (post)
    return px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
  return px_respond_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                          "only GET and POST are served");
}

int px_server_start(px_collector_t *c, char *err, size_t errlen) {
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->watchdog_cv, NULL);
  c->ipcounts = calloc(PX__IP_BUCKETS, sizeof(px__ipcount_t *));
  if (c->ipcounts == NULL)
    return -ENOMEM;
  /* poll(), not select(): with select MHD drops every connection whose
   * descriptor is 1024 or more, so --max-connections (and the unit's
   * LimitNOFILE) could never be reached; the clients saw empty replies. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                   MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (c->cfg.listen.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  c->daemon = MHD_start_daemon(
      flags, px_addr_port((struct sockaddr *)&c->cfg.listen), px__accept_policy, c, px__access_cb, c,
      /* First: MHD logs through the option in force when it logs. */
      MHD_OPTION_EXTERNAL_LOGGER, px__mhd_log, c,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&c->cfg.listen,
      MHD_OPTION_URI_LOG_CALLBACK, px__uri_cb, c,
      MHD_OPTION_NOTIFY_COMPLETED, px__completed_cb, c,
      MHD_OPTION_NOTIFY_CONNECTION, px__notify_connection, c,
      MHD_OPTION_CONNECTION_LIMIT, c->cfg.max_connections + PX_SERVER_CONN_SLACK,
      MHD_OPTION_CONNECTION_TIMEOUT, c->cfg.timeout_s,
      MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
      MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
      MHD_OPTION_END);
  if (c->daemon == NULL) {
    char addr[PX_ADDRSTRLEN];
    px_addr_format((struct sockaddr *)&c->cfg.listen, addr, sizeof(addr));
    snprintf(err, errlen, "cannot listen on %s (address in use, or not permitted?)", addr);
    free(c->ipcounts);
    c->ipcounts = NULL;
    return -EADDRINUSE;
  }
  if (pthread_create(&c->watchdog, NULL, px__watchdog_main, c) == 0)
    c->watchdog_running = true;
  return 0;
}

void px_server_stop(px_collector_t *c) {
  if (c->daemon == NULL)
    return;
  /* No new connections; requests already in flight finish, so every
   * measurement that will get a 200 is committed first. */
  MHD_socket listen_fd = MHD_quiesce_daemon(c->daemon);
  for (int i = 0; i < 3000 && atomic_load(&c->active) > 0; i++)
    px_sleep_ms(10);
  MHD_stop_daemon(c->daemon);
  if (listen_fd != MHD_INVALID_SOCKET)
    close(listen_fd);
  c->daemon = NULL;
  pthread_mutex_lock(&c->mu);
  c->stopping = true;
  pthread_cond_signal(&c->watchdog_cv);
  pthread_mutex_unlock(&c->mu);
  if (c->watchdog_running)
    pthread_join(c->watchdog, NULL);
  for (size_t i = 0; c->ipcounts != NULL && i < PX__IP_BUCKETS; i++)
    while (c->ipcounts[i] != NULL) {
      px__ipcount_t *gone = c->ipcounts[i];
      c->ipcounts[i] = gone->next;
      free(gone);
    }
  free(c->ipcounts);
  c->ipcounts = NULL;
}
