/* GET /api/v1/compare/history: the comparison of one domain bucket by
 * bucket (docs/api.md, "Comparing over time"). Each bucket is judged by
 * the same px_compare_mode as /api/v1/compare over that bucket's
 * measurements alone, so an intermittent interception shows as verdicts
 * that come and go; the moments a group's leaves or DNS answers changed
 * between the buckets it was measured in are listed apart. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/analysis/analysis.h"
#include "collector/analysis/vantages.h"
#include "collector/analysis/verdict.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "common/json_util.h"
#include "common/strmap.h"
#include "common/target.h"
#include "common/timeutil.h"

/* A window cut into more buckets than this is refused: every bucket is a
 * store query and a comparison, and a chart of more is unreadable. */
#define PX__HISTORY_BUCKETS_MAX 500
/* Windows up to this long get hourly buckets by default, longer daily. */
#define PX__HISTORY_HOURLY_UP_TO ((time_t)7 * 24 * 3600)
/* Leaves or answers listed per group and bucket (and per change). */
#define PX__HISTORY_SET_MAX 64

static int px__str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted distinct strings of set as a JSON array (all of them). */
static json_t *px__sorted(const px_strmap_t *set) {
  json_t *arr = json_array();
  const char **keys = calloc(set->n + 1, sizeof(*keys));
  size_t n = 0, it = 0;
  const char *k;
  void *val;
  while (keys != NULL && px_strmap_next(set, &it, &k, &val))
    keys[n++] = k;
  if (keys != NULL)
    qsort(keys, n, sizeof(*keys), px__str_cmp);
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, json_string(keys[i]));
  free(keys);
  return arr;
}

/* At most PX__HISTORY_SET_MAX of arr (a new reference). */
static json_t *px__capped(json_t *arr) {
  if (json_array_size(arr) <= PX__HISTORY_SET_MAX)
    return json_incref(arr);
  json_t *out = json_array();
  for (size_t i = 0; i < PX__HISTORY_SET_MAX; i++)
    json_array_append(out, json_array_get(arr, i));
  return out;
}

/* What a group saw in a bucket: the leaves (certificate SHA-256 of every
 * handshake that got one) and its DNS answers, from the summaries of the
 * group's measurements (a measurement's own probe_cc/probe_asn). */
typedef struct {
  char name[64]; /* the map's key */
  px_strmap_t leaves, answers;
} px__seen_t;

static void px__seen_free(px__seen_t *s) {
  px_strmap_free(&s->leaves);
  px_strmap_free(&s->answers);
  free(s);
}

static int px__seen_add(px_strmap_t *set, const char *s) {
  bool added;
  return px_strmap_slot(set, s, &added) != NULL ? 0 : -ENOMEM;
}

/* seen: group name -> px__seen_t, for the bucket's vantages. */
static int px__collect(const px_vantages_t *vs, px_strmap_t *seen) {
  for (size_t i = 0; i < vs->n; i++) {
    const px_vantage_t *v = &vs->v[i];
    char group[64];
    snprintf(group, sizeof(group), "%s/%s", v->probe_cc, v->probe_asn);
    px__seen_t *s = px_strmap_get(seen, group);
    if (s == NULL) {
      s = calloc(1, sizeof(*s));
      if (s == NULL)
        return -ENOMEM;
      memcpy(s->name, group, sizeof(group));
      px_strmap_init(&s->leaves);
      px_strmap_init(&s->answers);
      bool added;
      void **slot = px_strmap_slot(seen, s->name, &added);
      if (slot == NULL) {
        px__seen_free(s);
        return -ENOMEM;
      }
      *slot = s;
    }
    size_t k;
    json_t *e;
    json_array_foreach(json_object_get(json_object_get(v->summary, "dns"), "addresses"), k, e) {
      if (json_is_string(e) && px__seen_add(&s->answers, json_string_value(e)) != 0)
        return -ENOMEM;
    }
    json_array_foreach(json_object_get(v->summary, "tls"), k, e) {
      const char *leaf = json_string_value(json_object_get(e, "leaf_sha256"));
      if (leaf != NULL && px__seen_add(&s->leaves, leaf) != 0)
        return -ENOMEM;
    }
  }
  return 0;
}

static void px__seen_map_free(px_strmap_t *seen) {
  const char *k;
  void *val;
  for (size_t it = 0; px_strmap_next(seen, &it, &k, &val);)
    px__seen_free(val);
  px_strmap_free(seen);
}

/* The last sets a group was seen with (sorted JSON arrays, owned). */
typedef struct {
  char name[64]; /* the map's key */
  json_t *leaves, *answers;
} px__last_t;

