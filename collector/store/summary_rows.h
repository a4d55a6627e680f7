#ifndef PX_SUMMARY_ROWS_H
#define PX_SUMMARY_ROWS_H

/* The listing behind px_store_summaries, shared by the stores: they scan
 * the window's rows without their texts (an index holds everything else),
 * this picks which rows must carry a text, the store fetches just those,
 * and the rows go out in the contract's order. Reading every text of a
 * busy window (24 hourly runs a key, most of them the same) and sorting
 * them in SQL costs ten times the comparison itself. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collector/store/store.h"

typedef struct px_summary_rows {
  px_summary_row_t *rows; /* strings in the arena, summary NULL until set */
  size_t n, cap;
  char **chunks; /* the arena */
  size_t nchunks, chunk_used, chunk_cap;
  bool latest;
  /* After pick: the rows to emit (all, or each key's newest), and which
   * rows need a text (by index in rows). */
  px_summary_row_t **out;
  size_t nout;
  bool *carry;
} px_summary_rows_t;

void px_summary_rows_init(px_summary_rows_t *r, bool latest_per_key);
void px_summary_rows_free(px_summary_rows_t *r);

/* Copies row's strings (row->summary is ignored). Rows come oldest first
 * (ties in any order). 0 or -ENOMEM. */
int px_summary_rows_add(px_summary_rows_t *r, const px_summary_row_t *row);

/* Decides the output (store.h, px_store_summaries): over a window every
 * row, latest_per_key each key's newest, by probe_cc, probe_asn, key_id;
 * a digest's text on its first output row only. 0 or -ENOMEM. */
int px_summary_rows_pick(px_summary_rows_t *r);

/* The rows that need a text, for the store to fetch: for (i = 0;
 * px_summary_rows_next_carrier(r, &i, &row);) px_summary_rows_set_text. */
bool px_summary_rows_next_carrier(const px_summary_rows_t *r, size_t *i, px_summary_row_t **row);
/* row->summary = a copy of text (or NULL: the row vanished, a newer
 * analysis dropped it). 0 or -ENOMEM. */
int px_summary_rows_set_text(px_summary_rows_t *r, px_summary_row_t *row, const char *text,
                             size_t len);

/* cb for each output row in order; its first non-zero return stops. */
int px_summary_rows_emit(const px_summary_rows_t *r,
                         int (*cb)(void *data, const px_summary_row_t *row), void *data);

#endif
