#ifndef PX_SPOOL_H
#define PX_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The agent's outbox, under STATE_DIR/spool:
 *   pending/NAME.jsonl                  signed, not yet accepted
 *   sent/NAME.jsonl + NAME.receipt      accepted (bounded retention)
 *   rejected/NAME.jsonl + NAME.reason   refused by the collector (4xx)
 *   orphaned/                           what an interrupted older version
 *                                       left half written (see open)
 * An entry is one file holding one line, {"content": the signed bytes,
 * "signature": the SSHSIG armour}: the shape of a collector export line,
 * so `parallax verify NAME.jsonl` checks it. It is written to a temporary
 * name, fsynced, then renamed: that one rename commits the measurement and
 * its signature together, so a crash or a full disk leaves the whole entry
 * or nothing of it, and moving it to sent/ or rejected/ is one rename too.
 *
 * Spools of earlier versions hold pairs instead, NAME.json (the signed
 * bytes) and NAME.json.sig, committed by two renames. Such pairs are
 * listed, read and uploaded like entries; before one moves, it becomes an
 * entry (written and renamed, then the pair unlinked), so the move itself
 * is atomic. */
typedef struct px_spool {
  char root[4096];
  size_t orphaned; /* half entries px_spool_open moved to orphaned/ */
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

/* Creates the directories and, when this user owns the spool (never as
 * root in the service's directory), recovers what a crash left:
 * temporaries of processes that are gone are removed; of an older
 * version's pairs, a copy an interrupted conversion left beside its entry
 * is removed, a NAME.json whose .sig had already moved to sent/ or
 * rejected/ joins it there (the move was under way), and a lone NAME.json
 * (never signed: the agent cannot sign it now, it never saw it being
 * measured) or a lone NAME.json.sig (its measurement never arrived) goes
 * to orphaned/ with a NAME.reason beside it, counted in sp->orphaned and
 * logged. Recovery never deletes the only copy of anything. */
int px_spool_open(px_spool_t *sp, const char *state_dir, char *err, size_t errlen);

/* For readers (`status`): names the spool of state_dir and neither
 * creates nor recovers anything; counts of a directory not there are 0. */
int px_spool_open_readonly(px_spool_t *sp, const char *state_dir, char *err, size_t errlen);

/* Spools one signed measurement and makes it durable (px_spool_write,
 * then px_spool_sync). name (>= 64 bytes) receives its name, "<UTC
 * time>_<content hash>". The same content spooled twice in one second is
 * one entry; in different seconds it is sent twice and stored once (the
 * collector is idempotent on content). Returns 0 or a negative errno
 * (-ENOSPC on a full disk, -EINVAL for content or a signature that is not
 * UTF-8, -EIO without SHA-256): nothing partial is left behind. */
int px_spool_add(px_spool_t *sp, const char *content, size_t n, const char *signature,
                 char *name, size_t namelen);

/* Group commit: px_spool_write commits one entry (its file fsynced and
 * renamed into pending/, where uploaders see it at once) but does not
 * fsync the directory; px_spool_sync does, once for every entry written
 * since, and only after it returned 0 may those entries count as spooled.
 * When it fails, px_spool_discard each of them (they might not survive a
 * power cut, so they must not be reported as kept). */
int px_spool_write(px_spool_t *sp, const char *content, size_t n, const char *signature,
                   char *name, size_t namelen);
int px_spool_sync(px_spool_t *sp);
void px_spool_discard(px_spool_t *sp, const char *name);

/* Pending names, oldest first. */
int px_spool_pending(px_spool_t *sp, px_spool_list_t *out);
void px_spool_list_free(px_spool_list_t *l);

/* A pending entry (or pair): *content (NUL-terminated, *n bytes) and
 * *signature, both the caller's. -ENOENT when it is gone (moved by a
 * concurrent upload), -EBADMSG when the file is not an entry. */
int px_spool_read(px_spool_t *sp, const char *name, char **content, size_t *n,
                  char **signature);
/* Moves a pending entry, a receipt (uid) or the reason beside it; a crash
 * midway leaves it pending (it will be sent again, and the collector
 * answers a duplicate with the same uid). */
int px_spool_mark_sent(px_spool_t *sp, const char *name, const char *uid);
/* The same, the receipt also keeping the collector's answer: the
 * measurement's leaf in its log (leaf_index >= 0), which `parallax verify
 * --log` later asks the collector to prove. */
int px_spool_mark_sent_logged(px_spool_t *sp, const char *name, const char *uid,
                              long long leaf_index);
int px_spool_mark_rejected(px_spool_t *sp, const char *name, long status,
                           const char *reason);
int px_spool_counts(px_spool_t *sp, size_t *pending, size_t *sent, size_t *rejected);
/* The bytes of the regular files in dir (temporaries, named ".…", not
 * counted); a directory not there holds 0. */
int px_dir_bytes(const char *dir, uint64_t *bytes);
/* What is kept here and not yet at a collector: the bytes of pending/
 * and of held_dir (STATE_DIR/held), which `parallax run` holds against
 * its max_spool. sent/ is not counted: it is pruned by itself. */
int px_spool_unsent_bytes(px_spool_t *sp, const char *held_dir, uint64_t *pending,
                          uint64_t *held);
/* Keeps the newest keep entries of sent/. */
int px_spool_prune_sent(px_spool_t *sp, size_t keep);

int px_spool_state_load(px_spool_t *sp, px_upload_state_t *st);
int px_spool_state_save(px_spool_t *sp, const px_upload_state_t *st);

#ifdef PX_TEST_HOOKS
/* Test builds only: the n-th step of a spool write from now on in this
 * process (creating, writing, syncing and renaming files, unlinking the
 * old pair) raises SIGKILL; 0: never. px_spool_open sets it from
 * PX_TEST_SPOOL_KILL_AT when that is set. */
void px_spool_test_kill_at(unsigned long n);
#endif

#endif