static void px__change(json_t *changes, const char *at, const char *group, const char *kind,
                       json_t *from, json_t *to) {
  json_t *c = json_object();
  json_object_set_new(c, "at", json_string(at));
  json_object_set_new(c, "group", json_string(group));
  json_object_set_new(c, "kind", json_string(kind));
  json_object_set_new(c, "from", px__capped(from));
  json_object_set_new(c, "to", px__capped(to));
  json_array_append_new(changes, c);
}

/* One group's row of a bucket: compare's verdict, confidence, counts and
 * how often it showed (its "observed"), the evidence's rules, and the
 * leaves and answers seen. */
static json_t *px__row(json_t *g, json_t *leaves, json_t *answers) {
  json_t *row = json_object();
  static const char *const copy[] = {"probe_cc", "probe_asn", "verdict", "confidence",
                                     "vantage_count", "observed"};
  for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
    json_object_set(row, copy[i], json_object_get(g, copy[i]));
  px_strmap_t rules;
  px_strmap_init(&rules);
  json_t *ev = json_object_get(g, "evidence");
  size_t k;
  json_t *e;
  json_array_foreach(ev, k, e) {
    const char *rule = json_string_value(json_object_get(e, "rule"));
    if (rule != NULL)
      (void)px__seen_add(&rules, rule);
  }
  json_object_set_new(row, "evidence_rules", px__sorted(&rules));
  px_strmap_free(&rules);
  json_object_set_new(row, "evidence_count", json_integer((json_int_t)json_array_size(ev)));
  json_object_set_new(row, "leaves", leaves != NULL ? px__capped(leaves) : json_array());
  json_object_set_new(row, "answers", answers != NULL ? px__capped(answers) : json_array());
  json_object_set_new(row, "leaves_total", json_integer((json_int_t)json_array_size(leaves)));
  json_object_set_new(row, "answers_total", json_integer((json_int_t)json_array_size(answers)));
  return row;
}

typedef struct {
  const char *domain, *cc; /* cc: only this country's groups, or NULL */
  px_strmap_t last;        /* group -> px__last_t */
  json_t *buckets, *changes;
  size_t measurements;
} px__history_t;

/* Judges [since, until) alone and appends its bucket; 0 or a negative
 * errno (the store failed, or memory). */
static int px__bucket(px_request_t *r, px__history_t *h, time_t since, time_t until) {
  px_vantages_t vs;
  int rc = px_vantages_load(r->c->store, h->domain, since, until, false, &vs);
  if (rc != 0) {
    px_vantages_free(&vs);
    return rc;
  }
  h->measurements += vs.measurements;
  px_strmap_t seen;
  px_strmap_init(&seen);
  rc = px__collect(&vs, &seen);
  json_t *doc = rc == 0 ? px_compare_mode(h->domain, vs.v, vs.n, PX_QUORUM, PX_COMPARE_WINDOW)
                        : NULL;
  json_t *b = json_object(), *rows = json_array();
  char a[PX_TIME_ISO_LEN], z[PX_TIME_ISO_LEN];
  px_time_format_iso(since, a);
  px_time_format_iso(until, z);
  json_object_set_new(b, "since", json_string(a));
  json_object_set_new(b, "until", json_string(z));
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(doc, "vantages"), i, g) {
    const char *cc = json_string_value(json_object_get(g, "probe_cc"));
    const char *asn = json_string_value(json_object_get(g, "probe_asn"));
    if (cc == NULL || asn == NULL || (h->cc != NULL && strcmp(cc, h->cc) != 0))
      continue;
    char group[64];
    snprintf(group, sizeof(group), "%s/%s", cc, asn);
    const px__seen_t *s = px_strmap_get(&seen, group);
    px_strmap_t none;
    px_strmap_init(&none);
    json_t *leaves = px__sorted(s != NULL ? &s->leaves : &none);
    json_t *answers = px__sorted(s != NULL ? &s->answers : &none);
    px_strmap_free(&none);
    json_array_append_new(rows, px__row(g, leaves, answers));
    px__last_t *last = px_strmap_get(&h->last, group);
    if (last == NULL) {
      bool added;
      last = calloc(1, sizeof(*last));
      if (last != NULL)
        memcpy(last->name, group, sizeof(group)); /* before it keys the map */
      void **slot = last != NULL ? px_strmap_slot(&h->last, last->name, &added) : NULL;
      if (slot == NULL) {
        free(last);
        json_decref(leaves);
        json_decref(answers);
        rc = -ENOMEM;
        break;
      }
      *slot = last;
    }
    /* A change is between the buckets the group was measured in: a
     * bucket without its measurements says nothing either way. */
    if (last->leaves != NULL && !json_equal(last->leaves, leaves))
      px__change(h->changes, a, group, "leaf", last->leaves, leaves);
    if (last->answers != NULL && !json_equal(last->answers, answers))
      px__change(h->changes, a, group, "answer", last->answers, answers);
    json_decref(last->leaves);
    json_decref(last->answers);
    last->leaves = leaves;
    last->answers = answers;
  }
  /* Every group's: the verdicts rest on all of them, whatever probe_cc
   * narrows the rows to. */
  json_object_set_new(b, "measurements", json_integer((json_int_t)vs.measurements));
  json_object_set_new(b, "vantages", rows);
  json_array_append_new(h->buckets, b);
  json_decref(doc);
  px__seen_map_free(&seen);
  px_vantages_free(&vs);
  return rc;
}

