/* GET /api/v1/compare and POST /api/v1/check-in: the cross-country view,
 * and what an agent needs before a round (its country, targets, control
 * addresses, the time). */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/analysis.h"
#include "collector/metrics.h"
#include "collector/server.h"
#include "collector/vantages.h"
#include "collector/verdict.h"
#include "common/json_util.h"
#include "common/measurement.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "px_version.h"

#define PX__WINDOW ((time_t)24 * 3600)

/* ---- a short-lived cache of comparisons -----------------------------------
 * The page at / asks for a comparison on every load: a crowd (or a
 * script) reloading it would recompute the same document over and over.
 * An answer is reused for PX__CACHE_TTL seconds for the same query, and
 * only while the store's mark has not moved: anything acknowledged since
 * makes a new comparison, so "stored before the request" still holds. */
#define PX__CACHE_TTL_NS (5ull * 1000000000ull)
#define PX__CACHE_SLOTS 64

typedef struct {
  char key[PX_HOSTNAME_MAX + 64];
  int64_t mark;
  uint64_t at_ns;
  char *text; /* the response body */
} px__cached_t;

static px__cached_t px__cache[PX__CACHE_SLOTS];
static pthread_mutex_t px__cache_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t px__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static px__cached_t *px__cache_slot(const char *key) {
  unsigned h = 2166136261u;
  for (const char *p = key; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  return &px__cache[h % PX__CACHE_SLOTS];
}

/* A copy of the cached body for key at mark, or NULL. */
static char *px__cache_get(const char *key, int64_t mark) {
  char *text = NULL;
  pthread_mutex_lock(&px__cache_mu);
  px__cached_t *e = px__cache_slot(key);
  if (e->text != NULL && e->mark == mark && strcmp(e->key, key) == 0 &&
      px__mono_ns() - e->at_ns < PX__CACHE_TTL_NS)
    text = strdup(e->text);
  pthread_mutex_unlock(&px__cache_mu);
  return text;
}

static void px__cache_put(const char *key, int64_t mark, const char *text) {
  char *copy = strdup(text);
  if (copy == NULL)
    return;
  pthread_mutex_lock(&px__cache_mu);
  px__cached_t *e = px__cache_slot(key);
  free(e->text);
  snprintf(e->key, sizeof(e->key), "%s", key);
  e->mark = mark;
  e->at_ns = px__mono_ns();
  e->text = copy;
  pthread_mutex_unlock(&px__cache_mu);
}

static bool px__domain(const char *in, char *out) {
  px_target_t t;
  const char *reason;
  if (in == NULL || px_target_parse(in, 443, &t, &reason) != 0)
    return false;
  size_t i = 0;
  for (; t.hostname[i] != '\0'; i++)
    out[i] = (char)tolower((unsigned char)t.hostname[i]);
  out[i] = '\0';
  return true;
}

enum MHD_Result px_api_compare(px_request_t *r, const px_query_t *q) {
  char domain[PX_HOSTNAME_MAX + 1], detail[160];
  time_t now = time(NULL), since, until = now + 60;
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->v[i].name, "domain") != 0 && strcmp(q->v[i].name, "since") != 0 &&
        strcmp(q->v[i].name, "until") != 0 && strcmp(q->v[i].name, "latest") != 0) {
      snprintf(detail, sizeof(detail), "unknown parameter \"%.64s\"", q->v[i].name);
      return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
    }
  if (!px__domain(px_query_get(q, "domain"), domain))
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "domain: a host name is required");
  const char *s = px_query_get(q, "until");
  if (s != NULL && px_time_parse_utc(s, &until) != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "until: ISO 8601 UTC");
  since = until - PX__WINDOW;
  s = px_query_get(q, "since");
  if (s != NULL && px_time_parse_utc(s, &since) != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "since: ISO 8601 UTC");
  if (since >= until)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "since must be before until");
  /* latest=1: each key's newest measurement judged alone ("is it still
   * happening right now?"); by default every measurement in the window. */
  const char *l = px_query_get(q, "latest");
  if (l != NULL && strcmp(l, "0") != 0 && strcmp(l, "1") != 0 && strcmp(l, "true") != 0 &&
      strcmp(l, "false") != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "latest: 1 or 0");
  bool latest = l != NULL && (strcmp(l, "1") == 0 || strcmp(l, "true") == 0);

  /* Measurements acknowledged before this request are part of the answer. */
  int64_t mark = -1;
  bool lagging = px_analysis_catch_up(r->c->analysis, 5000, &mark) != 0;
  char key[sizeof(px__cache[0].key)];
  snprintf(key, sizeof(key), "%s|%s|%s|%d", domain,
           px_query_get(q, "since") ? px_query_get(q, "since") : "",
           px_query_get(q, "until") ? px_query_get(q, "until") : "", latest);
  char *cached = lagging ? NULL : px__cache_get(key, mark);
  if (cached != NULL) {
    px_metrics_compare(true);
    enum MHD_Result ret = px_respond(r, MHD_HTTP_OK, "application/json", cached, strlen(cached));
    free(cached);
    return ret;
  }
  px_metrics_compare(false);
  px_vantages_t vs;
  if (px_vantages_load(r->c->store, domain, since, until, latest, &vs) != 0) {
    px_vantages_free(&vs);
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", "query failed");
  }
  json_t *doc = px_compare_mode(domain, vs.v, vs.n, PX_QUORUM,
                                latest ? PX_COMPARE_LATEST : PX_COMPARE_WINDOW);
  px_vantages_free(&vs);
  json_object_set_new(doc, "mode", json_string(latest ? "latest" : "window"));
  char a[PX_TIME_ISO_LEN], b[PX_TIME_ISO_LEN];
  px_time_format_iso(since, a);
  px_time_format_iso(until, b);
  json_object_set_new(doc, "since", json_string(a));
  json_object_set_new(doc, "until", json_string(b));
  json_object_set_new(doc, "trust_store", json_string(px_analysis_trust(r->c->analysis)));
  json_object_set_new(doc, "analysis_complete", json_boolean(!lagging));
  char *text = px_json_dump(doc);
  json_decref(doc);
  if (text == NULL)
    return MHD_NO;
  size_t n = strlen(text);
  char *body = realloc(text, n + 2);
  if (body == NULL) {
    free(text);
    return MHD_NO;
  }
  body[n] = '\n'; /* one line, newline-terminated, like every JSON we serve */
  body[n + 1] = '\0';
  if (!lagging)
    px__cache_put(key, mark, body);
  enum MHD_Result ret = px_respond(r, MHD_HTTP_OK, "application/json", body, n + 1);
  free(body);
  return ret;
}

