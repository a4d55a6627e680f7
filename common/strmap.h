#ifndef PX_STRMAP_H
#define PX_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

/* A hash map from strings to pointers (open addressing, FNV-1a), so that
 * the analysis and the comparison look things up in O(1) however many
 * addresses, leaves or groups an upload or a window holds. Keys are
 * borrowed, not copied: they must outlive the map. */
typedef struct px_strmap {
  const char **keys;
  void **values;
  size_t cap, n;
} px_strmap_t;

void px_strmap_init(px_strmap_t *m);
void px_strmap_free(px_strmap_t *m);

/* The value slot of key, added (with *value NULL) when absent. *added says
 * which. NULL when out of memory. */
void **px_strmap_slot(px_strmap_t *m, const char *key, bool *added);
/* The value of key, or NULL (absent, or stored as NULL: see _has). */
void *px_strmap_get(const px_strmap_t *m, const char *key);
bool px_strmap_has(const px_strmap_t *m, const char *key);

/* As a set: 1 when key was added, 0 when it was there, -ENOMEM. */
int px_strset_add(px_strmap_t *m, const char *key);

/* Iteration: for (size_t i = 0; px_strmap_next(m, &i, &k, &v);) */
bool px_strmap_next(const px_strmap_t *m, size_t *i, const char **key, void **value);

#endif
