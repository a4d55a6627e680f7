#include "collector/analysis/verdict.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/analysis/verdict_internal.h"
#include "common/json_util.h"
#include "common/timeutil.h"

/* The comparison document (the index and the rules: verdict_index.c,
 * verdict_rules.c). */

static const char *const px__ranked[] = {"insufficient_data", "consistent", "tls_divergent",
                                         "tls_blocked", "dns_inconsistent", "tls_interception"};

int px_verdict_rank(const char *verdict) {
  for (int i = 0; verdict != NULL && i < (int)(sizeof(px__ranked) / sizeof(px__ranked[0])); i++)
    if (strcmp(px__ranked[i], verdict) == 0)
      return i;
  return -1;
}

/* ---- the document ---------------------------------------------------------- */

/* Addresses shown per group: a group whose vantages probed more (an
 * upload can list up to the schema's bounds) says how many were left out. */
#define PX__GROUP_ADDRESSES_MAX 64

/* The group's view of each address: leaf, verdict of the chain, and how
 * many vantages (all groups) saw the same leaf there; one row per
 * (address, leaf) in the order first met. */
static json_t *px__addresses(px__index_t *x, const px__m_t *const *members, size_t nmembers,
                             size_t *left_out) {
  json_t *out = json_array();
  px_strmap_t shown;
  px_strmap_init(&shown);
  char **keys = NULL;
  size_t nkeys = 0;
  *left_out = 0;
  for (size_t mi = 0; mi < nmembers; mi++) {
    for (size_t i = 0; i < members[mi]->nflows; i++) {
      const px__flow_t *f = &members[mi]->flows[i];
      char k[PX_ADDRSTRLEN + 8 + 72];
      snprintf(k, sizeof(k), "%s %s", f->key, f->leaf ? f->leaf : "-");
      if (px_strmap_has(&shown, k))
        continue;
      if (json_array_size(out) >= PX__GROUP_ADDRESSES_MAX) {
        (*left_out)++;
        continue;
      }
      char **more = realloc(keys, (nkeys + 1) * sizeof(char *));
      char *copy = more != NULL ? strdup(k) : NULL;
      if (more != NULL)
        keys = more;
      if (copy == NULL)
        break;
      keys[nkeys++] = copy;
      px_strset_add(&shown, copy);
      size_t seen = 0;
      if (f->leaf != NULL) {
        snprintf(k, sizeof(k), "%s %s", f->key, f->leaf);
        px_strmap_t *by = px_strmap_get(&x->seen_at, k);
        seen = by != NULL ? by->n : 0;
      }
      char address[PX_ADDRSTRLEN + 8];
      px__vd_address_text(f, address, sizeof(address));
      const char *fail = f->failure ? f->failure : f->connect_failure;
      if (fail == NULL && f->completed && !f->verified)
        fail = f->judged_failure;
      json_t *e = json_object();
      json_object_set_new(e, "address", json_string(address));
      json_object_set_new(e, "resolved", json_boolean(f->resolved));
      json_object_set_new(e, "control", json_boolean(f->control));
      json_object_set_new(e, "completed", json_boolean(f->completed));
      json_object_set_new(e, "failure", px_json_string_or_null(fail));
      json_object_set_new(e, "leaf_sha256", px_json_string_or_null(f->leaf));
      json_t *subject = json_object_get(f->entry, "subject"), *issuer = json_object_get(f->entry, "issuer");
      json_object_set_new(e, "subject", json_is_string(subject) ? json_copy(subject) : json_null());
      json_object_set_new(e, "issuer", json_is_string(issuer) ? json_copy(issuer) : json_null());
      json_object_set_new(e, "self_signed", json_boolean(f->self_signed));
      json_object_set_new(e, "verified", json_boolean(f->verified));
      json_object_set_new(e, "completed_from_pool", json_boolean(f->completed_from_pool));
      json_object_set_new(e, "issuer_spki_sha256", px_json_string_or_null(f->issuer_spki));
      json_object_set_new(e, "agent_verified", json_boolean(f->agent_verified));
      json_object_set_new(e, "seen_by", json_integer((json_int_t)seen));
      json_array_append_new(out, e);
    }
  }
  for (size_t i = 0; i < nkeys; i++)
    free(keys[i]);
  free(keys);
  px_strmap_free(&shown);
  return out;
}

