#include "common/termsafe.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length (2-4) of the well-formed UTF-8 sequence at s, its code point in
 * *cp; 0 when s[0] starts none (RFC 3629: no overlong forms, surrogates
 * or code points past U+10FFFF). s[0] >= 0x80. */
static size_t px__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    v = c & 0x1fu;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    v = c & 0x0fu;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    v = c & 0x07u;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = (v << 6) | (s[i] & 0x3fu);
  }
  if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || (v >= 0xd800 && v <= 0xdfff) ||
      v > 0x10ffff)
    return 0;
  *cp = v;
  return len;
}

/* Code points that are well-formed but steer the terminal or the reading
 * order instead of showing a glyph. */
static bool px__unprintable(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
         cp == 0x2029;
}

int px_term_escape(const char *s, size_t n, char *out, size_t outlen) {
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0;
  if (outlen == 0)
    return -ENOBUFS;
  for (size_t i = 0; i < n;) {
    char piece[8];
    const char *src = piece;
    size_t len, used = 1;
    uint32_t cp;
    unsigned char c = u[i];
    if (c == '\\') {
      src = "\\\\";
      len = 2;
    } else if (c < 0x20 || c == 0x7f) {
      len = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", c);
    } else if (c < 0x80) {
      src = s + i;
      len = 1;
    } else if ((used = px__utf8_decode(u + i, n - i, &cp)) == 0) {
      used = 1; /* only this byte: what follows may still be well-formed */
      len = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", c);
    } else if (px__unprintable(cp)) {
      len = (size_t)snprintf(piece, sizeof(piece), "\\u%04x", (unsigned)cp);
    } else {
      src = s + i;
      len = used;
    }
    if (len >= outlen - o) {
      out[o] = '\0';
      return -ENOBUFS;
    }
    memcpy(out + o, src, len);
    o += len;
    i += used;
  }
  out[o] = '\0';
  return 0;
}

const char *px_term_str(const char *s, char *out, size_t outlen) {
  if (outlen == 0)
    return "";
  (void)px_term_escape(s != NULL ? s : "", s != NULL ? strlen(s) : 0, out, outlen);
  return out;
}