static bool px__is_cc(const char *s) {
  return s != NULL && strlen(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

enum MHD_Result px_api_compare_history(px_request_t *r, const px_query_t *q) {
  static const char *const known[] = {"domain", "since", "until", "bucket", "probe_cc"};
  char domain[PX_HOSTNAME_MAX + 1], detail[160];
  for (size_t i = 0; i < q->n; i++) {
    bool ok = false;
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
      ok = ok || strcmp(q->v[i].name, known[k]) == 0;
    if (!ok) {
      snprintf(detail, sizeof(detail), "unknown parameter \"%.64s\"", q->v[i].name);
      return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
    }
  }
  if (!px_query_domain(px_query_get(q, "domain"), domain))
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "domain: a host name is required");
  /* The same window as /api/v1/compare's by default. */
  time_t until = time(NULL) + 60, since;
  const char *s = px_query_get(q, "until");
  if (s != NULL && px_time_parse_utc(s, &until) != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "until: ISO 8601 UTC");
  since = until - PX_COMPARE_WINDOW_S;
  s = px_query_get(q, "since");
  if (s != NULL && px_time_parse_utc(s, &since) != 0)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "since: ISO 8601 UTC");
  if (since >= until)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "since must be before until");
  const char *cc = px_query_get(q, "probe_cc");
  if (cc != NULL && !px__is_cc(cc))
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "probe_cc: two capital letters (ISO 3166-1 alpha-2)");
  const char *bucket = px_query_get(q, "bucket");
  if (bucket == NULL)
    bucket = until - since <= PX__HISTORY_HOURLY_UP_TO ? "hour" : "day";
  time_t w;
  if (strcmp(bucket, "hour") == 0)
    w = 3600;
  else if (strcmp(bucket, "day") == 0)
    w = 86400;
  else
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "bucket: hour or day");
  /* Buckets fall on UTC hour (day) boundaries, the first and the last
   * cut to the window: a bucket reads the same whatever window asked. */
  time_t first = since - (since % w + w) % w;
  int64_t nbuckets = ((int64_t)until - (int64_t)first + (int64_t)w - 1) / (int64_t)w;
  if (nbuckets > PX__HISTORY_BUCKETS_MAX) {
    snprintf(detail, sizeof(detail), "%lld %s buckets: at most %d (narrow the window%s)",
             (long long)nbuckets, bucket, PX__HISTORY_BUCKETS_MAX,
             w == 3600 ? " or use bucket=day" : "");
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
  }

  /* Measurements acknowledged before this request are part of the answer. */
  int64_t mark = -1;
  bool lagging = px_analysis_catch_up(r->c->analysis, 5000, &mark) != 0;
  px__history_t h = {.domain = domain, .cc = cc, .buckets = json_array(), .changes = json_array()};
  px_strmap_init(&h.last);
  int rc = 0;
  for (time_t b = first; rc == 0 && b < until; b += w)
    rc = px__bucket(r, &h, b > since ? b : since, b + w < until ? b + w : until);
  const char *k;
  void *val;
  for (size_t it = 0; px_strmap_next(&h.last, &it, &k, &val);) {
    px__last_t *last = val;
    json_decref(last->leaves);
    json_decref(last->answers);
    free(last);
  }
  px_strmap_free(&h.last);
  if (rc != 0) {
    json_decref(h.buckets);
    json_decref(h.changes);
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", "query failed");
  }
  json_t *doc = json_object();
  char a[PX_TIME_ISO_LEN], z[PX_TIME_ISO_LEN];
  px_time_format_iso(since, a);
  px_time_format_iso(until, z);
  json_object_set_new(doc, "domain", json_string(domain));
  json_object_set_new(doc, "quorum", json_integer(PX_QUORUM));
  json_object_set_new(doc, "since", json_string(a));
  json_object_set_new(doc, "until", json_string(z));
  json_object_set_new(doc, "bucket", json_string(bucket));
  json_object_set_new(doc, "probe_cc", cc != NULL ? json_string(cc) : json_null());
  json_object_set_new(doc, "measurements", json_integer((json_int_t)h.measurements));
  json_object_set_new(doc, "trust_store", json_string(px_analysis_trust(r->c->analysis)));
  json_object_set_new(doc, "analysis_complete", json_boolean(!lagging));
  json_object_set_new(doc, "buckets", h.buckets);
  json_object_set_new(doc, "changes", h.changes);
  return px_respond_json(r, MHD_HTTP_OK, doc);
}