static int px__group_cmp(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int rx = px_verdict_rank(px__s(x, "verdict")), ry = px_verdict_rank(px__s(y, "verdict"));
  if (rx != ry)
    return ry - rx;
  int c = strcmp(px__s(x, "probe_cc"), px__s(y, "probe_cc"));
  return c != 0 ? c : strcmp(px__s(x, "probe_asn"), px__s(y, "probe_asn"));
}

/* ---- over the window ---------------------------------------------------------
 * Every entry (a key's distinct summary) is judged once; a key's
 * measurements then each carry their entry's class, in time order. */

/* One measurement of a key: when, which, and its entry. */
typedef struct {
  time_t t;
  const char *uid;
  size_t entry;
} px__when_t;

static int px__when_cmp(const void *a, const void *b) {
  const px__when_t *x = a, *y = b;
  if (x->t != y->t)
    return x->t < y->t ? -1 : 1;
  return strcmp(x->uid ? x->uid : "", y->uid ? y->uid : "");
}

/* What one key's measurements support. */
typedef struct {
  const char *verdict;
  size_t measurements, anomalous;
  time_t first, last, clean_since; /* of the anomalous ones; 0: none */
  bool ongoing;
  size_t evidence_entry; /* SIZE_MAX: none */
  px__when_t *timeline;
} px__key_view_t;

/* Blocking rests on an absence (a reset, a timeout): one lost packet or a
 * flaky home Wi-Fi is not a verdict. Positive evidence (a certificate, an
 * answer) stands on one measurement. */
static bool px__supported(const char *verdict, size_t count, size_t total, px_compare_mode_t mode) {
  if (count == 0)
    return false;
  if (mode == PX_COMPARE_LATEST || strcmp(verdict, "tls_blocked") != 0)
    return true;
  return count >= 2 && 2 * count >= total;
}

static void px__key_view(px__key_view_t *kv, const char *const *verdicts, px_compare_mode_t mode) {
  static const char *const classes[] = {"tls_interception", "dns_inconsistent", "tls_blocked",
                                        "tls_divergent"};
  size_t n = kv->measurements;
  kv->verdict = "insufficient_data";
  kv->evidence_entry = SIZE_MAX;
  for (size_t i = 0; i < n; i++)
    if (strcmp(verdicts[kv->timeline[i].entry], "insufficient_data") != 0)
      kv->verdict = "consistent";
  for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
      count += strcmp(verdicts[kv->timeline[i].entry], classes[c]) == 0;
    if (px__supported(classes[c], count, n, mode)) {
      kv->verdict = classes[c];
      break;
    }
  }
  kv->anomalous = 0;
  kv->first = kv->last = kv->clean_since = 0;
  bool anomaly = strcmp(kv->verdict, "consistent") != 0 && strcmp(kv->verdict, "insufficient_data") != 0;
  for (size_t i = 0; anomaly && i < n; i++) {
    const px__when_t *w = &kv->timeline[i];
    if (strcmp(verdicts[w->entry], kv->verdict) != 0) {
      if (kv->anomalous > 0 && kv->clean_since == 0)
        kv->clean_since = w->t;
      continue;
    }
    if (kv->anomalous++ == 0)
      kv->first = w->t;
    kv->last = w->t;
    kv->clean_since = 0;
    kv->evidence_entry = w->entry; /* the newest evidence of it */
  }
  kv->ongoing = anomaly && n > 0 && strcmp(verdicts[kv->timeline[n - 1].entry], kv->verdict) == 0;
}

static json_t *px__time_or_null(time_t t) {
  char buf[PX_TIME_OONI_LEN];
  if (t == 0)
    return json_null();
  px_time_format_ooni(t, buf);
  return json_string(buf);
}

/* A group lists the uids its verdict rests on, at most this many. */
#define PX__GROUP_UIDS_MAX 256

static int px__when_newest_first(const void *a, const void *b) {
  return -px__when_cmp(a, b);
}

