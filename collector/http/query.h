#ifndef PX_QUERY_H
#define PX_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/encoding.h" /* px_percent_encode */

/* A query string split into decoded name/value pairs. Decoding is %XX
 * only: '+' stays '+' (key ids contain it), unlike form encoding. */
typedef struct px_query {
  size_t n;
  struct {
    char *name;
    char *value;
  } *v;
} px_query_t;

/* Parses the part after '?' (s may be NULL or empty). Malformed escapes
 * (%G1, a lone %, an encoded NUL) are refused with -EINVAL; a name given
 * twice is refused too, so a filter cannot be silently overridden. */
int px_query_parse(const char *s, px_query_t *out);
void px_query_free(px_query_t *q);
/* The value of name, or NULL. */
const char *px_query_get(const px_query_t *q, const char *name);

/* Percent-decodes in place; returns 0 or -EINVAL. */
int px_percent_decode(char *s);


/* A domain parameter (domain=, a check-in target) as the store keys it:
 * a host name (an optional :port dropped), lower case, into out (at
 * least PX_HOSTNAME_MAX + 1 bytes). False if it is not one. */
bool px_query_domain(const char *in, char *out);

#endif
