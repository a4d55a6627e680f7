/* Reading a window's summaries and indexing them (collector/analysis/verdict_internal.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/analysis/verdict_internal.h"

/* ---- one summary, read ------------------------------------------------------ */

/* Reads v's summary into m (flows without a usable ip and port skipped). */
static int px__read(const px_vantage_t *v, px__m_t *m) {
  json_t *dns = json_object_get(v->summary, "dns"), *tls = json_object_get(v->summary, "tls");
  json_t *addrs = json_object_get(dns, "addresses");
  m->v = v;
  m->answered = px__b(dns, "answered");
  json_t *late = json_object_get(dns, "late");
  m->addrs = calloc(json_array_size(addrs) + 1, sizeof(char *));
  m->flows = calloc(json_array_size(tls) + 1, sizeof(px__flow_t));
  m->late = calloc(json_array_size(late) + 1, sizeof(json_t *));
  if (m->addrs == NULL || m->flows == NULL || m->late == NULL)
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
    f->issuer_spki = px__s(e, "issuer_spki_sha256");
    f->completed_from_pool = f->verified && px__b(e, "completed_from_pool");
    f->failure = px__s(e, "failure");
    f->connect_failure = px__s(e, "connect_failure");
    f->judged_failure = px__s(e, "judged_failure");
    f->entry = e;
  }
  json_array_foreach(late, i, e)
    if (json_is_object(e) && json_is_array(json_object_get(e, "late")))
      m->late[m->nlate++] = e;
  m->evidence = m->answered || m->nflows > 0;
  return 0;
}

/* ---- the window's index ---------------------------------------------------- */

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

void px__vd_index_free(px__index_t *x) {
  for (size_t i = 0; i < x->n; i++) {
    free(x->m[i].addrs);
    free(x->m[i].flows);
    free(x->m[i].late);
  }
  for (size_t i = 0; i < x->nissuers; i++) {
    px_strmap_free(&x->issuers[i]->groups);
    free(x->issuers[i]);
  }
  free(x->issuers);
  free(x->m);
  for (size_t i = 0; i < x->groups.n && x->group_names != NULL; i++)
    free(x->group_names[i]);
  free(x->group_names);
  for (size_t i = 0; i < x->nown; i++)
    free(x->own_keys[i]);
  free(x->own_keys);
  for (size_t i = 0; i < x->nowned; i++) {
    px_strmap_free(x->owned[i]);
    free(x->owned[i]);
  }
  free(x->owned);
  px_strmap_free(&x->groups);
  px_strmap_free(&x->verified_at);
  px_strmap_free(&x->seen_at);
  px_strmap_free(&x->issuers_at);
  px_strmap_free(&x->leaf_verified);
  px_strmap_free(&x->ip_verified);
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

/* A copy of k kept until the index is freed (keys the index makes). */
static const char *px__own_key(px__index_t *x, const char *k) {
  char **keys = realloc(x->own_keys, (x->nown + 1) * sizeof(char *));
  if (keys == NULL)
    return NULL;
  x->own_keys = keys;
  char *copy = strdup(k);
  if (copy != NULL)
    x->own_keys[x->nown++] = copy;
  return copy;
}

/* The set under a key the index composes, made (and the key kept) on
 * first use. */
static px_strmap_t *px__subset_owned(px__index_t *x, px_strmap_t *map, const char *k) {
  px_strmap_t *set = px_strmap_get(map, k);
  if (set != NULL)
    return set;
  const char *owned = px__own_key(x, k);
  return owned != NULL ? px__subset(x, map, owned) : NULL;
}

/* The issuer record of spki at address key, made on first use. */
static px__issuer_t *px__issuer(px__index_t *x, const char *key, const char *spki) {
  px_strmap_t *at = px__subset(x, &x->issuers_at, key);
  bool added;
  void **slot = at != NULL ? px_strmap_slot(at, spki, &added) : NULL;
  if (slot == NULL)
    return NULL;
  if (*slot == NULL) {
    px__issuer_t **more = realloc(x->issuers, (x->nissuers + 1) * sizeof(px__issuer_t *));
    px__issuer_t *is = more != NULL ? calloc(1, sizeof(*is)) : NULL;
    if (more != NULL)
      x->issuers = more;
    if (is == NULL)
      return NULL;
    is->spki = spki;
    x->issuers[x->nissuers++] = is;
    *slot = is;
  }
  return *slot;
}

int px__vd_index(px__index_t *x, const px_vantage_t *v, size_t n) {
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
        px__add(x, px__subset(x, &x->leaf_verified, f->leaf), m->group);
        px__add(x, px__subset(x, &x->ip_verified, f->ip), m->group);
      }
      if (f->verified && f->issuer_spki != NULL) {
        px__issuer_t *is = px__issuer(x, f->key, f->issuer_spki);
        if (is == NULL) {
          x->oom = true;
          continue;
        }
        px__add(x, &is->groups, m->group);
        time_t t = v[i].measurement_start_time;
        if (is->first == 0 || t < is->first)
          is->first = t;
        if (t > is->last)
          is->last = t;
        if (is->name == NULL)
          is->name = px__s(f->entry, "issuer");
      }
      if (f->leaf != NULL && v[i].key_id != NULL) {
        char sk[PX_ADDRSTRLEN + 8 + 72];
        snprintf(sk, sizeof(sk), "%s %s", f->key, f->leaf);
        px__add(x, px__subset_owned(x, &x->seen_at, sk), v[i].key_id);
      }
    }
  }
  return x->oom ? -1 : 0;
}

bool px__vd_vouched(const px__index_t *x, const char *leaf, const char *group, unsigned quorum) {
  const px_strmap_t *groups = leaf != NULL ? px_strmap_get(&x->leaf_verified, leaf) : NULL;
  return groups != NULL && px__vd_count_except(groups, group) >= quorum;
}

/* Members of set, but not `except`, as a sorted JSON array. */
static int px__str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *px__vd_sorted(const px_strmap_t *set, const char *except, size_t max) {
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

size_t px__vd_count_except(const px_strmap_t *set, const char *except) {
  return set->n - (px_strmap_has(set, except) ? 1 : 0);
}

void px__vd_address_text(const px__flow_t *f, char *out, size_t n) {
  snprintf(out, n, strchr(f->ip, ':') ? "[%s]:%d" : "%s:%d", f->ip, f->port);
}