static bool px__same(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* What a group's "measurements" lists: every measurement that showed its
 * verdict (newest first), then each key's latest; the rest of the window
 * is counted (measurements_left_out) and paged by /api/v1/measurements.
 * A thousand hourly vantages would otherwise put 24,000 uids in a page. */
static json_t *px__group_uids(px__key_view_t *const *keys, size_t nk, const char *worst,
                              const char *const *verdicts, bool anomaly, size_t *listed) {
  json_t *uids = json_array();
  size_t n = 0;
  for (size_t i = 0; anomaly && i < nk; i++)
    if (strcmp(keys[i]->verdict, worst) == 0)
      n += keys[i]->anomalous;
  px__when_t *shown = calloc(n + nk + 1, sizeof(*shown));
  size_t ns = 0;
  for (size_t i = 0; shown != NULL && anomaly && i < nk; i++)
    for (size_t k = 0; px__same(keys[i]->verdict, worst) && k < keys[i]->measurements; k++)
      if (px__same(verdicts[keys[i]->timeline[k].entry], worst))
        shown[ns++] = keys[i]->timeline[k];
  size_t anomalous = ns;
  for (size_t i = 0; shown != NULL && i < nk; i++) {
    const px__when_t *latest = &keys[i]->timeline[keys[i]->measurements - 1];
    /* Listed already when it showed the verdict. */
    if (!(anomaly && px__same(keys[i]->verdict, worst) && px__same(verdicts[latest->entry], worst)))
      shown[ns++] = *latest;
  }
  if (shown != NULL) {
    qsort(shown, anomalous, sizeof(*shown), px__when_newest_first);
    qsort(shown + anomalous, ns - anomalous, sizeof(*shown), px__when_newest_first);
  }
  for (size_t i = 0; i < ns && i < PX__GROUP_UIDS_MAX; i++)
    json_array_append_new(uids, px_json_string_or_null(shown[i].uid));
  *listed = json_array_size(uids);
  free(shown);
  return uids;
}

/* One group's entry: its verdict is the most severe of its keys'; the
 * confidence is the share of its keys that earn it, weighed by how much of
 * the window showed it (documented in docs/analysis.md). */
static json_t *px__group_doc(px__index_t *x, px__key_view_t *const *keys, size_t nk,
                             const char *const *verdicts, json_t *const *evidence) {
  const char *worst = "insufficient_data";
  for (size_t i = 0; i < nk; i++)
    if (px_verdict_rank(keys[i]->verdict) > px_verdict_rank(worst))
      worst = keys[i]->verdict;
  size_t agree = 0, total = 0, anomalous = 0, left_out = 0, nmembers = 0, nuids = 0;
  time_t first = 0, last = 0, clean = 0;
  bool ongoing = false;
  json_t *ev = json_array();
  for (size_t i = 0; i < nk; i++) {
    total += keys[i]->measurements;
    nmembers += keys[i]->measurements;
    if (strcmp(keys[i]->verdict, worst) != 0)
      continue;
    agree++;
    anomalous += keys[i]->anomalous;
    if (keys[i]->anomalous > 0) {
      first = first == 0 || keys[i]->first < first ? keys[i]->first : first;
      last = keys[i]->last > last ? keys[i]->last : last;
      ongoing |= keys[i]->ongoing;
      clean = keys[i]->clean_since > clean ? keys[i]->clean_since : clean;
    }
    size_t e = keys[i]->evidence_entry;
    if (e != SIZE_MAX && evidence[e] != NULL) {
      json_t *copy = json_copy(evidence[e]);
      json_object_set_new(copy, "key_id", px_json_string_or_null(x->m[e].v->key_id));
      json_object_set_new(copy, "measurement_uid", px_json_string_or_null(x->m[e].v->uid));
      json_array_append_new(ev, copy);
    }
  }
  /* The members' entries (addresses). */
  const px__m_t **members = calloc(nmembers + 1, sizeof(px__m_t *));
  size_t nm = 0;
  for (size_t i = 0; members != NULL && i < nk; i++) {
    size_t from = nm;
    for (size_t k = 0; k < keys[i]->measurements; k++) {
      /* A key has few distinct entries: a short scan of its own. */
      const px__m_t *m = &x->m[keys[i]->timeline[k].entry];
      bool dup = false;
      for (size_t j = from; j < nm && !dup; j++)
        dup = members[j] == m;
      if (!dup)
        members[nm++] = m;
    }
  }
  const px_vantage_t *first_v = keys[0]->timeline[0].entry < x->n
                                    ? x->m[keys[0]->timeline[0].entry].v
                                    : NULL;
  json_t *g = json_object();
  json_object_set_new(g, "probe_cc", json_string(first_v && first_v->probe_cc ? first_v->probe_cc : "ZZ"));
  json_object_set_new(g, "probe_asn", json_string(first_v && first_v->probe_asn ? first_v->probe_asn : "AS0"));
  json_object_set_new(g, "verdict", json_string(worst));
  /* The share of keys that earn it, times 0.5 + 0.5 x how much of their
   * window showed it (an interception seen once in three runs counts, but
   * less than one seen every time); halved again for a divergent chain,
   * which validates: a lead, not proof. */
  double share = (double)agree / (double)nk;
  size_t their = 0;
  for (size_t i = 0; i < nk; i++)
    if (strcmp(keys[i]->verdict, worst) == 0)
      their += keys[i]->measurements;
  bool anomaly = strcmp(worst, "consistent") != 0 && strcmp(worst, "insufficient_data") != 0;
  json_t *uids = px__group_uids(keys, nk, worst, verdicts, anomaly, &nuids);
  if (anomaly && their > 0)
    share *= 0.5 + 0.5 * (double)anomalous / (double)their;
  if (strcmp(worst, "tls_divergent") == 0)
    share /= 2;
  json_object_set_new(g, "confidence", json_real(share));
  json_object_set_new(g, "vantage_count", json_integer((json_int_t)nk));
  json_t *obs = json_object();
  json_object_set_new(obs, "measurements", json_integer((json_int_t)total));
  json_object_set_new(obs, "anomalous", json_integer((json_int_t)anomalous));
  json_object_set_new(obs, "first_seen", px__time_or_null(first));
  json_object_set_new(obs, "last_seen", px__time_or_null(last));
  json_object_set_new(obs, "ongoing", json_boolean(ongoing));
  json_object_set_new(obs, "clean_since", px__time_or_null(ongoing ? 0 : clean));
  json_object_set_new(g, "observed", obs);
  json_object_set_new(g, "addresses", members != NULL ? px__addresses(x, members, nm, &left_out)
                                                      : json_array());
  if (left_out > 0)
    json_object_set_new(g, "addresses_left_out", json_integer((json_int_t)left_out));
  json_object_set_new(g, "evidence", ev);
  json_object_set_new(g, "measurements", uids);
  if (total > nuids)
    json_object_set_new(g, "measurements_left_out", json_integer((json_int_t)(total - nuids)));
  free(members);
  return g;
}

/* The timeline of every key: its measurements, each with its entry. */
static int px__timelines(const px__index_t *x, px_strmap_t *by_key, px__key_view_t **views,
                         size_t *nviews) {
  *views = calloc(x->n + 1, sizeof(px__key_view_t));
  if (*views == NULL)
    return -1;
  *nviews = 0;
  /* Count per key first (key -> view index + 1), then fill. */
  for (size_t i = 0; i < x->n; i++) {
    const px_vantage_t *v = x->m[i].v;
    const char *key = v->key_id ? v->key_id : "";
    bool added;
    void **slot = px_strmap_slot(by_key, key, &added);
    if (slot == NULL)
      return -1;
    if (added)
      *slot = &(*views)[(*nviews)++];
    px__key_view_t *kv = *slot;
    kv->measurements += v->ntimes > 0 ? v->ntimes : 1;
  }
  for (size_t k = 0; k < *nviews; k++) {
    (*views)[k].timeline = calloc((*views)[k].measurements + 1, sizeof(px__when_t));
    if ((*views)[k].timeline == NULL)
      return -1;
    (*views)[k].measurements = 0;
  }
  for (size_t i = 0; i < x->n; i++) {
    const px_vantage_t *v = x->m[i].v;
    px__key_view_t *kv = px_strmap_get(by_key, v->key_id ? v->key_id : "");
    if (v->ntimes == 0)
      kv->timeline[kv->measurements++] = (px__when_t){v->measurement_start_time, v->uid, i};
    for (size_t t = 0; t < v->ntimes; t++)
      kv->timeline[kv->measurements++] =
          (px__when_t){v->times[t], v->uids != NULL ? v->uids[t] : v->uid, i};
  }
  for (size_t k = 0; k < *nviews; k++)
    qsort((*views)[k].timeline, (*views)[k].measurements, sizeof(px__when_t), px__when_cmp);
  return 0;
}


/* Each key's newest measurement only (its entry, narrowed to that one
 * time): what PX_COMPARE_LATEST judges. *out is a new array. */
static size_t px__latest_only(const px_vantage_t *v, size_t n, px_vantage_t **out) {
  px_strmap_t newest;
  px_strmap_init(&newest);
  *out = calloc(n + 1, sizeof(px_vantage_t));
  size_t m = 0;
  for (size_t i = 0; *out != NULL && i < n; i++) {
    bool added;
    void **slot = px_strmap_slot(&newest, v[i].key_id ? v[i].key_id : "", &added);
    if (slot == NULL)
      break;
    px_vantage_t one = v[i];
    one.ntimes = 0; /* uid and measurement_start_time are the newest */
    one.times = NULL;
    one.uids = NULL;
    if (added) {
      (*out)[m] = one;
      *slot = &(*out)[m++];
    } else if (one.measurement_start_time > ((px_vantage_t *)*slot)->measurement_start_time) {
      *(px_vantage_t *)*slot = one;
    }
  }
  px_strmap_free(&newest);
  return m;
}

/* The document over v as given (each entry every time it lists). */
static json_t *px__compare(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum,
                           px_compare_mode_t mode) {
  json_t *doc = json_object(), *groups = json_array();
  px__index_t x;
  const char **verdicts = calloc(n ? n : 1, sizeof(char *));
  json_t **evidence = calloc(n ? n : 1, sizeof(json_t *));
  px_strmap_t by_key, by_group;
  px_strmap_init(&by_key);
  px_strmap_init(&by_group);
  px__key_view_t *views = NULL;
  size_t nviews = 0;
  bool ok = px__vd_index(&x, v, n) == 0 && verdicts && evidence;

  for (size_t i = 0; ok && i < n; i++)
    verdicts[i] = px__vd_judge(&x, &x.m[i], quorum, &evidence[i]);
  ok = ok && px__timelines(&x, &by_key, &views, &nviews) == 0;
  for (size_t k = 0; ok && k < nviews; k++)
    px__key_view(&views[k], verdicts, mode);
  /* Keys by group (a key's group is its newest entry's), in the order
   * the groups are first met: each view's group number, then a counting
   * sort into one members array. */
  size_t *group_of = ok ? calloc(nviews + 1, sizeof(size_t)) : NULL;
  size_t *starts = ok ? calloc(nviews + 2, sizeof(size_t)) : NULL;
  px__key_view_t **members = ok ? calloc(nviews + 1, sizeof(px__key_view_t *)) : NULL;
  size_t ngroups = 0;
  ok = ok && group_of != NULL && starts != NULL && members != NULL;
  for (size_t k = 0; ok && k < nviews; k++) {
    const char *group = x.m[views[k].timeline[views[k].measurements - 1].entry].group;
    bool added;
    void **slot = px_strmap_slot(&by_group, group, &added);
    if (slot == NULL) {
      ok = false;
      break;
    }
    if (added)
      *slot = &starts[ngroups++]; /* a stable address standing for the number */
    group_of[k] = (size_t)((size_t *)*slot - starts);
  }
  if (ok) {
    size_t *fill = calloc(ngroups + 1, sizeof(size_t));
    memset(starts, 0, (nviews + 2) * sizeof(size_t));
    for (size_t k = 0; k < nviews; k++)
      starts[group_of[k] + 1]++;
    for (size_t g = 0; g < ngroups; g++)
      starts[g + 1] += starts[g];
    for (size_t k = 0; fill != NULL && k < nviews; k++)
      members[starts[group_of[k]] + fill[group_of[k]]++] = &views[k];
    for (size_t g = 0; fill != NULL && g < ngroups; g++)
      json_array_append_new(groups, px__group_doc(&x, members + starts[g], starts[g + 1] - starts[g],
                                                  verdicts, evidence));
    free(fill);
  }
  free(group_of);
  free(starts);
  free(members);

  size_t ng = json_array_size(groups);
  json_t **sorted = calloc(ng ? ng : 1, sizeof(json_t *));
  for (size_t i = 0; sorted != NULL && i < ng; i++)
    sorted[i] = json_incref(json_array_get(groups, i));
  if (sorted != NULL) {
    qsort(sorted, ng, sizeof(json_t *), px__group_cmp);
    json_array_clear(groups);
    for (size_t i = 0; i < ng; i++)
      json_array_append_new(groups, sorted[i]);
  }
  json_object_set_new(doc, "domain", json_string(domain));
  json_object_set_new(doc, "quorum", json_integer(quorum));
  json_object_set_new(doc, "vantages", groups);
  for (size_t i = 0; evidence != NULL && i < n; i++)
    json_decref(evidence[i]);
  for (size_t k = 0; views != NULL && k < nviews; k++)
    free(views[k].timeline);
  free(views);
  free(sorted);
  free(evidence);
  free(verdicts);
  px_strmap_free(&by_key);
  px_strmap_free(&by_group);
  px__vd_index_free(&x);
  return doc;
}

/* The addresses most groups saw verify come first, so a bound keeps the
 * best-attested ones. */
typedef struct {
  const char *ip;
  size_t groups;
} px__control_t;

static int px__control_cmp(const void *a, const void *b) {
  const px__control_t *x = a, *y = b;
  if (x->groups != y->groups)
    return x->groups > y->groups ? -1 : 1;
  return strcmp(x->ip, y->ip);
}

json_t *px_control_addresses(const px_vantage_t *v, size_t n, unsigned min_groups,
                             bool allow_nonpublic) {
  json_t *ips = json_array();
  px__index_t x;
  if (px__vd_index(&x, v, n) != 0) {
    px__vd_index_free(&x);
    return ips;
  }
  /* ip -> groups that completed a verified handshake there (any port):
   * the index has it; only public unicast counts unless allowed. */
  const px_strmap_t *by_ip = &x.ip_verified;
  px__control_t *c = calloc(by_ip->n + 1, sizeof(*c));
  size_t nc = 0, it = 0;
  const char *ip;
  void *val;
  while (c != NULL && px_strmap_next(by_ip, &it, &ip, &val)) {
    struct sockaddr_storage ss;
    if (((px_strmap_t *)val)->n < min_groups || px_addr_parse_ip(ip, &ss) != 0 ||
        (!allow_nonpublic && !px_addr_is_public((struct sockaddr *)&ss, NULL)))
      continue;
    c[nc++] = (px__control_t){ip, ((px_strmap_t *)val)->n};
  }
  if (c != NULL)
    qsort(c, nc, sizeof(*c), px__control_cmp);
  for (size_t i = 0; i < nc && i < PX_CONTROL_ADDRESSES_MAX; i++)
    json_array_append_new(ips, json_string(c[i].ip));
  free(c);
  px__vd_index_free(&x);
  return ips;
}

json_t *px_compare_mode(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum,
                        px_compare_mode_t mode) {
  if (mode != PX_COMPARE_LATEST)
    return px__compare(domain, v, n, quorum, mode);
  px_vantage_t *latest = NULL;
  size_t m = px__latest_only(v, n, &latest);
  json_t *doc = px__compare(domain, latest != NULL ? latest : v, latest != NULL ? m : 0, quorum,
                            mode);
  free(latest);
  return doc;
}

json_t *px_compare(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum) {
  return px_compare_mode(domain, v, n, quorum, PX_COMPARE_WINDOW);
}
