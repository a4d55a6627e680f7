#include "collector/store/summary_rows.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

#define PX__ARENA_CHUNK ((size_t)64 * 1024)

void px_summary_rows_init(px_summary_rows_t *r, bool latest_per_key) {
  memset(r, 0, sizeof(*r));
  r->latest = latest_per_key;
}

void px_summary_rows_free(px_summary_rows_t *r) {
  for (size_t i = 0; i < r->nchunks; i++)
    free(r->chunks[i]);
  free(r->chunks);
  free(r->rows);
  free(r->out);
  free(r->carry);
  memset(r, 0, sizeof(*r));
}

/* A copy of n bytes plus a NUL in the arena; never moves once made. */
static char *px__copy(px_summary_rows_t *r, const char *s, size_t n) {
  if (r->nchunks == 0 || r->chunk_used + n + 1 > r->chunk_cap) {
    size_t cap = n + 1 > PX__ARENA_CHUNK ? n + 1 : PX__ARENA_CHUNK;
    char **chunks = realloc(r->chunks, (r->nchunks + 1) * sizeof(*chunks));
    if (chunks == NULL)
      return NULL;
    r->chunks = chunks;
    if ((r->chunks[r->nchunks] = malloc(cap)) == NULL)
      return NULL;
    r->nchunks++;
    r->chunk_used = 0;
    r->chunk_cap = cap;
  }
  char *out = r->chunks[r->nchunks - 1] + r->chunk_used;
  memcpy(out, s, n);
  out[n] = '\0';
  r->chunk_used += n + 1;
  return out;
}

static const char *px__str(px_summary_rows_t *r, const char *s) {
  return px__copy(r, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int px_summary_rows_add(px_summary_rows_t *r, const px_summary_row_t *row) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 256;
    px_summary_row_t *rows = realloc(r->rows, cap * sizeof(*rows));
    if (rows == NULL)
      return -ENOMEM;
    r->rows = rows;
    r->cap = cap;
  }
  px_summary_row_t c = {
      .measurement_id = row->measurement_id,
      .uid = px__str(r, row->uid),
      .key_id = px__str(r, row->key_id),
      .probe_cc = px__str(r, row->probe_cc),
      .probe_asn = px__str(r, row->probe_asn),
      /* One domain a listing: copied once. */
      .domain = r->n > 0 && strcmp(r->rows[r->n - 1].domain, row->domain ? row->domain : "") == 0
                    ? r->rows[r->n - 1].domain
                    : px__str(r, row->domain),
      .measurement_start_time = row->measurement_start_time,
      .digest = px__str(r, row->digest),
      .summary = NULL,
  };
  if (!c.uid || !c.key_id || !c.probe_cc || !c.probe_asn || !c.domain || !c.digest)
    return -ENOMEM;
  r->rows[r->n++] = c;
  return 0;
}

static int px__by_group(const void *a, const void *b) {
  const px_summary_row_t *x = *(px_summary_row_t *const *)a, *y = *(px_summary_row_t *const *)b;
  int c = strcmp(x->probe_cc, y->probe_cc);
  if (c == 0)
    c = strcmp(x->probe_asn, y->probe_asn);
  return c != 0 ? c : strcmp(x->key_id, y->key_id);
}

/* Rows come oldest first; within one second the store's index may give
 * them in another order, so ties are put in measurement_id order here (an
 * insertion sort: the rows are nearly in order already). */
static bool px__before(const px_summary_row_t *a, const px_summary_row_t *b) {
  return a->measurement_start_time < b->measurement_start_time ||
         (a->measurement_start_time == b->measurement_start_time &&
          a->measurement_id < b->measurement_id);
}

static void px__order(px_summary_rows_t *r) {
  for (size_t i = 1; i < r->n; i++) {
    if (!px__before(&r->rows[i], &r->rows[i - 1]))
      continue;
    px_summary_row_t row = r->rows[i];
    size_t j = i;
    for (; j > 0 && px__before(&row, &r->rows[j - 1]); j--)
      r->rows[j] = r->rows[j - 1];
    r->rows[j] = row;
  }
}

/* Over a window every row goes out; latest_per_key, each key's newest (the
 * last of its rows, once they are in order). Then each digest's text on
 * its first output row; a row without a digest carries its own. */
int px_summary_rows_pick(px_summary_rows_t *r) {
  int rc = 0;
  px__order(r);
  free(r->carry);
  free(r->out);
  r->carry = calloc(r->n ? r->n : 1, sizeof(*r->carry));
  r->out = calloc(r->n ? r->n : 1, sizeof(px_summary_row_t *));
  r->nout = 0;
  if (r->carry == NULL || r->out == NULL)
    return -ENOMEM;
  if (!r->latest) {
    for (size_t i = 0; i < r->n; i++)
      r->out[r->nout++] = &r->rows[i];
  } else {
    px_strmap_t newest; /* key_id (the arena's) -> its newest row */
    px_strmap_init(&newest);
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
      bool added;
      void **slot = px_strmap_slot(&newest, r->rows[i].key_id, &added);
      if (slot == NULL)
        rc = -ENOMEM;
      else
        *slot = &r->rows[i];
    }
    const char *key;
    void *value;
    for (size_t it = 0; rc == 0 && px_strmap_next(&newest, &it, &key, &value);)
      r->out[r->nout++] = value;
    px_strmap_free(&newest);
    if (rc != 0)
      return rc;
    qsort(r->out, r->nout, sizeof(px_summary_row_t *), px__by_group);
  }
  px_strmap_t texts;
  px_strmap_init(&texts);
  for (size_t i = 0; rc == 0 && i < r->nout; i++) {
    size_t at = (size_t)(r->out[i] - r->rows);
    int fresh = r->out[i]->digest[0] == '\0' ? 1 : px_strset_add(&texts, r->out[i]->digest);
    if (fresh < 0)
      rc = fresh;
    else
      r->carry[at] = fresh == 1;
  }
  px_strmap_free(&texts);
  return rc;
}

bool px_summary_rows_next_carrier(const px_summary_rows_t *r, size_t *i, px_summary_row_t **row) {
  for (; *i < r->n; (*i)++)
    if (r->carry[*i]) {
      *row = &r->rows[(*i)++];
      return true;
    }
  return false;
}

int px_summary_rows_set_text(px_summary_rows_t *r, px_summary_row_t *row, const char *text,
                             size_t len) {
  if (text == NULL) {
    row->summary = NULL;
    return 0;
  }
  row->summary = px__copy(r, text, len);
  return row->summary != NULL ? 0 : -ENOMEM;
}

int px_summary_rows_emit(const px_summary_rows_t *r,
                         int (*cb)(void *data, const px_summary_row_t *row), void *data) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < r->nout; i++)
    rc = cb(data, r->out[i]);
  return rc;
}
