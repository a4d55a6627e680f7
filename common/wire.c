#include "common/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void px_wbuf_init(px_wbuf_t *b) {
  memset(b, 0, sizeof(*b));
}

void px_wbuf_free(px_wbuf_t *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

void px_wbuf_put(px_wbuf_t *b, const void *data, size_t n) {
  if (b->failed)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (d == NULL) {
      b->failed = true;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  if (n > 0)
    memcpy(b->data + b->len, data, n);
  b->len += n;
}

void px_wbuf_put_u32(px_wbuf_t *b, uint32_t v) {
  uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  px_wbuf_put(b, be, 4);
}

void px_wbuf_put_string(px_wbuf_t *b, const void *data, size_t n) {
  if (n > UINT32_MAX) {
    b->failed = true;
    return;
  }
  px_wbuf_put_u32(b, (uint32_t)n);
  px_wbuf_put(b, data, n);
}

void px_wbuf_put_cstring(px_wbuf_t *b, const char *s) {
  px_wbuf_put_string(b, s, strlen(s));
}

void px_rbuf_init(px_rbuf_t *r, const uint8_t *data, size_t n) {
  r->p = data;
  r->left = n;
}

int px_rbuf_get(px_rbuf_t *r, void *out, size_t n) {
  if (r->left < n)
    return -EBADMSG;
  memcpy(out, r->p, n);
  r->p += n;
  r->left -= n;
  return 0;
}

int px_rbuf_get_u32(px_rbuf_t *r, uint32_t *v) {
  uint8_t be[4];
  if (px_rbuf_get(r, be, 4) != 0)
    return -EBADMSG;
  *v = ((uint32_t)be[0] << 24) | ((uint32_t)be[1] << 16) | ((uint32_t)be[2] << 8) | be[3];
  return 0;
}

int px_rbuf_get_string(px_rbuf_t *r, const uint8_t **data, size_t *n) {
  uint32_t len;
  if (px_rbuf_get_u32(r, &len) != 0 || len > r->left)
    return -EBADMSG;
  *data = r->p;
  *n = len;
  r->p += len;
  r->left -= len;
  return 0;
}

int px_rbuf_expect_cstring(px_rbuf_t *r, const char *s) {
  const uint8_t *d;
  size_t n;
  if (px_rbuf_get_string(r, &d, &n) != 0 || n != strlen(s) || memcmp(d, s, n) != 0)
    return -EBADMSG;
  return 0;
}
