#ifndef PX_WIRE_H
#define PX_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SSH wire encoding (RFC 4251 section 5): big-endian uint32 and
 * length-prefixed strings, as PROTOCOL.sshsig uses them. */

typedef struct px_wbuf {
  uint8_t *data;
  size_t len, cap;
  bool failed; /* an allocation failed: every later put is a no-op */
} px_wbuf_t;

void px_wbuf_init(px_wbuf_t *b);
void px_wbuf_free(px_wbuf_t *b);
void px_wbuf_put(px_wbuf_t *b, const void *data, size_t n);
void px_wbuf_put_u32(px_wbuf_t *b, uint32_t v);
void px_wbuf_put_string(px_wbuf_t *b, const void *data, size_t n);
void px_wbuf_put_cstring(px_wbuf_t *b, const char *s);

/* A reader over untrusted bytes: every get checks the remaining length. */
typedef struct px_rbuf {
  const uint8_t *p;
  size_t left;
} px_rbuf_t;

void px_rbuf_init(px_rbuf_t *r, const uint8_t *data, size_t n);
int px_rbuf_get(px_rbuf_t *r, void *out, size_t n);
int px_rbuf_get_u32(px_rbuf_t *r, uint32_t *v);
/* Points *data into the buffer (no copy). Returns 0 or -EBADMSG. */
int px_rbuf_get_string(px_rbuf_t *r, const uint8_t **data, size_t *n);
/* A string that must equal s exactly. */
int px_rbuf_expect_cstring(px_rbuf_t *r, const char *s);

#endif
