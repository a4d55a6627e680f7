#include "collector/analysis/vantages.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

/* What each entry owns: its strings, its measurement list, and the
 * entries' map (key "key_id digest"). */
typedef struct {
  char *key_id, *probe_cc, *probe_asn, *name;
  time_t *times;
  char **uids;
  size_t ntimes, cap;
  size_t index; /* in vs->v */
} px__ventry_t;

/* Entries are allocated one by one, so the map's values (the entries)
 * stay put while the arrays grow. */
struct px__vstore {
  px__ventry_t **e;
  size_t n, cap;
  px_strmap_t by_name;
  /* digest (a copy in digests) -> its parsed summary (one reference),
   * shared by every entry with that digest: the comparison only reads. */
  px_strmap_t by_digest;
  char **digests;
  size_t ndigests, digests_cap;
};

static int px__grow(px_vantages_t *vs) {
  struct px__vstore *st = vs->store;
  if (st->n < st->cap)
    return 0;
  size_t cap = st->cap ? st->cap * 2 : 32;
  px__ventry_t **e = realloc(st->e, cap * sizeof(px__ventry_t *));
  if (e == NULL)
    return -ENOMEM;
  st->e = e;
  px_vantage_t *v = realloc(vs->v, cap * sizeof(*v));
  if (v == NULL)
    return -ENOMEM;
  vs->v = v;
  st->cap = vs->cap = cap;
  return 0;
}

static int px__add_time(px__ventry_t *e, time_t t, const char *uid) {
  if (e->ntimes == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 4;
    time_t *times = realloc(e->times, cap * sizeof(*times));
    if (times == NULL)
      return -ENOMEM;
    e->times = times;
    char **uids = realloc(e->uids, cap * sizeof(*uids));
    if (uids == NULL)
      return -ENOMEM;
    e->uids = uids;
    e->cap = cap;
  }
  e->uids[e->ntimes] = strdup(uid);
  if (e->uids[e->ntimes] == NULL)
    return -ENOMEM;
  e->times[e->ntimes++] = t;
  return 0;
}

static int px__row(void *data, const px_summary_row_t *row) {
  px_vantages_t *vs = data;
  struct px__vstore *st = vs->store;
  char name[256], tail[32];
  vs->measurements++;
  /* Rows without a digest (none yet) stand alone. */
  const char *second = row->digest;
  if (second == NULL || second[0] == '\0') {
    snprintf(tail, sizeof(tail), "#%lld", (long long)row->measurement_id);
    second = tail;
  }
  size_t lk = strlen(row->key_id), ls = strlen(second);
  if (lk + ls + 2 > sizeof(name))
    return -EINVAL; /* the schema bounds key ids far below this */
  memcpy(name, row->key_id, lk);
  name[lk] = ' ';
  memcpy(name + lk + 1, second, ls + 1);
  px__ventry_t *e = px_strmap_get(&st->by_name, name);
  if (e == NULL) {
    if (px__grow(vs) != 0)
      return -ENOMEM;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
      return -ENOMEM;
    e->index = st->n;
    e->name = strdup(name);
    e->key_id = strdup(row->key_id);
    e->probe_cc = strdup(row->probe_cc);
    e->probe_asn = strdup(row->probe_asn);
    bool added;
    /* The map keeps e->name: it joins only with every string in place. */
    bool copied = e->name != NULL && e->key_id != NULL && e->probe_cc != NULL && e->probe_asn != NULL;
    void **slot = copied ? px_strmap_slot(&st->by_name, e->name, &added) : NULL;
    if (slot == NULL) {
      free(e->name);
      free(e->key_id);
      free(e->probe_cc);
      free(e->probe_asn);
      free(e);
      return -ENOMEM;
    }
    *slot = e;
    st->e[st->n] = e;
    memset(&vs->v[st->n], 0, sizeof(vs->v[st->n]));
    st->n++;
    vs->n = st->n;
  }
  px_vantage_t *v = &vs->v[e->index];
  if (px__add_time(e, row->measurement_start_time, row->uid) != 0)
    return -ENOMEM;
  if (v->summary != NULL)
    return 0;
  bool digest = row->digest != NULL && row->digest[0] != '\0';
  if (row->summary == NULL) {
    /* Its text came with an earlier row of the same digest. */
    json_t *known = digest ? px_strmap_get(&st->by_digest, row->digest) : NULL;
    v->summary = json_incref(known);
    return 0;
  }
  json_t *parsed = json_loads(row->summary, 0, NULL);
  if (parsed == NULL || !digest) {
    v->summary = parsed;
    return 0;
  }
  v->summary = parsed;
  if (px_strmap_has(&st->by_digest, row->digest))
    return 0; /* the digest's text came twice: this entry keeps its own */
  if (st->ndigests == st->digests_cap) {
    size_t cap = st->digests_cap ? st->digests_cap * 2 : 16;
    char **more = realloc(st->digests, cap * sizeof(*more));
    if (more == NULL)
      return -ENOMEM;
    st->digests = more;
    st->digests_cap = cap;
  }
  char *copy = strdup(row->digest);
  if (copy == NULL)
    return -ENOMEM;
  st->digests[st->ndigests++] = copy;
  bool added;
  void **slot = px_strmap_slot(&st->by_digest, copy, &added);
  if (slot == NULL)
    return -ENOMEM;
  *slot = json_incref(parsed);
  return 0;
}

