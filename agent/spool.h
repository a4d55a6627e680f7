#ifndef PX_SPOOL_H
#define PX_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The agent's outbox, under STATE_DIR/spool:
 *   pending/NAME.json + NAME.json.sig   signed, not yet accepted
 *   sent/NAME.json + .sig + .receipt    accepted (bounded retention)
 *   rejected/NAME.json + .sig + .reason refused by the collector (4xx)
 * NAME.json and NAME.json.sig are exactly the pair `parallax verify` and
 * `ssh-keygen -Y verify` take. Every file is written to a temporary name,
 * fsynced, then renamed, the .sig before the .json, so a crash or a full
 * disk never leaves a half measurement that looks complete. */
typedef struct px_spool {
  char root[4096];
} px_spool_t;

typedef struct px_spool_list {
  char **names;
  size_t n;
} px_spool_list_t;

/* Where the upload side stands; kept in spool/upload-state.json. */
typedef struct px_upload_state {
  unsigned failures;      /* consecutive failed attempts */
  time_t next_attempt;    /* automatic uploads wait until then */
  time_t last_success;
  time_t last_error_at;
  char last_error[512];
} px_upload_state_t;

int px_spool_open(px_spool_t *sp, const char *state_dir, char *err, size_t errlen);

/* Spools one signed measurement. name (>= 64 bytes) receives its name,
 * "<UTC time>_<content hash>". The same content spooled twice is sent
 * twice and stored once (the collector is idempotent on content). Returns
 * 0 or a negative errno (-ENOSPC on a full disk: nothing partial is left
 * behind). */
int px_spool_add(px_spool_t *sp, const char *content, size_t n, const char *signature,
                 char *name, size_t namelen);

/* Pending names, oldest first. */
int px_spool_pending(px_spool_t *sp, px_spool_list_t *out);
void px_spool_list_free(px_spool_list_t *l);

int px_spool_read(px_spool_t *sp, const char *name, char **content, size_t *n,
                  char **signature);
int px_spool_mark_sent(px_spool_t *sp, const char *name, const char *uid);
int px_spool_mark_rejected(px_spool_t *sp, const char *name, long status,
                           const char *reason);
int px_spool_counts(px_spool_t *sp, size_t *pending, size_t *sent, size_t *rejected);
/* Keeps the newest keep entries of sent/. */
int px_spool_prune_sent(px_spool_t *sp, size_t keep);

int px_spool_state_load(px_spool_t *sp, px_upload_state_t *st);
int px_spool_state_save(px_spool_t *sp, const px_upload_state_t *st);

#endif
