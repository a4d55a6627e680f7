#ifndef PX_ENVELOPE_H
#define PX_ENVELOPE_H

#include <stddef.h>

/* The submit request {"format": "json", "content": "…", "signature": "…"}
 * read with the collector's own tokenizer (collector/ingest/jsontok.h) instead of
 * a JSON tree: the content string (several KB of escaped JSON) is
 * unescaped once, straight into its own buffer. Jansson spent as long on
 * this envelope as on the measurement itself. */
typedef struct px_envelope {
  char *content;   /* unescaped, NUL-terminated; content_len excludes NUL */
  size_t content_len;
  char *signature;
  size_t signature_len;
} px_envelope_t;

/* Strict JSON (RFC 8259): one object, exactly these three keys once each,
 * string values, valid UTF-8, no NUL in strings, only whitespace after.
 * Returns 0 or -EINVAL with a reason in why. */
int px_envelope_parse(const char *body, size_t n, px_envelope_t *out, char *why,
                      size_t whylen);
void px_envelope_free(px_envelope_t *e);

#endif
