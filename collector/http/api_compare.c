/* GET /api/v1/compare: the cross-country view of one domain over a
 * window (collector/analysis/verdict.h), cached for a few seconds. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/analysis/analysis.h"
#include "collector/metrics.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "collector/analysis/vantages.h"
#include "collector/analysis/verdict.h"
#include "common/json_util.h"
#include "common/measurement.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "px_version.h"


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

enum MHD_Result px_api_compare(px_request_t *r, const px_query_t *q) {
  char domain[PX_HOSTNAME_MAX + 1], detail[160];
  time_t now = time(NULL), since, until = now + 60;
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->v[i].name, "domain") != 0 && strcmp(q->v[i].name, "since") != 0 &&
        strcmp(q->v[i].name, "until") != 0 && strcmp(q->v[i].name, "latest") != 0) {
      snprintf(detail, sizeof(detail), "unknown parameter \"%.64s\"", q->v[i].name);
      return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
    }
  if (!px_query_domain(px_query_get(q, "domain"), domain))
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "domain: a host name is required");
  const char *s = px_query_get(q, "until");
  if (s != NULL && px_time_parse_utc(s, &until) != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "until: ISO 8601 UTC");
  since = until - PX_COMPARE_WINDOW_S;
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
