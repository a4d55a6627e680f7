#include "collector/http/query.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/target.h"

static int px__hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int px_percent_decode(char *s) {
  char *o = s;
  for (char *p = s; *p != '\0'; p++) {
    if (*p != '%') {
      *o++ = *p;
      continue;
    }
    int hi = px__hex(p[1]), lo = hi < 0 ? -1 : px__hex(p[2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
      return -EINVAL;
    *o++ = (char)(hi * 16 + lo);
    p += 2;
  }
  *o = '\0';
  return 0;
}

void px_query_free(px_query_t *q) {
  for (size_t i = 0; i < q->n; i++) {
    free(q->v[i].name);
    free(q->v[i].value);
  }
  free(q->v);
  q->v = NULL;
  q->n = 0;
}

int px_query_parse(const char *s, px_query_t *out) {
  memset(out, 0, sizeof(*out));
  if (s == NULL)
    return 0;
  while (*s != '\0') {
    size_t len = strcspn(s, "&");
    if (len > 0) {
      const char *eq = memchr(s, '=', len);
      size_t nlen = eq ? (size_t)(eq - s) : len;
      char *name = strndup(s, nlen);
      char *value = eq ? strndup(eq + 1, len - nlen - 1) : strdup("");
      void *grown = realloc(out->v, (out->n + 1) * sizeof(out->v[0]));
      if (name == NULL || value == NULL || grown == NULL) {
        free(name);
        free(value);
        if (grown != NULL)
          out->v = grown;
        px_query_free(out);
        return -ENOMEM;
      }
      out->v = grown;
      out->v[out->n].name = name;
      out->v[out->n].value = value;
      out->n++;
      if (px_percent_decode(name) != 0 || px_percent_decode(value) != 0 || name[0] == '\0') {
        px_query_free(out);
        return -EINVAL;
      }
      for (size_t i = 0; i + 1 < out->n; i++)
        if (strcmp(out->v[i].name, name) == 0) {
          px_query_free(out);
          return -EINVAL;
        }
    }
    s += len;
    if (*s == '&')
      s++;
  }
  return 0;
}

const char *px_query_get(const px_query_t *q, const char *name) {
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->v[i].name, name) == 0)
      return q->v[i].value;
  return NULL;
}

bool px_query_domain(const char *in, char *out) {
  px_target_t t;
  const char *reason;
  if (in == NULL || px_target_parse(in, 443, &t, &reason) != 0)
    return false;
  size_t i = 0;
  for (; t.hostname[i] != '\0'; i++)
    out[i] = (char)tolower((unsigned char)t.hostname[i]);
  out[i] = '\0';
  return true;
}
