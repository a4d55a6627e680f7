#include "collector/vantages.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/strmap.h"

/* What each entry owns: its strings, its measurement list, and the
 * entries' map (key "key_id digest"). */
typedef struct {
  char *key_id, *probe_cc, *probe_asn, *uid, *name;
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
  char name[256];
  vs->measurements++;
  /* Rows without a digest (none yet) stand alone. */
  if (row->digest != NULL && row->digest[0] != '\0')
    snprintf(name, sizeof(name), "%s %s", row->key_id, row->digest);
  else
    snprintf(name, sizeof(name), "%s #%lld", row->key_id, (long long)row->measurement_id);
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
  if (row->summary != NULL && v->summary == NULL) {
    v->summary = json_loads(row->summary, 0, NULL);
    /* The newest of the entry's measurements carries the text. */
    free(e->uid);
    e->uid = strdup(row->uid);
    v->measurement_start_time = row->measurement_start_time;
  }
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
    if (v->summary == NULL || e->uid == NULL) {
      json_decref(v->summary);
      continue;
    }
    px_vantage_t one = {.key_id = e->key_id, .probe_cc = e->probe_cc, .probe_asn = e->probe_asn,
                        .uid = e->uid, .measurement_start_time = v->measurement_start_time,
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
    free(e->uid);
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
    free(st);
  }
  free(vs->v);
  memset(vs, 0, sizeof(*vs));
}
