/* collector/ingest/jsontok.c, the hand-written strict JSON tokenizer the
 * collector runs on every uploaded measurement before anything else.
 * Besides not crashing: every accessor is exercised on every token, and
 * what it accepts Jansson (the analysis' reader) must read too, with the
 * same strings, or a measurement could be stored that the comparison then
 * silently ignores. Any such document also goes through the analysis
 * (px_summarize): it reads whatever the database holds, including rows
 * stored under older, looser validation, and must never crash on one.
 * The same bytes, as a stored row, go through format=ooni's splice too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/analysis/analysis.h"
#include "collector/http/ooni.h"
#include "collector/ingest/jsontok.h"
#include "tests/fuzz/fuzz_common.h"

/* Walks the tree below idx in document order, checking each accessor
 * against Jansson's value v. Recursion is bounded by the tokenizer's
 * PX_JSON_MAX_DEPTH. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void px__walk(const px_jdoc_t *d, uint32_t idx, json_t *v) {
  const px_jtok_t *t = &d->tok[idx];
  switch (t->type) {
  case PX_JT_OBJECT: {
    if (!json_is_object(v) || json_object_size(v) != t->size)
      px_fuzz_fail("object of %u members differs from Jansson's", t->size);
    uint32_t k = idx + 1;
    for (uint32_t m = 0; m < t->size; m++) {
      size_t cap = (size_t)d->tok[k].len + 8;
      char *key = malloc(cap);
      int n = px_jstr(d, (int)k, key, cap);
      if (n < 0)
        px_fuzz_fail("px_jstr failed on a key with room to spare");
      json_t *member = json_object_getn(v, key, (size_t)n);
      if (member == NULL)
        px_fuzz_fail("key \"%s\" unknown to Jansson", key);
      if (memchr(key, '\0', (size_t)n) == NULL && n < 1000 &&
          px_jobj_get(d, idx, key) != (int)(k + 1))
        px_fuzz_fail("px_jobj_get does not find key \"%s\"", key);
      free(key);
      px__walk(d, k + 1, member);
      k = d->tok[k + 1].next;
    }
    if (k != t->next)
      px_fuzz_fail("object's next is %u, its members end at %u", t->next, k);
    break;
  }
  case PX_JT_ARRAY: {
    if (!json_is_array(v) || json_array_size(v) != t->size)
      px_fuzz_fail("array of %u elements differs from Jansson's", t->size);
    uint32_t e = idx + 1;
    for (uint32_t i = 0; i < t->size; i++) {
      if (i < 4 && px_jarr_get(d, idx, i) != (int)e)
        px_fuzz_fail("px_jarr_get(%u) is wrong", i);
      px__walk(d, e, json_array_get(v, i));
      e = d->tok[e].next;
    }
    if (e != t->next)
      px_fuzz_fail("array's next is %u, its elements end at %u", t->next, e);
    break;
  }
  case PX_JT_STRING: {
    size_t cap = (size_t)t->len + 8;
    char *s = malloc(cap);
    int n = px_jstr(d, (int)idx, s, cap);
    if (n < 0 || !json_is_string(v) || (size_t)n != json_string_length(v) ||
        memcmp(s, json_string_value(v), (size_t)n) != 0)
      px_fuzz_fail("a string reads differently from Jansson's");
    if (n < 1000 && !px_jstr_eq(d, (int)idx, s))
      px_fuzz_fail("px_jstr_eq disagrees with px_jstr");
    /* Too small a buffer is refused, never overrun. */
    char small[4];
    px_jstr(d, (int)idx, small, sizeof(small));
    free(s);
    break;
  }
  case PX_JT_NUMBER: {
    double x;
    int64_t i;
    if (!json_is_number(v) || !px_jnum(d, (int)idx, &x))
      px_fuzz_fail("a number Jansson does not read as one");
    if (px_jint(d, (int)idx, &i) && json_is_integer(v) && json_integer_value(v) != i)
      px_fuzz_fail("an integer reads differently from Jansson's");
    break;
  }
  case PX_JT_TRUE:
    if (!json_is_true(v))
      px_fuzz_fail("true is not true");
    break;
  case PX_JT_FALSE:
    if (!json_is_false(v))
      px_fuzz_fail("false is not false");
    break;
  case PX_JT_NULL:
    if (!json_is_null(v))
      px_fuzz_fail("null is not null");
    break;
  default:
    px_fuzz_fail("token of unknown type %u", t->type);
  }
}

/* format=ooni (collector/http/ooni.c) on whatever a row holds: a line it
 * makes is one compact JSON object without a newline, the uid its first
 * member and the rest the row's bytes, which Jansson reads as the row's
 * members plus the uid. */
static void px__ooni(const char *text, size_t size) {
  static const char uid[] = "20141020120000_CN_tlscertconsistency_0123456789abcdef";
  char *line, prefix[128], why[256];
  size_t n;
  if (px_ooni_line(uid, text, size, &line, &n) != 0)
    return;
  int p = snprintf(prefix, sizeof(prefix), PX_OONI_PREFIX_FMT, uid);
  if (p <= 1 || n < (size_t)p || memcmp(line, prefix, (size_t)p - 1) != 0 ||
      memchr(line, '\n', n) != NULL || memchr(line, '\r', n) != NULL)
    px_fuzz_fail("an OONI line does not start with its uid, or holds a newline");
  if (n > (size_t)p && (n != (size_t)p + size - 1 || memcmp(line + p, text + 1, size - 1) != 0))
    px_fuzz_fail("an OONI line's rest is not the stored bytes");
  px_jdoc_t doc;
  if (px_json_tokenize(line, n, &doc, PX_JSON_COMPACT, why, sizeof(why)) != 0)
    px_fuzz_fail("an OONI line is not compact JSON: %s", why);
  if (doc.tok[0].type != PX_JT_OBJECT || !px_jstr_eq(&doc, 1, "measurement_uid") ||
      !px_jstr_eq(&doc, 2, uid))
    px_fuzz_fail("an OONI line's first member is not its uid");
  px_jdoc_free(&doc);
  json_t *in = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
  json_t *out = json_loadb(line, n, JSON_REJECT_DUPLICATES, NULL);
  if (in == NULL || out == NULL || json_object_del(out, "measurement_uid") != 0 ||
      !json_equal(in, out))
    px_fuzz_fail("an OONI line reads as other values than the stored bytes");
  json_decref(in);
  json_decref(out);
  free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  for (unsigned flags = 0; flags <= PX_JSON_COMPACT; flags += PX_JSON_COMPACT) {
    px_jdoc_t doc;
    char why[256];
    if (px_json_tokenize(text, size, &doc, flags, why, sizeof(why)) != 0) {
      if (doc.tok != NULL || doc.n != 0)
        px_fuzz_fail("a refused document kept its tokens");
      continue;
    }
    json_error_t jerr;
    json_t *v = json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL)
      px_fuzz_fail("tokenizer accepts what Jansson refuses: %s (line %d col %d)", jerr.text,
                   jerr.line, jerr.column);
    px__walk(&doc, 0, v);
    if (flags == 0)
      json_decref(px_summarize(text, size, PX_FUZZ_NOW, px_fuzz_trust(), NULL));
    if (doc.tok[0].next != doc.n)
      px_fuzz_fail("the root's subtree is not the whole document");
    json_decref(v);
    px_jdoc_free(&doc);
  }
  px__ooni(text, size);
  return 0;
}
