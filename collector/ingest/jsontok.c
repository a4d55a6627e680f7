#include "collector/ingest/jsontok.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const unsigned char *s;
  size_t n, i;
  px_jdoc_t *d;
  uint32_t cap;
  char *why;
  size_t whylen;
  bool saw_space; /* whitespace between tokens */
} px__tz_t;

static int px__fail(px__tz_t *z, const char *what) {
  snprintf(z->why, z->whylen, "content is not JSON: %s at byte %zu", what, z->i);
  return -EINVAL;
}

static void px__ws(px__tz_t *z) {
  while (z->i < z->n) {
    unsigned char c = z->s[z->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      break;
    z->i++;
    z->saw_space = true;
  }
}

static int px__push(px__tz_t *z, uint8_t type, uint32_t *idx) {
  if (z->d->n == z->cap) {
    uint32_t cap = z->cap ? z->cap * 2 : 256;
    px_jtok_t *t = realloc(z->d->tok, cap * sizeof(*t));
    if (t == NULL)
      return -ENOMEM;
    z->d->tok = t;
    z->cap = cap;
  }
  *idx = z->d->n++;
  memset(&z->d->tok[*idx], 0, sizeof(px_jtok_t));
  z->d->tok[*idx].type = type;
  return 0;
}

static int px__hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int px__hex4(const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    int h = px__hex(p[k]);
    if (h < 0)
      return -1;
    v = (v << 4) | (unsigned)h;
  }
  *out = v;
  return 0;
}

