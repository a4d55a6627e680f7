#include "collector/verdict.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/strmap.h"
#include "common/json_util.h"
#include "common/netaddr.h"

/* The comparison of a window's summaries. Every summary is read once into
 * the structs below (strings borrowed from the summaries' JSON, which the
 * caller keeps alive), then indexed by address, leaf and answer in hash
 * maps, so that judging every vantage costs what reading them cost: linear
 * in the entries of the window, plus the sorting of what is shown. The
 * summaries come from the collector's own analysis but are read as if
 * they came from anywhere: a field of the wrong type is a field missing. */

static const char *const px__ranked[] = {"insufficient_data", "consistent", "tls_blocked",
                                         "dns_inconsistent", "tls_interception"};

int px_verdict_rank(const char *verdict) {
  for (int i = 0; verdict != NULL && i < 5; i++)
    if (strcmp(px__ranked[i], verdict) == 0)
      return i;
  return -1;
}

/* ---- one summary, read ------------------------------------------------------ */

typedef struct {
  const char *ip;
  int port;
  char key[PX_ADDRSTRLEN + 8]; /* "ip port": the index's key */
  bool resolved, control, completed, verified, self_signed, agent_verified;
  const char *leaf, *failure, *connect_failure, *judged_failure;
  json_t *entry; /* the summary's own entry: subject, issuer, errors */
} px__flow_t;

typedef struct {
  const px_vantage_t *v;
  const char *group; /* "CC/ASN", owned by the groups table */
  bool answered, evidence;
  const char **addrs;
  size_t naddrs;
  px__flow_t *flows;
  size_t nflows;
} px__m_t;

static bool px__b(json_t *o, const char *k) {
  return json_is_true(json_object_get(o, k));
}

