#ifndef PX_HELD_H
#define PX_HELD_H

#include <stddef.h>

struct px_scrub;
struct px_signer;
struct px_spool;

/* Measurements that must not leave the machine, kept in STATE_DIR/held as
 * NAME.json (unsigned: nothing about them should be easy to pass on by
 * mistake) with NAME.reason beside it. Two kinds:
 *   - about this machine (its own address is a DNS answer or the address
 *     a flow went to): kept until the volunteer decides; `parallax submit`
 *     uploads one they are happy to publish;
 *   - taken while our public address was unknown (the check-in failed):
 *     released by the next run that learns it, scrubbed then. */
#define PX_HELD_UNKNOWN_PUBLIC "public address unknown"
/* The reason of a round no resolver answered in: about this machine
 * (offline), not about its network; never released by itself. */
#define PX_HELD_OFFLINE "offline: no resolver was reachable during this round"

int px_held_add(const char *dir, const char *content, size_t n, const char *reason);
/* How many are kept. */
size_t px_held_count(const char *dir);

/* Releases the measurements held for PX_HELD_UNKNOWN_PUBLIC: scrubbed
 * with s, then signed and spooled; one that turns out to be about us is
 * re-held with that reason. *released counts the spooled ones. Returns 0
 * or the first error (what was released stays released). */
int px_held_release(const char *dir, const struct px_scrub *s, struct px_signer *signer,
                    struct px_spool *spool, size_t *released, char *err, size_t errlen);

/* What a round is about to add, so px_held_take_round can tell it from
 * what was there before: the names in pending/ and in dir. */
typedef struct px_held_mark {
  char **pending, **held;
  size_t npending, nheld;
} px_held_mark_t;

int px_held_mark(const char *dir, struct px_spool *spool, px_held_mark_t *mark);
void px_held_mark_free(px_held_mark_t *mark);

/* Keeps everything added since mark in dir for reason: entries spooled
 * since (their content, unsigned again: the signature is dropped) and
 * measurements held since for PX_HELD_UNKNOWN_PUBLIC (which would
 * otherwise be released by the next run). The held copy is written
 * before the pending one goes, so a crash leaves a duplicate, never a
 * loss. *moved counts the entries taken from pending/ (the others were
 * held already). Returns 0 or the first error. */
int px_held_take_round(const char *dir, struct px_spool *spool, const px_held_mark_t *mark,
                       const char *reason, size_t *moved);

#endif
