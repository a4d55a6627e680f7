#ifndef PX_JSONTOK_H
#define PX_JSONTOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A strict JSON (RFC 8259) tokenizer for the collector's hot path: one
 * allocation for the whole document instead of one per value, which is
 * where Jansson spent a third of the collector's time per submission.
 * Tokens are laid out in document order; every token knows where its
 * subtree ends, so skipping a value is O(1). Strings are checked (escapes,
 * UTF-8, no NUL) but not copied. */

enum {
  PX_JT_OBJECT = 1,
  PX_JT_ARRAY,
  PX_JT_STRING,
  PX_JT_NUMBER,
  PX_JT_TRUE,
  PX_JT_FALSE,
  PX_JT_NULL
};

typedef struct px_jtok {
  uint8_t type;
  bool escaped;   /* a string with backslash escapes */
  uint32_t start; /* strings: first byte after the quote */
  uint32_t len;   /* strings: bytes between the quotes; numbers: text */
  uint32_t size;  /* objects: members; arrays: elements */
  uint32_t next;  /* the token after this one's subtree */
} px_jtok_t;

typedef struct px_jdoc {
  const char *text;
  px_jtok_t *tok;
  uint32_t n;
} px_jdoc_t;

#define PX_JSON_MAX_DEPTH 64

/* Flags: refuse any whitespace between tokens (the signed form of a
 * measurement is compact JSON). */
#define PX_JSON_COMPACT 1u

/* Tokenizes one JSON value filling the whole text (whitespace around it
 * allowed unless PX_JSON_COMPACT), rejecting duplicate keys in any object.
 * Returns 0 or -EINVAL with a reason (and byte offset) in why. */
int px_json_tokenize(const char *text, size_t n, px_jdoc_t *doc, unsigned flags, char *why,
                     size_t whylen);
void px_jdoc_free(px_jdoc_t *doc);

/* Index of the value of key in the object at obj, or -1. */
int px_jobj_get(const px_jdoc_t *d, uint32_t obj, const char *key);
/* Calls cb(key token, value token) for each member; stops on non-zero. */
int px_jobj_each(const px_jdoc_t *d, uint32_t obj,
                 int (*cb)(const px_jdoc_t *d, uint32_t key, uint32_t value, void *data),
                 void *data);
/* Index of element i of the array at arr, or -1. */
int px_jarr_get(const px_jdoc_t *d, uint32_t arr, uint32_t i);

/* The string at idx unescaped into out (NUL-terminated). Returns its
 * length, or -1 if idx is not a string or it does not fit. */
int px_jstr(const px_jdoc_t *d, int idx, char *out, size_t cap);
/* The string at idx equals s (after unescaping). */
bool px_jstr_eq(const px_jdoc_t *d, int idx, const char *s);
bool px_jnum(const px_jdoc_t *d, int idx, double *out);
/* An integral number (no fraction, no exponent) that fits int64. */
bool px_jint(const px_jdoc_t *d, int idx, int64_t *out);

static inline int px_jtype(const px_jdoc_t *d, int idx) {
  return idx < 0 ? 0 : d->tok[idx].type;
}

#endif