static int px__string(px__tz_t *z, uint32_t *idx) {
  int rc = px__push(z, PX_JT_STRING, idx);
  if (rc != 0)
    return rc;
  size_t start = ++z->i; /* past the opening quote */
  bool escaped = false;
  while (z->i < z->n) {
    unsigned char c = z->s[z->i];
    if (c == '"')
      break;
    if (c < 0x20)
      return px__fail(z, "control character in a string");
    if (c == '\\') {
      escaped = true;
      if (z->i + 1 >= z->n)
        return px__fail(z, "unfinished escape");
      unsigned char e = z->s[z->i + 1];
      if (e == 'u') {
        unsigned cp, lo;
        if (z->i + 6 > z->n || px__hex4(z->s + z->i + 2, &cp) != 0)
          return px__fail(z, "bad \\u escape");
        z->i += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (z->i + 6 > z->n || z->s[z->i] != '\\' || z->s[z->i + 1] != 'u' ||
              px__hex4(z->s + z->i + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
            return px__fail(z, "unpaired surrogate");
          z->i += 6;
        } else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
          return px__fail(z, "unpaired surrogate or NUL");
        }
        continue;
      }
      if (strchr("\"\\/bfnrt", e) == NULL || e == '\0')
        return px__fail(z, "bad escape");
      z->i += 2;
      continue;
    }
    if (c >= 0x80) {
      size_t len;
      unsigned cp;
      if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
      else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
      else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
      else return px__fail(z, "invalid UTF-8");
      if (z->i + len > z->n)
        return px__fail(z, "invalid UTF-8");
      for (size_t k = 1; k < len; k++) {
        if ((z->s[z->i + k] & 0xc0) != 0x80)
          return px__fail(z, "invalid UTF-8");
        cp = (cp << 6) | (z->s[z->i + k] & 0x3f);
      }
      if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
          (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return px__fail(z, "invalid UTF-8");
      z->i += len;
      continue;
    }
    z->i++;
  }
  if (z->i >= z->n)
    return px__fail(z, "unterminated string");
  px_jtok_t *t = &z->d->tok[*idx];
  t->start = (uint32_t)start;
  t->len = (uint32_t)(z->i - start);
  t->escaped = escaped;
  t->next = *idx + 1;
  z->i++; /* the closing quote */
  return 0;
}

static int px__number(px__tz_t *z, uint32_t *idx) {
  size_t start = z->i;
  const unsigned char *s = z->s;
  if (z->i < z->n && s[z->i] == '-')
    z->i++;
  if (z->i >= z->n)
    return px__fail(z, "bad number");
  if (s[z->i] == '0') {
    z->i++;
  } else if (s[z->i] >= '1' && s[z->i] <= '9') {
    while (z->i < z->n && s[z->i] >= '0' && s[z->i] <= '9')
      z->i++;
  } else {
    return px__fail(z, "bad number");
  }
  if (z->i < z->n && s[z->i] == '.') {
    z->i++;
    size_t digits = z->i;
    while (z->i < z->n && s[z->i] >= '0' && s[z->i] <= '9')
      z->i++;
    if (z->i == digits)
      return px__fail(z, "bad fraction");
  }
  if (z->i < z->n && (s[z->i] == 'e' || s[z->i] == 'E')) {
    z->i++;
    if (z->i < z->n && (s[z->i] == '+' || s[z->i] == '-'))
      z->i++;
    size_t digits = z->i;
    while (z->i < z->n && s[z->i] >= '0' && s[z->i] <= '9')
      z->i++;
    if (z->i == digits)
      return px__fail(z, "bad exponent");
  }
  if (z->i - start > 64)
    return px__fail(z, "number too long");
  /* Only numbers a JSON reader can hold (RFC 7493 I-JSON, 2.2): an integer
   * within int64, anything else a finite double. Jansson, which reads the
   * stored measurements for the analysis, refuses the rest; a document
   * accepted here and refused there would be stored but never compared
   * (found by tests/fuzz/fuzz_jsontok). */
  char buf[72];
  memcpy(buf, s + start, z->i - start);
  buf[z->i - start] = '\0';
  errno = 0;
  if (strpbrk(buf, ".eE") == NULL) {
    (void)strtoll(buf, NULL, 10);
    if (errno == ERANGE)
      return px__fail(z, "integer out of range");
  } else if (isinf(strtod(buf, NULL)) && errno == ERANGE) {
    return px__fail(z, "number out of range");
  }
  int rc = px__push(z, PX_JT_NUMBER, idx);
  if (rc != 0)
    return rc;
  z->d->tok[*idx].start = (uint32_t)start;
  z->d->tok[*idx].len = (uint32_t)(z->i - start);
  z->d->tok[*idx].next = *idx + 1;
  return 0;
}

static bool px__keys_equal(const px_jdoc_t *d, uint32_t a, uint32_t b) {
  const px_jtok_t *x = &d->tok[a], *y = &d->tok[b];
  if (!x->escaped && !y->escaped)
    return x->len == y->len && memcmp(d->text + x->start, d->text + y->start, x->len) == 0;
  char bx[1024], by[1024];
  int lx = px_jstr(d, (int)a, bx, sizeof(bx)), ly = px_jstr(d, (int)b, by, sizeof(by));
  /* Keys too long to compare are refused rather than let through. */
  if (lx < 0 || ly < 0)
    return true;
  return lx == ly && memcmp(bx, by, (size_t)lx) == 0;
}

typedef struct {
  const char *p;
  size_t n;
} px__key_t;

static int px__key_cmp(const void *a, const void *b) {
  const px__key_t *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->p, y->p, n);
  return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

/* Duplicate keys would let two readers see two documents. Small objects
 * are compared pairwise; large ones sorted, so a hostile object with tens
 * of thousands of keys costs n log n, not n squared. */
static bool px__has_duplicate_key(const px_jdoc_t *d, uint32_t obj) {
  uint32_t size = d->tok[obj].size;
  if (size < 2)
    return false;
  if (size <= 16) {
    uint32_t k1 = obj + 1;
    for (uint32_t a = 0; a < size; a++) {
      uint32_t k2 = d->tok[k1 + 1].next;
      for (uint32_t b = a + 1; b < size; b++) {
        if (px__keys_equal(d, k1, k2))
          return true;
        k2 = d->tok[k2 + 1].next;
      }
      k1 = d->tok[k1 + 1].next;
    }
    return false;
  }
  px__key_t *keys = calloc(size, sizeof(*keys));
  char **copies = calloc(size, sizeof(*copies));
  bool dup = keys == NULL || copies == NULL; /* out of memory: refuse */
  uint32_t k = obj + 1;
  for (uint32_t i = 0; !dup && i < size; i++, k = d->tok[k + 1].next) {
    const px_jtok_t *t = &d->tok[k];
    if (!t->escaped) {
      keys[i].p = d->text + t->start;
      keys[i].n = t->len;
      continue;
    }
    /* Unescaped is never longer; px_jstr wants a little slack. */
    copies[i] = malloc((size_t)t->len + 8);
    int len = copies[i] ? px_jstr(d, (int)k, copies[i], (size_t)t->len + 8) : -1;
    if (len < 0) {
      dup = true;
      break;
    }
    keys[i].p = copies[i];
    keys[i].n = (size_t)len;
  }
  if (!dup) {
    qsort(keys, size, sizeof(*keys), px__key_cmp);
    for (uint32_t i = 1; i < size && !dup; i++)
      dup = px__key_cmp(&keys[i - 1], &keys[i]) == 0;
  }
  for (uint32_t i = 0; copies != NULL && i < size; i++)
    free(copies[i]);
  free(copies);
  free(keys);
  return dup;
}

/* Iterative, with an explicit stack of open containers. */
int px_json_tokenize(const char *text, size_t n, px_jdoc_t *doc, unsigned flags, char *why,
                     size_t whylen) {
  px__tz_t z = {(const unsigned char *)text, n, 0, doc, 0, why, whylen, false};
  uint32_t stack[PX_JSON_MAX_DEPTH];
  int depth = 0;
  int rc = 0;

  memset(doc, 0, sizeof(*doc));
  doc->text = text;
  if (n > UINT32_MAX / 2)
    return px__fail(&z, "document too large");
  px__ws(&z);
  for (;;) {
    /* Expect a value. */
    if (z.i >= n) {
      rc = px__fail(&z, "unexpected end");
      goto out;
    }
    unsigned char c = z.s[z.i];
    uint32_t idx;
    if (c == '{' || c == '[') {
      if (depth == PX_JSON_MAX_DEPTH) {
        rc = px__fail(&z, "nested too deeply");
        goto out;
      }
      if ((rc = px__push(&z, c == '{' ? PX_JT_OBJECT : PX_JT_ARRAY, &idx)) != 0)
        goto out;
      stack[depth++] = idx;
      z.i++;
      px__ws(&z);
      if (z.i < n && z.s[z.i] == (c == '{' ? '}' : ']')) {
        z.i++;
        depth--;
        doc->tok[idx].next = doc->n;
        goto after_value;
      }
      if (c == '{')
        goto expect_key;
      continue;
    } else if (c == '"') {
      if ((rc = px__string(&z, &idx)) != 0)
        goto out;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      if ((rc = px__number(&z, &idx)) != 0)
        goto out;
    } else if (n - z.i >= 4 && memcmp(z.s + z.i, "true", 4) == 0) {
      if ((rc = px__push(&z, PX_JT_TRUE, &idx)) != 0)
        goto out;
      doc->tok[idx].next = idx + 1;
      z.i += 4;
    } else if (n - z.i >= 5 && memcmp(z.s + z.i, "false", 5) == 0) {
      if ((rc = px__push(&z, PX_JT_FALSE, &idx)) != 0)
        goto out;
      doc->tok[idx].next = idx + 1;
      z.i += 5;
    } else if (n - z.i >= 4 && memcmp(z.s + z.i, "null", 4) == 0) {
      if ((rc = px__push(&z, PX_JT_NULL, &idx)) != 0)
        goto out;
      doc->tok[idx].next = idx + 1;
      z.i += 4;
    } else {
      rc = px__fail(&z, "unexpected character");
      goto out;
    }
  after_value:
    /* A value is complete: close containers or move to the next member. */
    for (;;) {
      if (depth == 0) {
        px__ws(&z);
        if (z.i != n)
          rc = px__fail(&z, "trailing data");
        goto out;
      }
      uint32_t top = stack[depth - 1];
      doc->tok[top].size++;
      px__ws(&z);
      if (z.i >= n) {
        rc = px__fail(&z, "unexpected end");
        goto out;
      }
      unsigned char close = doc->tok[top].type == PX_JT_OBJECT ? '}' : ']';
      if (z.s[z.i] == ',') {
        z.i++;
        px__ws(&z);
        if (doc->tok[top].type == PX_JT_OBJECT)
          goto expect_key;
        break; /* next array element */
      }
      if (z.s[z.i] != close) {
        rc = px__fail(&z, "expected ',' or a closing bracket");
        goto out;
      }
      z.i++;
      depth--;
      doc->tok[top].next = doc->n;
      if (doc->tok[top].type == PX_JT_OBJECT && px__has_duplicate_key(doc, top)) {
        snprintf(why, whylen, "content is not JSON: duplicate key");
        rc = -EINVAL;
        goto out;
      }
    }
    continue;
  expect_key:
    if (z.i >= n || z.s[z.i] != '"') {
      rc = px__fail(&z, "expected a key");
      goto out;
    }
    if ((rc = px__string(&z, &idx)) != 0)
      goto out;
    px__ws(&z);
    if (z.i >= n || z.s[z.i] != ':') {
      rc = px__fail(&z, "expected ':'");
      goto out;
    }
    z.i++;
    px__ws(&z);
  }
out:
  if (rc == 0 && (flags & PX_JSON_COMPACT) && z.saw_space) {
    snprintf(why, whylen, "content is not compact JSON: whitespace between tokens");
    rc = -EINVAL;
  }
  if (rc != 0)
    px_jdoc_free(doc);
  return rc;
}

void px_jdoc_free(px_jdoc_t *doc) {
  free(doc->tok);
  doc->tok = NULL;
  doc->n = 0;
}

int px_jobj_get(const px_jdoc_t *d, uint32_t obj, const char *key) {
  if (d->tok[obj].type != PX_JT_OBJECT)
    return -1;
  uint32_t k = obj + 1;
  size_t klen = strlen(key);
  for (uint32_t m = 0; m < d->tok[obj].size; m++) {
    const px_jtok_t *t = &d->tok[k];
    if (t->escaped ? px_jstr_eq(d, (int)k, key)
                   : (t->len == klen && memcmp(d->text + t->start, key, klen) == 0))
      return (int)(k + 1);
    k = d->tok[k + 1].next;
  }
  return -1;
}

int px_jobj_each(const px_jdoc_t *d, uint32_t obj,
                 int (*cb)(const px_jdoc_t *d, uint32_t key, uint32_t value, void *data),
                 void *data) {
  uint32_t k = obj + 1;
  for (uint32_t m = 0; m < d->tok[obj].size; m++) {
    int rc = cb(d, k, k + 1, data);
    if (rc != 0)
      return rc;
    k = d->tok[k + 1].next;
  }
  return 0;
}

int px_jarr_get(const px_jdoc_t *d, uint32_t arr, uint32_t i) {
  if (d->tok[arr].type != PX_JT_ARRAY || i >= d->tok[arr].size)
    return -1;
  uint32_t e = arr + 1;
  for (uint32_t k = 0; k < i; k++)
    e = d->tok[e].next;
  return (int)e;
}

int px_jstr(const px_jdoc_t *d, int idx, char *out, size_t cap) {
  if (px_jtype(d, idx) != PX_JT_STRING)
    return -1;
  const px_jtok_t *t = &d->tok[idx];
  const unsigned char *p = (const unsigned char *)d->text + t->start, *end = p + t->len;
  size_t o = 0;
  if (!t->escaped) {
    if (t->len + 1 > cap)
      return -1;
    memcpy(out, p, t->len);
    out[t->len] = '\0';
    return (int)t->len;
  }
  while (p < end) {
    if (o + 5 > cap)
      return -1;
    if (*p != '\\') {
      out[o++] = (char)*p++;
      continue;
    }
    unsigned char e = p[1];
    p += 2;
    switch (e) {
    case 'b': out[o++] = '\b'; break;
    case 'f': out[o++] = '\f'; break;
    case 'n': out[o++] = '\n'; break;
    case 'r': out[o++] = '\r'; break;
    case 't': out[o++] = '\t'; break;
    case 'u': {
      unsigned cp, lo;
      /* The tokenizer validated the escape; checking again costs nothing
       * and keeps a token from another text from reading garbage. */
      if (px__hex4(p, &cp) != 0)
        return -1;
      p += 4;
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (px__hex4(p + 2, &lo) != 0)
          return -1;
        p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      if (cp < 0x80) {
        out[o++] = (char)cp;
      } else if (cp < 0x800) {
        out[o++] = (char)(0xc0 | (cp >> 6));
        out[o++] = (char)(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        out[o++] = (char)(0xe0 | (cp >> 12));
        out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[o++] = (char)(0x80 | (cp & 0x3f));
      } else {
        out[o++] = (char)(0xf0 | (cp >> 18));
        out[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[o++] = (char)(0x80 | (cp & 0x3f));
      }
      break;
    }
    default: out[o++] = (char)e; break; /* " \ / */
    }
  }
  out[o] = '\0';
  return (int)o;
}

bool px_jstr_eq(const px_jdoc_t *d, int idx, const char *s) {
  if (px_jtype(d, idx) != PX_JT_STRING)
    return false;
  const px_jtok_t *t = &d->tok[idx];
  size_t n = strlen(s);
  if (!t->escaped)
    return t->len == n && memcmp(d->text + t->start, s, n) == 0;
  char buf[1024];
  int len = px_jstr(d, idx, buf, sizeof(buf));
  return len >= 0 && (size_t)len == n && memcmp(buf, s, n) == 0;
}

bool px_jnum(const px_jdoc_t *d, int idx, double *out) {
  if (px_jtype(d, idx) != PX_JT_NUMBER)
    return false;
  char buf[72];
  memcpy(buf, d->text + d->tok[idx].start, d->tok[idx].len);
  buf[d->tok[idx].len] = '\0';
  *out = strtod(buf, NULL);
  return true;
}

bool px_jint(const px_jdoc_t *d, int idx, int64_t *out) {
  if (px_jtype(d, idx) != PX_JT_NUMBER)
    return false;
  const px_jtok_t *t = &d->tok[idx];
  char buf[72];
  memcpy(buf, d->text + t->start, t->len);
  buf[t->len] = '\0';
  if (strpbrk(buf, ".eE") != NULL)
    return false;
  char *end;
  errno = 0;
  long long v = strtoll(buf, &end, 10);
  if (errno != 0 || *end != '\0')
    return false;
  *out = v;
  return true;
}
