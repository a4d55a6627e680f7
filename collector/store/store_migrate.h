#ifndef PX_STORE_MIGRATE_H
#define PX_STORE_MIGRATE_H

/* What `parallax-collector migrate` (collector/tools/migrate.c) needs of a
 * store and nothing else does: counting, opening a store as a read-only
 * source, and copying batches into a destination with its progress. Kept
 * apart from store.h so the server's stages never see it. */

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "collector/store/store.h"

/* How many measurements and keys are stored (exact: a migration checks
 * its copy with it). */
int px_store_count(px_store_t *s, int64_t *measurements, int64_t *keys);

/* Adds a key as another store knew it (a migration), or merges it into
 * the stored one: the earlier first_seen, the later last_seen, the
 * earlier valid_before (0: none). The caller vouches that key_id is
 * pubkey's fingerprint. */
int px_store_import_key(px_store_t *s, const char *key_id, const char *pubkey,
                        time_t first_seen, time_t last_seen, time_t valid_before);

/* ---- migration --------------------------------------------------------------
 * Copying another store into this one (PostgreSQL only: the others answer
 * -EOPNOTSUPP). The destination keeps each source's progress, keyed by a
 * text naming the source, so an interrupted migration resumes where its
 * last committed batch ended. */

/* Opens an existing SQLite store ("sqlite:PATH") read-only, as a
 * migration's source: nothing is created, migrated or written (writes
 * answer -EROFS). -ENOENT (the file is missing) and -EPROTONOSUPPORT (not
 * a sqlite: URL) are the caller's mistakes; -EINVAL when the file is not a
 * collector database of this version's schema. */
int px_store_open_source(const char *url, px_store_t **out, char *err, size_t errlen);

typedef struct px_migration {
  int64_t last_id;  /* the source's row id up to which everything is settled */
  int64_t copied;   /* rows stored by this source's batches */
  int64_t present;  /* rows that were there already (same content) */
  int64_t refused;  /* rows recorded as refused */
} px_migration_t;

/* A source row that is not copied, and why. */
typedef struct px_refusal {
  const char *uid, *reason;
} px_refusal_t;

/* The progress of source (all zero when it never ran; the record is made
 * then). */
int px_store_migration_get(px_store_t *s, const char *source, px_migration_t *m);
/* One batch in one transaction: rows stored (content already there is
 * skipped; no key-rotation check: the source accepted them; each new one
 * queued for the analysis), refusals recorded, and source's last_id moved
 * from from_id to to_id. -ESTALE (nothing written) when last_id is not
 * from_id any more: another run of the same migration moved it. *copied
 * is how many rows were new. Every row's key must be stored already
 * (px_store_import_key). */
int px_store_import_batch(px_store_t *s, const char *source, int64_t from_id, int64_t to_id,
                          const px_submission_t *rows, size_t n, const px_refusal_t *refused,
                          size_t nrefused, size_t *copied);
/* How many of the n uids are stored. */
int px_store_count_uids(px_store_t *s, const char *const *uids, size_t n, size_t *present);
/* Calls cb for each refusal recorded for source, in uid order. */
int px_store_migration_refused(px_store_t *s, const char *source,
                               int (*cb)(void *data, const char *uid, const char *reason),
                               void *data);

/* ---- the implementations' side ------------------------------------------------
 * Each function above dispatches through s->ops->migrate (store_migrate.c);
 * NULL members answer -EOPNOTSUPP. */
struct px_store_migrate_ops {
  int (*count)(px_store_t *s, int64_t *measurements, int64_t *keys);
  int (*import_key)(px_store_t *s, const char *key_id, const char *pubkey, time_t first_seen,
                    time_t last_seen, time_t valid_before);
  /* Migration destinations only. */
  int (*migration_get)(px_store_t *s, const char *source, px_migration_t *m);
  int (*import_batch)(px_store_t *s, const char *source, int64_t from_id, int64_t to_id,
                      const px_submission_t *rows, size_t n, const px_refusal_t *refused,
                      size_t nrefused, size_t *copied);
  int (*count_uids)(px_store_t *s, const char *const *uids, size_t n, size_t *present);
  int (*migration_refused)(px_store_t *s, const char *source,
                           int (*cb)(void *data, const char *uid, const char *reason),
                           void *data);
};

int px_store_sqlite_open_readonly(const char *path, px_store_t **out, char *err, size_t errlen);

#endif
