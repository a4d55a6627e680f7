#ifndef PX_TARGET_H
#define PX_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PX_HOSTNAME_MAX 253
#define PX_TARGET_MAX (PX_HOSTNAME_MAX + 1 + 6)

/* One measurement input: a domain, optionally with ":port". */
typedef struct px_target {
  char input[PX_TARGET_MAX + 1];     /* exactly as given (the "input" key) */
  char hostname[PX_HOSTNAME_MAX + 1]; /* for DNS and SNI: no trailing dot */
  uint16_t port;
  /* Addresses the collector vouches for (seen verified by other countries);
   * probed besides this target's own answers. Not owned. */
  const struct sockaddr_storage *controls;
  size_t ncontrols;
} px_target_t;

/* Parses "example.com" or "example.com:8443". Host names are LDH labels
 * (underscores tolerated, as real zones contain them); IP literals are
 * refused because a target is a name: addresses go in --address.
 * On error returns -EINVAL and sets *reason to a static sentence. */
int px_target_parse(const char *s, uint16_t default_port, px_target_t *out,
                    const char **reason);

#endif
