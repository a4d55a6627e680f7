#include "common/strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Eight bytes a step, then a full avalanche (the finaliser of MurmurHash3):
 * the maps hash key ids, digests and uids by the ten thousand per request,
 * and a byte-at-a-time hash was a fifth of a window's comparison. */
static size_t px__hash(const char *s) {
  size_t len = strlen(s);
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0xff51afd7ed558ccdull);
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 31;
    s += 8;
    len -= 8;
  }
  uint64_t tail = 0;
  memcpy(&tail, s, len);
  h = (h ^ tail) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return (size_t)h;
}

void px_strmap_init(px_strmap_t *m) {
  memset(m, 0, sizeof(*m));
}

void px_strmap_free(px_strmap_t *m) {
  free(m->keys);
  free(m->values);
  memset(m, 0, sizeof(*m));
}

static size_t px__find(const px_strmap_t *m, const char *key) {
  size_t i = px__hash(key) & (m->cap - 1);
  while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
    i = (i + 1) & (m->cap - 1);
  return i;
}

static int px__grow(px_strmap_t *m) {
  size_t cap = m->cap ? m->cap * 2 : 16;
  px_strmap_t bigger = {calloc(cap, sizeof(char *)), calloc(cap, sizeof(void *)), cap, 0};
  if (bigger.keys == NULL || bigger.values == NULL) {
    px_strmap_free(&bigger);
    return -ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == NULL)
      continue;
    size_t j = px__find(&bigger, m->keys[i]);
    bigger.keys[j] = m->keys[i];
    bigger.values[j] = m->values[i];
    bigger.n++;
  }
  px_strmap_free(m);
  *m = bigger;
  return 0;
}

void **px_strmap_slot(px_strmap_t *m, const char *key, bool *added) {
  /* At most half full: probes stay short. */
  if ((m->n + 1) * 2 > m->cap && px__grow(m) != 0)
    return NULL;
  size_t i = px__find(m, key);
  *added = m->keys[i] == NULL;
  if (*added) {
    m->keys[i] = key;
    m->values[i] = NULL;
    m->n++;
  }
  return &m->values[i];
}

void *px_strmap_get(const px_strmap_t *m, const char *key) {
  if (m->cap == 0)
    return NULL;
  size_t i = px__find(m, key);
  return m->keys[i] != NULL ? m->values[i] : NULL;
}

bool px_strmap_has(const px_strmap_t *m, const char *key) {
  return m->cap != 0 && m->keys[px__find(m, key)] != NULL;
}

int px_strset_add(px_strmap_t *m, const char *key) {
  bool added;
  return px_strmap_slot(m, key, &added) == NULL ? -ENOMEM : added ? 1 : 0;
}

bool px_strmap_next(const px_strmap_t *m, size_t *i, const char **key, void **value) {
  for (; *i < m->cap; (*i)++) {
    if (m->keys[*i] != NULL) {
      *key = m->keys[*i];
      if (value != NULL)
        *value = m->values[*i];
      (*i)++;
      return true;
    }
  }
  return false;
}
