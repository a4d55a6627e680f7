#include "collector/ingest/envelope.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/ingest/jsontok.h"

/* The string value at idx unescaped into a buffer of its own: the
 * unescaped form is never longer than the escaped one (px_jstr wants a
 * few bytes to spare for the widest UTF-8 sequence). */
static int px__take(const px_jdoc_t *d, int idx, char **out, size_t *len) {
  if (px_jtype(d, idx) != PX_JT_STRING)
    return -EINVAL;
  size_t cap = (size_t)d->tok[idx].len + 5;
  char *buf = malloc(cap);
  if (buf == NULL)
    return -ENOMEM;
  int n = px_jstr(d, idx, buf, cap);
  if (n < 0) {
    free(buf);
    return -EINVAL;
  }
  *out = buf;
  *len = (size_t)n;
  return 0;
}

typedef struct {
  int format, content, signature; /* value tokens, -1 until seen */
  bool unknown;
} px__members_t;

static int px__member(const px_jdoc_t *d, uint32_t key, uint32_t value, void *data) {
  px__members_t *m = data;
  if (px_jstr_eq(d, (int)key, "format"))
    m->format = (int)value;
  else if (px_jstr_eq(d, (int)key, "content"))
    m->content = (int)value;
  else if (px_jstr_eq(d, (int)key, "signature"))
    m->signature = (int)value;
  else
    m->unknown = true;
  return 0;
}

#define PX__FAIL(text)                 \
  do {                                 \
    snprintf(why, whylen, "%s", text); \
    px_envelope_free(out);             \
    px_jdoc_free(&d);                  \
    return -EINVAL;                    \
  } while (0)

/* The collector's one JSON reader (collector/ingest/jsontok.c) does the grammar,
 * the escapes, UTF-8 and duplicate members; this only checks the shape. */
int px_envelope_parse(const char *body, size_t n, px_envelope_t *out, char *why,
                      size_t whylen) {
  px_jdoc_t d = {0};
  char reason[160];
  memset(out, 0, sizeof(*out));
  if (px_json_tokenize(body, n, &d, 0, reason, sizeof(reason)) != 0) {
    snprintf(why, whylen, "not strict JSON: %s", reason);
    return -EINVAL;
  }
  if (px_jtype(&d, 0) != PX_JT_OBJECT)
    PX__FAIL("the body must be a JSON object");
  px__members_t m = {-1, -1, -1, false};
  px_jobj_each(&d, 0, px__member, &m);
  if (m.unknown)
    PX__FAIL("unknown member (expected format, content, signature)");
  if (px_jtype(&d, m.format) != PX_JT_STRING || px_jtype(&d, m.content) != PX_JT_STRING ||
      px_jtype(&d, m.signature) != PX_JT_STRING)
    PX__FAIL("expected \"format\": \"json\", a \"content\" string and a \"signature\" string");
  if (!px_jstr_eq(&d, m.format, "json"))
    PX__FAIL("\"format\" must be \"json\"");
  int rc = px__take(&d, m.content, &out->content, &out->content_len);
  if (rc == 0)
    rc = px__take(&d, m.signature, &out->signature, &out->signature_len);
  if (rc == -ENOMEM) {
    px_envelope_free(out);
    px_jdoc_free(&d);
    return -ENOMEM;
  }
  if (rc != 0)
    PX__FAIL("every member's value must be a valid JSON string");
  px_jdoc_free(&d);
  return 0;
}

void px_envelope_free(px_envelope_t *e) {
  free(e->content);
  free(e->signature);
  e->content = e->signature = NULL;
  e->content_len = e->signature_len = 0;
}
