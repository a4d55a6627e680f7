#include "common/json_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when invalid. Rejects
 * overlong forms, surrogates and code points past U+10FFFF, as RFC 3629. */
static size_t px__utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  uint32_t cp;

  if (c < 0x80)
    return c == 0 ? 0 : 1; /* NUL would truncate C strings downstream */
  if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return len;
}

json_t *px_json_string_lossy(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, bad = 0;

  if (s == NULL)
    return json_string("");
  while (i < n) {
    size_t k = px__utf8_seq(u + i, n - i);
    if (k == 0) { bad++; k = 1; }
    i += k;
  }
  if (bad == 0)
    return json_stringn(s, n);

  /* U+FFFD is three bytes in UTF-8. */
  char *buf = malloc(n + bad * 2 + 1);
  if (buf == NULL)
    return NULL;
  size_t o = 0;
  for (i = 0; i < n;) {
    size_t k = px__utf8_seq(u + i, n - i);
    if (k == 0) {
      static const unsigned char replacement[] = {0xef, 0xbf, 0xbd};
      memcpy(buf + o, replacement, sizeof(replacement));
      o += sizeof(replacement);
      i += 1;
    } else {
      memcpy(buf + o, s + i, k);
      o += k;
      i += k;
    }
  }
  json_t *v = json_stringn(buf, o);
  free(buf);
  return v;
}

json_t *px_json_string_or_null(const char *s) {
  return s != NULL ? json_string(s) : json_null();
}

json_t *px_json_copy_or_null(const json_t *v) {
  return v != NULL ? json_deep_copy(v) : json_null();
}

char *px_json_dump(const json_t *v) {
  return json_dumps(v, PX_JSON_DUMP_FLAGS);
}