int px_vantages_load(px_store_t *s, const char *domain, time_t since, time_t until, bool latest,
                     px_vantages_t *out) {
  memset(out, 0, sizeof(*out));
  out->store = calloc(1, sizeof(*out->store));
  if (out->store == NULL)
    return -ENOMEM;
  int rc = px_store_summaries(s, domain, since, until, latest, px__row, out);
  /* Pointers into the entries, now that they no longer move; an entry
   * whose text never came (cannot happen, but) or does not parse is
   * dropped. */
  struct px__vstore *st = out->store;
  size_t kept = 0;
  for (size_t i = 0; i < st->n; i++) {
    px_vantage_t *v = &out->v[i];
    const px__ventry_t *e = st->e[i];
    if (v->summary == NULL || e->ntimes == 0) {
      json_decref(v->summary);
      continue;
    }
    /* Rows come oldest first: an entry's newest is its last. */
    px_vantage_t one = {.key_id = e->key_id, .probe_cc = e->probe_cc, .probe_asn = e->probe_asn,
                        .uid = e->uids[e->ntimes - 1],
                        .measurement_start_time = e->times[e->ntimes - 1],
                        .summary = v->summary, .times = e->times,
                        .uids = (const char *const *)e->uids, .ntimes = e->ntimes};
    out->v[kept++] = one;
  }
  out->n = kept;
  return rc;
}

void px_vantages_free(px_vantages_t *vs) {
  struct px__vstore *st = vs->store;
  for (size_t i = 0; i < vs->n; i++)
    json_decref(vs->v[i].summary);
  for (size_t i = 0; st != NULL && i < st->n; i++) {
    px__ventry_t *e = st->e[i];
    free(e->key_id);
    free(e->probe_cc);
    free(e->probe_asn);
    free(e->name);
    for (size_t k = 0; k < e->ntimes; k++)
      free(e->uids[k]);
    free(e->uids);
    free(e->times);
    free(e);
  }
  if (st != NULL) {
    free(st->e);
    px_strmap_free(&st->by_name);
    const char *digest;
    void *summary;
    for (size_t it = 0; px_strmap_next(&st->by_digest, &it, &digest, &summary);)
      json_decref(summary);
    px_strmap_free(&st->by_digest);
    for (size_t i = 0; i < st->ndigests; i++)
      free(st->digests[i]);
    free(st->digests);
    free(st);
  }
  free(vs->v);
  memset(vs, 0, sizeof(*vs));
}
