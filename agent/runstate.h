#ifndef PX_RUNSTATE_H
#define PX_RUNSTATE_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

/* What `parallax run` keeps in its state directory besides the key and
 * the spool:
 *   run.lock     flock(2)ed by the run in progress (its pid inside)
 *   consent      written by `parallax setup`; no run measures without it
 *   runs.jsonl   one line per finished run, the newest PX_RUNS_KEPT
 *   cursor       where the next run continues when --max-targets cuts
 *                the list short
 *   public-addresses  what check-ins saw us as (local only: for scrubbing)
 *   held/        measurements kept local (agent/held.h) */
#define PX_CONSENT_FILE "consent"
#define PX_RUNS_KEPT 100

/* Takes the run lock. 0 with *fd holding it (released by px_run_unlock or
 * by exit), -EWOULDBLOCK when another run holds it (*holder its pid, or
 * 0 if unknown), another negative errno with a reason in err. */
int px_run_lock(const char *state_dir, int *fd, pid_t *holder, char *err, size_t errlen);
void px_run_unlock(int fd);
/* The pid of the run holding the lock now, 0 when none does (or the
 * kernel does not say). Read from /proc/locks, never by taking the lock:
 * a reader (status) holding it even briefly would make a round that
 * starts then exit as if another were running. */
pid_t px_run_holder(const char *state_dir);

/* 0 when consent was given; -ENOENT when not. *doc (may be NULL) receives
 * the marker's contents (caller decrefs). */
int px_consent_load(const char *state_dir, json_t **doc);
/* Records consent (doc: when, which text, which licence) durably. */
int px_consent_save(const char *state_dir, const json_t *doc);
/* Withdraws it; 0 also when there was none. */
int px_consent_withdraw(const char *state_dir);

/* Appends one run record, keeping the newest PX_RUNS_KEPT. */
int px_runs_append(const char *state_dir, const json_t *record);
/* The kept records, oldest first (an empty array when none). A damaged
 * line is skipped, not fatal: status must work on a disk that filled up. */
json_t *px_runs_load(const char *state_dir);

/* The public addresses check-ins reported, newest last, at most
 * PX_PUBLIC_KEPT: a volunteer's address changes, and a measurement from
 * before a change is scrubbed of the old one too. */
#define PX_PUBLIC_KEPT 16
json_t *px_public_addresses_load(const char *state_dir);
int px_public_address_remember(const char *state_dir, const char *ip);

/* Index of the first target of the next run (0 when none is saved). */
size_t px_cursor_load(const char *state_dir);
int px_cursor_save(const char *state_dir, size_t next);

#endif
