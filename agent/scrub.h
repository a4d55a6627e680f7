#ifndef PX_SCRUB_H
#define PX_SCRUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The volunteer's own addresses never leave the machine. As OONI does, an
 * address of ours found in free text (a certificate name, an error
 * detail) becomes "[scrubbed]". Found where text cannot be rewritten
 * without lying (a DNS answer, the address a flow went to, inside a raw
 * DNS packet or a certificate), the measurement is about us and is kept
 * local instead. Loopback addresses identify nobody and are ignored. */
#define PX_SCRUB_MAX 64
#define PX_SCRUBBED "[scrubbed]"

typedef struct px_scrub {
  struct sockaddr_storage addrs[PX_SCRUB_MAX];
  size_t n;
} px_scrub_t;

/* Adds every address of the machine's interfaces (getifaddrs). 0 or a
 * negative errno. */
int px_scrub_add_local(px_scrub_t *s);
/* Adds one address (text); loopback and unspecified ones are ignored.
 * 0, or -EINVAL when ip is not an address. */
int px_scrub_add(px_scrub_t *s, const char *ip);

/* Scrubs m in place. Returns 0 when m may be published (*nscrubbed says
 * how many strings changed), 1 when it must stay local (why names the
 * field), or a negative errno. */
int px_scrub_measurement(const px_scrub_t *s, json_t *m, size_t *nscrubbed, char *why,
                         size_t whylen);

#endif
