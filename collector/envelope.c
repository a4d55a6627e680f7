#include "collector/envelope.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const unsigned char *p, *end;
} px__scan_t;

static void px__ws(px__scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static int px__hex4(const unsigned char *p, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t px__utf8_put(uint32_t cp, char *o) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Length of a valid UTF-8 sequence starting at p (RFC 3629), 0 if not. */
static size_t px__utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned char c = p[0];
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
  else return 0;
  if ((size_t)(end - p) < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
      cp > 0x10ffff)
    return 0;
  return len;
}

/* Parses a JSON string at s->p (the opening quote) into a new buffer, in
 * one pass: the unescaped form is never longer than what is left of the
 * body, so the buffer is sized from that. */
static int px__string(px__scan_t *s, char **out, size_t *out_len) {
  const unsigned char *p = s->p + 1, *end = s->end;
  char *buf = malloc((size_t)(end - p) + 1), *o = buf;
  if (buf == NULL)
    return -ENOMEM;
  for (;;) {
    /* Plain ASCII runs are the common case: copy them in one go. */
    const unsigned char *q = p;
    while (q < end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\')
      q++;
    memcpy(o, p, (size_t)(q - p));
    o += q - p;
    p = q;
    if (p >= end)
      goto bad;
    unsigned char c = *p;
    if (c == '"')
      break;
    if (c < 0x20)
      goto bad; /* raw control characters are not allowed in JSON strings */
    if (c >= 0x80) {
      size_t k = px__utf8_len(p, end);
      if (k == 0)
        goto bad;
      memcpy(o, p, k);
      o += k;
      p += k;
      continue;
    }
    /* An escape. */
    if (end - p < 2)
      goto bad;
    unsigned char e = p[1];
    p += 2;
    switch (e) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      if (end - p < 4 || px__hex4(p, &cp) != 0)
        goto bad;
      p += 4;
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || px__hex4(p + 2, &lo) != 0 ||
            lo < 0xdc00 || lo > 0xdfff)
          goto bad;
        p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      } else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
        goto bad; /* a lone low surrogate, or NUL, which C strings cannot carry */
      }
      o += px__utf8_put(cp, o);
      break;
    }
    default:
      goto bad;
    }
  }
  *o = '\0';
  *out = buf;
  *out_len = (size_t)(o - buf);
  s->p = p + 1;
  return 0;
bad:
  free(buf);
  return -EINVAL;
}

#define PX__FAIL(text)                  \
  do {                                  \
    snprintf(why, whylen, "%s", text);  \
    px_envelope_free(out);              \
    return -EINVAL;                     \
  } while (0)

int px_envelope_parse(const char *body, size_t n, px_envelope_t *out, char *why,
                      size_t whylen) {
  px__scan_t s = {(const unsigned char *)body, (const unsigned char *)body + n};
  bool have_format = false;
  memset(out, 0, sizeof(*out));

  px__ws(&s);
  if (s.p >= s.end || *s.p != '{')
    PX__FAIL("the body must be a JSON object");
  s.p++;
  for (int member = 0;; member++) {
    px__ws(&s);
    if (member == 0 && s.p < s.end && *s.p == '}')
      PX__FAIL("the object is empty");
    if (s.p >= s.end || *s.p != '"')
      PX__FAIL("expected a member name");
    char *key = NULL, *value = NULL;
    size_t klen, vlen;
    if (px__string(&s, &key, &klen) != 0)
      PX__FAIL("malformed member name");
    px__ws(&s);
    if (s.p >= s.end || *s.p != ':') {
      free(key);
      PX__FAIL("expected ':'");
    }
    s.p++;
    px__ws(&s);
    if (s.p >= s.end || *s.p != '"' || px__string(&s, &value, &vlen) != 0) {
      free(key);
      PX__FAIL("every member's value must be a valid JSON string");
    }
    int dup = 0, unknown = 0;
    if (strcmp(key, "format") == 0 && klen == 6) {
      dup = have_format;
      have_format = true;
      if (!dup && strcmp(value, "json") != 0) {
        free(key);
        free(value);
        PX__FAIL("\"format\" must be \"json\"");
      }
      free(value);
    } else if (strcmp(key, "content") == 0 && klen == 7) {
      dup = out->content != NULL;
      if (!dup) {
        out->content = value;
        out->content_len = vlen;
      } else {
        free(value);
      }
    } else if (strcmp(key, "signature") == 0 && klen == 9) {
      dup = out->signature != NULL;
      if (!dup) {
        out->signature = value;
        out->signature_len = vlen;
      } else {
        free(value);
      }
    } else {
      unknown = 1;
      free(value);
    }
    free(key);
    if (dup)
      PX__FAIL("a member appears twice");
    if (unknown)
      PX__FAIL("unknown member (expected format, content, signature)");
    px__ws(&s);
    if (s.p < s.end && *s.p == ',') {
      s.p++;
      continue;
    }
    if (s.p < s.end && *s.p == '}') {
      s.p++;
      break;
    }
    PX__FAIL("expected ',' or '}'");
  }
  px__ws(&s);
  if (s.p != s.end)
    PX__FAIL("trailing data after the object");
  if (!have_format || out->content == NULL || out->signature == NULL)
    PX__FAIL("expected \"format\": \"json\", a \"content\" string and a \"signature\" string");
  return 0;
}

void px_envelope_free(px_envelope_t *e) {
  free(e->content);
  free(e->signature);
  e->content = e->signature = NULL;
  e->content_len = e->signature_len = 0;
}