/* The client address as text, an IPv4 client of a dual-stack listener in
 * its IPv4 form (what the agent compares its measurements against). False
 * when there is none. */
static bool px__client_text(const struct sockaddr_storage *ss, char *out, size_t n) {
  struct sockaddr_in v4;
  const struct sockaddr *sa = (const struct sockaddr *)ss;
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      memset(&v4, 0, sizeof(v4));
      v4.sin_family = AF_INET;
      memcpy(&v4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
      sa = (const struct sockaddr *)&v4;
    }
  } else if (ss->ss_family != AF_INET) {
    return false;
  }
  px_addr_format_ip(sa, out, n);
  return out[0] != '\0';
}

/* probe_cc/probe_asn the agent sent win over the databases (a volunteer
 * who configured them knows better, e.g. behind a VPN); what neither
 * knows is ZZ/AS0. The network name is only given when it belongs to the
 * ASN answered. With "geolocate": false (uploads through a proxy or Tor,
 * where the address says nothing about the volunteer) the address is
 * neither looked up nor echoed. The address is never stored or logged. */
enum MHD_Result px_api_checkin(px_request_t *r) {
  json_error_t jerr;
  json_t *req = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(req) || !json_is_string(json_object_get(req, "software_name")) ||
      !json_is_string(json_object_get(req, "software_version"))) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                            "expected {\"software_name\", \"software_version\", \"probe_cc\"?, "
                            "\"probe_asn\"?, \"geolocate\"?}");
  }
  char cc[3] = "ZZ", asn[16] = "AS0";
  json_t *jcc = json_object_get(req, "probe_cc"), *jasn = json_object_get(req, "probe_asn"),
         *jgeo = json_object_get(req, "geolocate");
  if ((jcc != NULL && !json_is_null(jcc) &&
       (!json_is_string(jcc) || px_probe_cc_normalize(json_string_value(jcc), cc) != 0))) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", "probe_cc: two letters");
  }
  if ((jasn != NULL && !json_is_null(jasn) &&
       (!json_is_string(jasn) || px_probe_asn_normalize(json_string_value(jasn), asn) != 0))) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", "probe_asn: AS1234");
  }
  if (jgeo != NULL && !json_is_boolean(jgeo)) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                            "geolocate: true or false");
  }
  bool cc_given = json_is_string(jcc), asn_given = json_is_string(jasn);
  bool geolocate = jgeo == NULL || json_is_true(jgeo);
  json_decref(req);

  px_geo_t geo;
  char client[PX_ADDRSTRLEN] = "", geo_asn[16] = "";
  memset(&geo, 0, sizeof(geo));
  if (geolocate) {
    px_geoip_lookup(r->c->cfg.geoip, (const struct sockaddr *)&r->client, &geo);
    if (!px__client_text(&r->client, client, sizeof(client)))
      client[0] = '\0';
  }
  if (!cc_given && geo.cc[0] != '\0')
    memcpy(cc, geo.cc, sizeof(cc));
  if (geo.asn != 0)
    snprintf(geo_asn, sizeof(geo_asn), "AS%u", (unsigned)geo.asn);
  if (!asn_given && geo.asn != 0)
    memcpy(asn, geo_asn, sizeof(asn));
  bool named = geo.network_name[0] != '\0' && strcmp(asn, geo_asn) == 0;

  px_analysis_catch_up(r->c->analysis, 2000, NULL);
  time_t now = time(NULL);
  json_t *targets = json_array();
  for (size_t i = 0; i < r->c->cfg.ntargets; i++) {
    char domain[PX_HOSTNAME_MAX + 1];
    json_t *controls = json_array();
    px_vantages_t vs;
    memset(&vs, 0, sizeof(vs));
    if (px__domain(r->c->cfg.targets[i], domain) &&
        px_vantages_load(r->c->store, domain, now - PX__WINDOW, now + 60, true, &vs) == 0) {
      json_decref(controls);
      controls = px_control_addresses(vs.v, vs.n, PX_QUORUM, r->c->cfg.allow_nonpublic);
    }
    px_vantages_free(&vs);
    json_t *t = json_object();
    json_object_set_new(t, "input", json_string(r->c->cfg.targets[i]));
    json_object_set_new(t, "control_addresses", controls);
    json_array_append_new(targets, t);
  }
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(now, when);
  json_t *resp = json_object();
  json_object_set_new(resp, "probe_cc", json_string(cc));
  json_object_set_new(resp, "probe_asn", json_string(asn));
  json_object_set_new(resp, "probe_network_name",
                      named ? px_json_string_lossy(geo.network_name, strlen(geo.network_name))
                            : json_null());
  json_object_set_new(resp, "utc_time", json_string(when));
  json_object_set_new(resp, "targets", targets);
  /* Echoed so an agent behind NAT learns its public address and scrubs it
   * from what it uploads; it goes nowhere else. */
  if (client[0] != '\0')
    json_object_set_new(resp, "client_address", json_string(client));
  return px_respond_json(r, MHD_HTTP_OK, resp);
}
