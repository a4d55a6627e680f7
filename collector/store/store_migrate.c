/* The dispatchers of store_migrate.h. */
#include "collector/store/store_migrate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int px_store_open_source(const char *url, px_store_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (strncmp(url, "sqlite:", 7) != 0 || url[7] == '\0') {
    char shown[512];
    px_store_url_redact(url, shown, sizeof(shown));
    snprintf(err, errlen, "unsupported source '%s' (expected sqlite:PATH)", shown);
    return -EPROTONOSUPPORT;
  }
  return px_store_sqlite_open_readonly(url + 7, out, err, errlen);
}

int px_store_count(px_store_t *s, int64_t *measurements, int64_t *keys) {
  return s->ops->migrate->count(s, measurements, keys);
}

int px_store_import_key(px_store_t *s, const char *key_id, const char *pubkey,
                        time_t first_seen, time_t last_seen, time_t valid_before) {
  return s->ops->migrate->import_key(s, key_id, pubkey, first_seen, last_seen, valid_before);
}

int px_store_migration_get(px_store_t *s, const char *source, px_migration_t *m) {
  return s->ops->migrate->migration_get ? s->ops->migrate->migration_get(s, source, m) : -EOPNOTSUPP;
}

int px_store_import_batch(px_store_t *s, const char *source, int64_t from_id, int64_t to_id,
                          const px_submission_t *rows, size_t n, const px_refusal_t *refused,
                          size_t nrefused, size_t *copied) {
  if (s->ops->migrate->import_batch == NULL)
    return -EOPNOTSUPP;
  return s->ops->migrate->import_batch(s, source, from_id, to_id, rows, n, refused, nrefused, copied);
}

int px_store_count_uids(px_store_t *s, const char *const *uids, size_t n, size_t *present) {
  return s->ops->migrate->count_uids ? s->ops->migrate->count_uids(s, uids, n, present) : -EOPNOTSUPP;
}

int px_store_migration_refused(px_store_t *s, const char *source,
                               int (*cb)(void *data, const char *uid, const char *reason),
                               void *data) {
  if (s->ops->migrate->migration_refused == NULL)
    return -EOPNOTSUPP;
  return s->ops->migrate->migration_refused(s, source, cb, data);
}

