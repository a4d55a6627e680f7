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

int px_held_add(const char *dir, const char *content, size_t n, const char *reason);
/* How many are kept. */
size_t px_held_count(const char *dir);

/* Releases the measurements held for PX_HELD_UNKNOWN_PUBLIC: scrubbed
 * with s, then signed and spooled; one that turns out to be about us is
 * re-held with that reason. *released counts the spooled ones. Returns 0
 * or the first error (what was released stays released). */
int px_held_release(const char *dir, const struct px_scrub *s, struct px_signer *signer,
                    struct px_spool *spool, size_t *released, char *err, size_t errlen);

#endif