static const char *px__s(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* Reads v's summary into m (flows without a usable ip and port skipped). */
static int px__read(const px_vantage_t *v, px__m_t *m) {
  json_t *dns = json_object_get(v->summary, "dns"), *tls = json_object_get(v->summary, "tls");
  json_t *addrs = json_object_get(dns, "addresses");
  m->v = v;
  m->answered = px__b(dns, "answered");
  m->addrs = calloc(json_array_size(addrs) + 1, sizeof(char *));
  m->flows = calloc(json_array_size(tls) + 1, sizeof(px__flow_t));
  if (m->addrs == NULL || m->flows == NULL)
    return -1;
  size_t i;
  json_t *e;
  json_array_foreach(addrs, i, e)
    if (json_is_string(e))
      m->addrs[m->naddrs++] = json_string_value(e);
  json_array_foreach(tls, i, e) {
    const char *ip = px__s(e, "ip");
    json_t *port = json_object_get(e, "port");
    if (ip == NULL || !json_is_integer(port) || json_integer_value(port) < 1 ||
        json_integer_value(port) > 65535 || strlen(ip) >= PX_ADDRSTRLEN)
      continue;
    px__flow_t *f = &m->flows[m->nflows++];
    f->ip = ip;
    f->port = (int)json_integer_value(port);
    snprintf(f->key, sizeof(f->key), "%s %d", ip, f->port);
    f->resolved = px__b(e, "resolved");
    f->control = px__b(e, "control");
    f->completed = px__b(e, "completed");
    f->verified = f->completed && px__b(e, "verified");
    f->self_signed = px__b(e, "self_signed");
    f->agent_verified = px__b(e, "agent_verified");
    f->leaf = px__s(e, "leaf_sha256");
    f->failure = px__s(e, "failure");
    f->connect_failure = px__s(e, "connect_failure");
    f->judged_failure = px__s(e, "judged_failure");
    f->entry = e;
  }
  m->evidence = m->answered || m->nflows > 0;
  return 0;
}

/* ---- the window's index ---------------------------------------------------- */

/* Sets are maps whose values do not matter; nested maps are allocated and
 * listed in owned[] for freeing. */
typedef struct {
  px__m_t *m;
  size_t n;
  char **group_names;
  px_strmap_t groups; /* "CC/ASN" -> itself */
  /* "ip port" -> (group -> set of leaves it saw verified there) */
  px_strmap_t verified_at;
  /* "ip port leaf" -> set of key ids that saw that leaf there */
  px_strmap_t seen_at;
  char **seen_keys;
  size_t nseen;
  px_strmap_t answered_by; /* ip -> set of groups whose DNS answered it */
  px_strmap_t answering;   /* groups with an answer */
  px_strmap_t with_evidence;
  px_strmap_t **owned;
  size_t nowned, capowned;
  bool oom;
} px__index_t;

static px_strmap_t *px__new_set(px__index_t *x) {
  if (x->nowned == x->capowned) {
    size_t cap = x->capowned ? x->capowned * 2 : 64;
    px_strmap_t **o = realloc(x->owned, cap * sizeof(px_strmap_t *));
    if (o == NULL)
      return NULL;
    x->owned = o;
    x->capowned = cap;
  }
  px_strmap_t *set = calloc(1, sizeof(*set));
  if (set != NULL)
    x->owned[x->nowned++] = set;
  return set;
}

/* The nested set under key in map, made on first use. */
static px_strmap_t *px__subset(px__index_t *x, px_strmap_t *map, const char *key) {
  bool added;
  void **slot = px_strmap_slot(map, key, &added);
  if (slot == NULL)
    return NULL;
  if (*slot == NULL)
    *slot = px__new_set(x);
  return *slot;
}

static void px__add(px__index_t *x, px_strmap_t *set, const char *key) {
  if (set == NULL || px_strset_add(set, key) < 0)
    x->oom = true;
}

static void px__index_free(px__index_t *x) {
  for (size_t i = 0; i < x->n; i++) {
    free(x->m[i].addrs);
    free(x->m[i].flows);
  }
  free(x->m);
  for (size_t i = 0; i < x->groups.n && x->group_names != NULL; i++)
    free(x->group_names[i]);
  free(x->group_names);
  for (size_t i = 0; i < x->nseen; i++)
    free(x->seen_keys[i]);
  free(x->seen_keys);
  for (size_t i = 0; i < x->nowned; i++) {
    px_strmap_free(x->owned[i]);
    free(x->owned[i]);
  }
  free(x->owned);
  px_strmap_free(&x->groups);
  px_strmap_free(&x->verified_at);
  px_strmap_free(&x->seen_at);
  px_strmap_free(&x->answered_by);
  px_strmap_free(&x->answering);
  px_strmap_free(&x->with_evidence);
}

static const char *px__group_of(px__index_t *x, const px_vantage_t *v) {
  char name[64];
  snprintf(name, sizeof(name), "%s/%s", v->probe_cc ? v->probe_cc : "ZZ",
           v->probe_asn ? v->probe_asn : "AS0");
  const char *known = px_strmap_get(&x->groups, name);
  if (known != NULL)
    return known;
  char *copy = strdup(name);
  bool added;
  void **slot = copy != NULL ? px_strmap_slot(&x->groups, copy, &added) : NULL;
  if (slot == NULL) {
    free(copy);
    x->oom = true;
    return NULL;
  }
  x->group_names[x->groups.n - 1] = copy;
  *slot = copy;
  return copy;
}

/* A copy of k kept until the index is freed (keys of seen_at). */
static const char *px__own_key(px__index_t *x, const char *k) {
  char **keys = realloc(x->seen_keys, (x->nseen + 1) * sizeof(char *));
  if (keys == NULL)
    return NULL;
  x->seen_keys = keys;
  char *copy = strdup(k);
  if (copy != NULL)
    x->seen_keys[x->nseen++] = copy;
  return copy;
}

static int px__index(px__index_t *x, const px_vantage_t *v, size_t n) {
  memset(x, 0, sizeof(*x));
  x->m = calloc(n ? n : 1, sizeof(px__m_t));
  x->group_names = calloc(n ? n : 1, sizeof(char *));
  if (x->m == NULL || x->group_names == NULL)
    return -1;
  x->n = n;
  for (size_t i = 0; i < n; i++) {
    px__m_t *m = &x->m[i];
    if (px__read(&v[i], m) != 0 || (m->group = px__group_of(x, &v[i])) == NULL)
      return -1;
    if (m->evidence)
      px__add(x, &x->with_evidence, m->group);
    if (m->answered) {
      px__add(x, &x->answering, m->group);
      for (size_t a = 0; a < m->naddrs; a++)
        px__add(x, px__subset(x, &x->answered_by, m->addrs[a]), m->group);
    }
    for (size_t k = 0; k < m->nflows; k++) {
      px__flow_t *f = &m->flows[k];
      if (f->verified && f->leaf != NULL) {
        px_strmap_t *groups = px__subset(x, &x->verified_at, f->key);
        px__add(x, groups != NULL ? px__subset(x, groups, m->group) : NULL, f->leaf);
      }
      if (f->leaf != NULL && v[i].key_id != NULL) {
        char sk[PX_ADDRSTRLEN + 8 + 72];
        snprintf(sk, sizeof(sk), "%s %s", f->key, f->leaf);
        px_strmap_t *keys = px_strmap_get(&x->seen_at, sk);
        if (keys == NULL) {
          const char *owned = px__own_key(x, sk);
          keys = owned != NULL ? px__subset(x, &x->seen_at, owned) : NULL;
        }
        px__add(x, keys, v[i].key_id);
      }
    }
  }
  return x->oom ? -1 : 0;
}

/* Members of set, but not `except`, as a sorted JSON array. */
static int px__str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *px__sorted(const px_strmap_t *set, const char *except, size_t max) {
  const char **v = calloc(set->n + 1, sizeof(char *));
  json_t *arr = json_array();
  size_t n = 0, i = 0;
  const char *k;
  if (v == NULL)
    return arr;
  while (px_strmap_next(set, &i, &k, NULL))
    if (except == NULL || strcmp(k, except) != 0)
      v[n++] = k;
  qsort(v, n, sizeof(char *), px__str_cmp);
  for (size_t j = 0; j < n && j < max; j++)
    json_array_append_new(arr, json_string(v[j]));
  free(v);
  return arr;
}

static size_t px__count_except(const px_strmap_t *set, const char *except) {
  return set->n - (px_strmap_has(set, except) ? 1 : 0);
}

static void px__address_text(const px__flow_t *f, char *out, size_t n) {
  snprintf(out, n, strchr(f->ip, ':') ? "[%s]:%d" : "%s:%d", f->ip, f->port);
}

/* ---- the rules ------------------------------------------------------------- */

/* What is shown of other groups' addresses or leaves in evidence. */
#define PX__SHOWN_MAX 64

/* Failures that a censor's middlebox produces, as opposed to a
 * volunteer's broken IPv6 or a missing route. */
static bool px__blocking_failure(const char *f) {
  static const char *const kinds[] = {"connection_reset", "generic_timeout_error", "eof_error",
                                      "ssl_failed_handshake", "connection_refused"};
  for (size_t i = 0; f != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++)
    if (strcmp(f, kinds[i]) == 0)
      return true;
  return false;
}

/* Rule 2: at an address:port where this vantage's completed handshake did
 * not verify, a quorum of other groups completed a VERIFIED handshake with
 * a different leaf. */
static json_t *px__interception(px__index_t *x, const px__m_t *m, unsigned quorum) {
  for (size_t i = 0; i < m->nflows; i++) {
    const px__flow_t *f = &m->flows[i];
    if (!f->completed || f->verified || f->leaf == NULL)
      continue;
    px_strmap_t *by_group = px_strmap_get(&x->verified_at, f->key);
    if (by_group == NULL)
      continue;
    px_strmap_t groups, leaves;
    px_strmap_init(&groups);
    px_strmap_init(&leaves);
    size_t it = 0;
    const char *g;
    void *val;
    while (px_strmap_next(by_group, &it, &g, &val)) {
      px_strmap_t *their = val;
      if (strcmp(g, m->group) == 0 || their->n == 0 ||
          (their->n == 1 && px_strmap_has(their, f->leaf)))
        continue;
      px_strset_add(&groups, g);
      size_t lt = 0;
      const char *leaf;
      while (px_strmap_next(their, &lt, &leaf, NULL))
        if (strcmp(leaf, f->leaf) != 0)
          px_strset_add(&leaves, leaf);
    }
    json_t *e = NULL;
    if (groups.n >= quorum) {
      char address[PX_ADDRSTRLEN + 8];
      px__address_text(f, address, sizeof(address));
      e = json_object();
      json_object_set_new(e, "rule", json_string("tls_interception"));
      json_object_set_new(e, "address", json_string(address));
      json_object_set_new(e, "leaf_sha256", json_string(f->leaf));
      json_object_set_new(e, "subject", px_json_copy_or_null(json_object_get(f->entry, "subject")));
      json_object_set_new(e, "issuer", px_json_copy_or_null(json_object_get(f->entry, "issuer")));
      json_object_set_new(e, "self_signed", json_boolean(f->self_signed));
      json_t *errors = json_object_get(f->entry, "errors");
      json_object_set_new(e, "collector_errors", json_is_array(errors) ? json_deep_copy(errors)
                                                                       : json_array());
      json_object_set_new(e, "others_leaf_sha256", px__sorted(&leaves, NULL, PX__SHOWN_MAX));
      json_object_set_new(e, "others_groups", px__sorted(&groups, NULL, SIZE_MAX));
    }
    px_strmap_free(&groups);
    px_strmap_free(&leaves);
    if (e != NULL)
      return e;
  }
  return NULL;
}

/* Rule 3: this vantage's answers share no address with the other groups'
 * answers (a quorum of them answering), and none of its answered
 * addresses verified. */
static json_t *px__dns_inconsistent(px__index_t *x, const px__m_t *m, unsigned quorum) {
  if (!m->answered || m->naddrs == 0)
    return NULL;
  for (size_t i = 0; i < m->nflows; i++)
    if (m->flows[i].resolved && m->flows[i].verified)
      return NULL; /* an answered address verified: not redirection */
  for (size_t a = 0; a < m->naddrs; a++) {
    px_strmap_t *groups = px_strmap_get(&x->answered_by, m->addrs[a]);
    if (groups != NULL && px__count_except(groups, m->group) > 0)
      return NULL; /* a shared address: geo-DNS, CDNs */
  }
  if (px__count_except(&x->answering, m->group) < quorum)
    return NULL;
  /* What the others answered (bounded: a list to read, not a dump). */
  px_strmap_t theirs;
  px_strmap_init(&theirs);
  for (size_t k = 0; k < x->n && theirs.n < PX__SHOWN_MAX; k++) {
    const px__m_t *o = &x->m[k];
    if (!o->answered || strcmp(o->group, m->group) == 0)
      continue;
    for (size_t a = 0; a < o->naddrs && theirs.n < PX__SHOWN_MAX; a++)
      px_strset_add(&theirs, o->addrs[a]);
  }
  json_t *e = json_object(), *mine = json_array();
  for (size_t a = 0; a < m->naddrs && a < PX__SHOWN_MAX; a++)
    json_array_append_new(mine, json_string(m->addrs[a]));
  json_object_set_new(e, "rule", json_string("dns_inconsistent"));
  json_object_set_new(e, "answers", mine);
  json_object_set_new(e, "others_answers", px__sorted(&theirs, NULL, PX__SHOWN_MAX));
  json_object_set_new(e, "others_groups", px__sorted(&x->answering, m->group, SIZE_MAX));
  json_object_set_new(e, "verified_answers", json_array());
  px_strmap_free(&theirs);
  return e;
}

/* Rule 4: every handshake this vantage tried for the domain failed in a
 * way a middlebox causes, at an address where a quorum of other groups
 * completed a verified handshake. */
static json_t *px__blocked(px__index_t *x, const px__m_t *m, unsigned quorum) {
  if (m->nflows == 0)
    return NULL;
  for (size_t i = 0; i < m->nflows; i++)
    if (m->flows[i].completed)
      return NULL;
  for (size_t i = 0; i < m->nflows; i++) {
    const px__flow_t *f = &m->flows[i];
    const char *why = f->failure != NULL ? f->failure : f->connect_failure;
    px_strmap_t *by_group = px_strmap_get(&x->verified_at, f->key);
    if (!px__blocking_failure(why) || by_group == NULL ||
        px__count_except(by_group, m->group) < quorum)
      continue;
    char address[PX_ADDRSTRLEN + 8];
    px__address_text(f, address, sizeof(address));
    json_t *e = json_object();
    json_object_set_new(e, "rule", json_string("tls_blocked"));
    json_object_set_new(e, "address", json_string(address));
    json_object_set_new(e, "failure", json_string(why));
    json_object_set_new(e, "others_groups", px__sorted(by_group, m->group, SIZE_MAX));
    return e;
  }
  return NULL;
}

/* The verdict of one measurement, with the evidence (NULL for consistent
 * and insufficient_data). */
static const char *px__judge(px__index_t *x, const px__m_t *m, unsigned quorum, json_t **evidence) {
  *evidence = NULL;
  if (!m->evidence || px__count_except(&x->with_evidence, m->group) < quorum)
    return "insufficient_data";
  if ((*evidence = px__interception(x, m, quorum)) != NULL)
    return "tls_interception";
  if ((*evidence = px__dns_inconsistent(x, m, quorum)) != NULL)
    return "dns_inconsistent";
  if ((*evidence = px__blocked(x, m, quorum)) != NULL)
    return "tls_blocked";
  return "consistent";
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
      px__address_text(f, address, sizeof(address));
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

/* One group's entry: its verdict is the most severe of its vantages';
 * confidence is the share of its vantages that earn it. */
static json_t *px__group_doc(px__index_t *x, const px__m_t *const *members, size_t nm,
                             const char *const *verdicts, json_t *const *evidence) {
  const char *worst = "insufficient_data";
  for (size_t i = 0; i < nm; i++)
    if (px_verdict_rank(verdicts[i]) > px_verdict_rank(worst))
      worst = verdicts[i];
  size_t agree = 0, left_out = 0;
  json_t *ev = json_array(), *uids = json_array();
  for (size_t i = 0; i < nm; i++) {
    const px_vantage_t *v = members[i]->v;
    json_array_append_new(uids, px_json_string_or_null(v->uid));
    if (strcmp(verdicts[i], worst) != 0)
      continue;
    agree++;
    if (evidence[i] != NULL) {
      json_t *e = json_copy(evidence[i]);
      json_object_set_new(e, "key_id", px_json_string_or_null(v->key_id));
      json_object_set_new(e, "measurement_uid", px_json_string_or_null(v->uid));
      json_array_append_new(ev, e);
    }
  }
  const px_vantage_t *first = members[0]->v;
  json_t *g = json_object();
  json_object_set_new(g, "probe_cc", json_string(first->probe_cc ? first->probe_cc : "ZZ"));
  json_object_set_new(g, "probe_asn", json_string(first->probe_asn ? first->probe_asn : "AS0"));
  json_object_set_new(g, "verdict", json_string(worst));
  json_object_set_new(g, "confidence", json_real((double)agree / (double)nm));
  json_object_set_new(g, "vantage_count", json_integer((json_int_t)nm));
  json_object_set_new(g, "addresses", px__addresses(x, members, nm, &left_out));
  if (left_out > 0)
    json_object_set_new(g, "addresses_left_out", json_integer((json_int_t)left_out));
  json_object_set_new(g, "evidence", ev);
  json_object_set_new(g, "measurements", uids);
  return g;
}

json_t *px_compare(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum) {
  json_t *doc = json_object(), *groups = json_array();
  px__index_t x;
  const char **verdicts = calloc(n ? n : 1, sizeof(char *));
  json_t **evidence = calloc(n ? n : 1, sizeof(json_t *));
  const px__m_t **members = calloc(n ? n : 1, sizeof(px__m_t *));
  const char **mverdicts = calloc(n ? n : 1, sizeof(char *));
  json_t **mevidence = calloc(n ? n : 1, sizeof(json_t *));
  px_strmap_t by_group;
  px_strmap_init(&by_group);
  bool ok = px__index(&x, v, n) == 0 && verdicts && evidence && members && mverdicts && mevidence;

  for (size_t i = 0; ok && i < n; i++)
    verdicts[i] = px__judge(&x, &x.m[i], quorum, &evidence[i]);
  /* Members of each group, in input order: the group's first member
   * heads a chain of indexes. */
  size_t *next = ok ? calloc(n ? n : 1, sizeof(size_t)) : NULL;
  size_t *last = ok ? calloc(n ? n : 1, sizeof(size_t)) : NULL;
  for (size_t i = 0; next != NULL && last != NULL && i < n; i++) {
    bool added;
    void **slot = px_strmap_slot(&by_group, x.m[i].group, &added);
    if (slot == NULL)
      break;
    next[i] = SIZE_MAX;
    if (added) {
      *slot = &x.m[i]; /* the group's first member */
      last[i] = i;
    } else {
      size_t head = (size_t)((px__m_t *)*slot - x.m);
      next[last[head]] = i;
      last[head] = i;
    }
  }
  for (size_t i = 0; next != NULL && last != NULL && i < n; i++) {
    if (px_strmap_get(&by_group, x.m[i].group) != &x.m[i])
      continue; /* not the group's first member */
    size_t nm = 0;
    for (size_t k = i; k != SIZE_MAX; k = next[k]) {
      members[nm] = &x.m[k];
      mverdicts[nm] = verdicts[k];
      mevidence[nm] = evidence[k];
      nm++;
    }
    json_array_append_new(groups, px__group_doc(&x, members, nm, mverdicts, mevidence));
  }
  free(next);
  free(last);

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
  free(sorted);
  free(evidence);
  free(verdicts);
  free(members);
  free(mverdicts);
  free(mevidence);
  px_strmap_free(&by_group);
  px__index_free(&x);
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
  if (px__index(&x, v, n) != 0) {
    px__index_free(&x);
    return ips;
  }
  /* ip -> groups that completed a verified handshake there (any port). */
  px_strmap_t by_ip;
  px_strmap_init(&by_ip);
  for (size_t i = 0; i < x.n; i++) {
    for (size_t k = 0; k < x.m[i].nflows; k++) {
      const px__flow_t *f = &x.m[i].flows[k];
      struct sockaddr_storage ss;
      if (!f->verified || px_addr_parse_ip(f->ip, &ss) != 0 ||
          (!allow_nonpublic && !px_addr_is_public((struct sockaddr *)&ss, NULL)))
        continue;
      px__add(&x, px__subset(&x, &by_ip, f->ip), x.m[i].group);
    }
  }
  px__control_t *c = calloc(by_ip.n + 1, sizeof(*c));
  size_t nc = 0, it = 0;
  const char *ip;
  void *val;
  while (c != NULL && px_strmap_next(&by_ip, &it, &ip, &val))
    if (((px_strmap_t *)val)->n >= min_groups)
      c[nc++] = (px__control_t){ip, ((px_strmap_t *)val)->n};
  if (c != NULL)
    qsort(c, nc, sizeof(*c), px__control_cmp);
  for (size_t i = 0; i < nc && i < PX_CONTROL_ADDRESSES_MAX; i++)
    json_array_append_new(ips, json_string(c[i].ip));
  free(c);
  px_strmap_free(&by_ip);
  px__index_free(&x);
  return ips;
}
