#ifndef PX_VANTAGES_H
#define PX_VANTAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "collector/store/store.h"
#include "collector/analysis/verdict.h"

/* A window's summaries of one domain as the comparison takes them
 * (collector/analysis/verdict.h): one px_vantage_t per (key, distinct summary),
 * with every measurement that had it. The summaries' texts are parsed
 * once per distinct one, which is what keeps a day of hourly runs from a
 * thousand vantages within the page's budget. */
typedef struct px_vantages {
  px_vantage_t *v;
  size_t n, cap;
  size_t measurements; /* rows read */
  /* (owned storage behind v) */
  struct px__vstore *store;
} px_vantages_t;

/* latest: each key's newest measurement only. 0 or a negative error (the
 * set is empty then, and must still be freed). */
int px_vantages_load(px_store_t *s, const char *domain, time_t since, time_t until, bool latest,
                     px_vantages_t *out);
void px_vantages_free(px_vantages_t *vs);

#endif
