#include "collector/ingest/schema.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/ingest/pattern.h"
#include "px_schemas.h" /* generated from schemas/ by CMake */

enum {
  PX__T_NULL = 1,
  PX__T_BOOL = 2,
  PX__T_INT = 4,
  PX__T_NUM = 8,
  PX__T_STR = 16,
  PX__T_ARR = 32,
  PX__T_OBJ = 64
};

enum { PX__FMT_NONE, PX__FMT_IPV4, PX__FMT_IPV6 };

typedef struct px__node px__node_t;

typedef struct {
  char *name;
  px__node_t *node;
} px__prop_t;

typedef struct {
  char *name;
  int prop; /* index into props, or -1 */
} px__req_t;

typedef struct {
  px__node_t **v;
  size_t n;
} px__list_t;

struct px__node {
  bool never;     /* the schema `false` */
  unsigned types; /* 0: any */
  json_t *konst;  /* const */
  json_t *enums;  /* enum */
  px__prop_t *props; /* sorted by name */
  size_t nprops;
  px__req_t *req;
  size_t nreq;
  px__node_t *additional; /* NULL: anything */
  bool no_additional;
  px__node_t *property_names;
  long min_props, max_props, min_items, max_items, min_len, max_len; /* -1: none */
  px__node_t *items;
  px_pattern_t *pattern;
  bool has_pattern;
  char *pattern_src;
  int format;
  bool has_min, has_max;
  double min, max;
  px__list_t any_of, one_of, all_of;
  px__node_t *not_, *if_, *then_, *else_;
  px__node_t *ref;
};

typedef struct {
  char *name;
  px__node_t *node;
} px__def_t;

struct px_schema {
  px__node_t *root;
  px__node_t **all; /* every node, for px_schema_free */
  size_t nall, capall;
  px__def_t *defs;
  size_t ndefs;
};

/* ---- compiling ------------------------------------------------------------ */

typedef struct {
  px_schema_t *s;
  char *err;
  size_t errlen;
} px__cc_t;

__attribute__((format(printf, 2, 3))) static int px__cerr(px__cc_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static px__node_t *px__new_node(px_schema_t *s) {
  if (s->nall == s->capall) {
    size_t cap = s->capall ? s->capall * 2 : 64;
    px__node_t **all = realloc(s->all, cap * sizeof(px__node_t *));
    if (all == NULL)
      return NULL;
    s->all = all;
    s->capall = cap;
  }
  px__node_t *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return NULL;
  n->min_props = n->max_props = n->min_items = n->max_items = n->min_len = n->max_len = -1;
  s->all[s->nall++] = n;
  return n;
}

static int px__compile(px__cc_t *c, json_t *j, px__node_t *n, const char *where);

/* A sub-schema into a fresh node. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__sub(px__cc_t *c, json_t *j, px__node_t **out, const char *where) {
  if (out == NULL)
    return -EINVAL;
  *out = px__new_node(c->s);
  if (*out == NULL)
    return -ENOMEM;
  return px__compile(c, j, *out, where);
}

static int px__type_bits(px__cc_t *c, json_t *t, unsigned *bits, const char *where) {
  if (bits == NULL)
    return -EINVAL;
  static const struct {
    const char *name;
    unsigned bit;
  } names[] = {{"null", PX__T_NULL},   {"boolean", PX__T_BOOL}, {"integer", PX__T_INT},
               {"number", PX__T_NUM},  {"string", PX__T_STR},   {"array", PX__T_ARR},
               {"object", PX__T_OBJ}};
  json_t *one = t;
  size_t i = 0, count = json_is_array(t) ? json_array_size(t) : 1;
  for (; i < count; i++) {
    if (json_is_array(t))
      one = json_array_get(t, i);
    size_t k = 0;
    for (; k < sizeof(names) / sizeof(names[0]); k++)
      if (json_is_string(one) && strcmp(json_string_value(one), names[k].name) == 0)
        break;
    if (k == sizeof(names) / sizeof(names[0]))
      return px__cerr(c, "%s: unknown type", where);
    *bits |= names[k].bit;
  }
  if (*bits & PX__T_NUM)
    *bits |= PX__T_INT; /* every integer is a number */
  return 0;
}

static int px__limit(px__cc_t *c, json_t *v, long *out, const char *where, const char *kw) {
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return px__cerr(c, "%s: %s must be a non-negative integer", where, kw);
  *out = (long)json_integer_value(v);
  return 0;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__list(px__cc_t *c, json_t *v, px__list_t *out, const char *where, const char *kw) {
  if (!json_is_array(v) || json_array_size(v) == 0)
    return px__cerr(c, "%s: %s must be a non-empty array of schemas", where, kw);
  out->n = json_array_size(v);
  out->v = calloc(out->n, sizeof(px__node_t *));
  if (out->v == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < out->n; i++) {
    int rc = px__sub(c, json_array_get(v, i), &out->v[i], where);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int px__prop_cmp(const void *a, const void *b) {
  return strcmp(((const px__prop_t *)a)->name, ((const px__prop_t *)b)->name);
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__properties(px__cc_t *c, json_t *v, px__node_t *n, const char *where) {
  if (!json_is_object(v))
    return px__cerr(c, "%s: properties must be an object", where);
  n->nprops = json_object_size(v);
  n->props = calloc(n->nprops ? n->nprops : 1, sizeof(*n->props));
  if (n->props == NULL)
    return -ENOMEM;
  const char *key;
  json_t *sub;
  size_t i = 0;
  json_object_foreach(v, key, sub) {
    char w[256];
    snprintf(w, sizeof(w), "%s.%s", where, key);
    n->props[i].name = strdup(key);
    if (n->props[i].name == NULL)
      return -ENOMEM;
    int rc = px__sub(c, sub, &n->props[i].node, w);
    i++;
    if (rc != 0)
      return rc;
  }
  qsort(n->props, n->nprops, sizeof(*n->props), px__prop_cmp);
  return 0;
}

static int px__find_prop(const px__node_t *n, const char *name, size_t len) {
  size_t lo = 0, hi = n->nprops;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const char *p = n->props[mid].name;
    int cmp = strncmp(p, name, len);
    if (cmp == 0 && p[len] != '\0')
      cmp = 1;
    if (cmp == 0)
      return (int)mid;
    if (cmp < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static int px__required(px__cc_t *c, json_t *v, px__node_t *n, const char *where) {
  if (!json_is_array(v))
    return px__cerr(c, "%s: required must be an array of names", where);
  n->nreq = json_array_size(v);
  n->req = calloc(n->nreq ? n->nreq : 1, sizeof(*n->req));
  if (n->req == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < n->nreq; i++) {
    const char *name = json_string_value(json_array_get(v, i));
    if (name == NULL)
      return px__cerr(c, "%s: required must be an array of names", where);
    n->req[i].name = strdup(name);
    if (n->req[i].name == NULL)
      return -ENOMEM;
    n->req[i].prop = -1; /* resolved once properties are known */
  }
  return 0;
}

static px__node_t *px__def(px_schema_t *s, const char *name) {
  for (size_t i = 0; i < s->ndefs; i++)
    if (strcmp(s->defs[i].name, name) == 0)
      return s->defs[i].node;
  return NULL;
}

static bool px__annotation(const char *kw) {
  static const char *const ignored[] = {"$schema", "$id", "title", "description", "$comment",
                                        "contentEncoding", "contentMediaType", "examples",
                                        "default", "$defs", NULL};
  for (size_t i = 0; ignored[i] != NULL; i++)
    if (strcmp(kw, ignored[i]) == 0)
      return true;
  return false;
}

/* One keyword of a schema object into n. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__keyword(px__cc_t *c, const char *kw, json_t *v, px__node_t *n, const char *where) {
  if (strcmp(kw, "type") == 0)
    return px__type_bits(c, v, &n->types, where);
  if (strcmp(kw, "const") == 0) {
    n->konst = json_incref(v);
    return 0;
  }
  if (strcmp(kw, "enum") == 0) {
    if (!json_is_array(v))
      return px__cerr(c, "%s: enum must be an array", where);
    n->enums = json_incref(v);
    return 0;
  }
  if (strcmp(kw, "properties") == 0)
    return px__properties(c, v, n, where);
  if (strcmp(kw, "required") == 0)
    return px__required(c, v, n, where);
  if (strcmp(kw, "additionalProperties") == 0) {
    if (json_is_false(v)) {
      n->no_additional = true;
      return 0;
    }
    return px__sub(c, v, &n->additional, where);
  }
  if (strcmp(kw, "propertyNames") == 0)
    return px__sub(c, v, &n->property_names, where);
  if (strcmp(kw, "items") == 0)
    return px__sub(c, v, &n->items, where);
  if (strcmp(kw, "minProperties") == 0)
    return px__limit(c, v, &n->min_props, where, kw);
  if (strcmp(kw, "maxProperties") == 0)
    return px__limit(c, v, &n->max_props, where, kw);
  if (strcmp(kw, "minItems") == 0)
    return px__limit(c, v, &n->min_items, where, kw);
  if (strcmp(kw, "maxItems") == 0)
    return px__limit(c, v, &n->max_items, where, kw);
  if (strcmp(kw, "minLength") == 0)
    return px__limit(c, v, &n->min_len, where, kw);
  if (strcmp(kw, "maxLength") == 0)
    return px__limit(c, v, &n->max_len, where, kw);
  if (strcmp(kw, "minimum") == 0 || strcmp(kw, "maximum") == 0) {
    if (!json_is_number(v))
      return px__cerr(c, "%s: %s must be a number", where, kw);
    bool lo = kw[1] == 'i';
    (lo ? &n->min : &n->max)[0] = json_number_value(v);
    (lo ? &n->has_min : &n->has_max)[0] = true;
    return 0;
  }
  if (strcmp(kw, "pattern") == 0) {
    const char *why = "not a string";
    if (!json_is_string(v) || (n->pattern = px_pattern_compile(json_string_value(v), &why)) == NULL)
      return px__cerr(c, "%s: pattern: %s", where, why);
    n->has_pattern = true;
    n->pattern_src = strdup(json_string_value(v));
    return n->pattern_src != NULL ? 0 : -ENOMEM;
  }
  if (strcmp(kw, "format") == 0) {
    const char *f = json_string_value(v);
    if (f != NULL && strcmp(f, "ipv4") == 0)
      n->format = PX__FMT_IPV4;
    else if (f != NULL && strcmp(f, "ipv6") == 0)
      n->format = PX__FMT_IPV6;
    else
      return px__cerr(c, "%s: unsupported format", where);
    return 0;
  }
  if (strcmp(kw, "anyOf") == 0)
    return px__list(c, v, &n->any_of, where, kw);
  if (strcmp(kw, "oneOf") == 0)
    return px__list(c, v, &n->one_of, where, kw);
  if (strcmp(kw, "allOf") == 0)
    return px__list(c, v, &n->all_of, where, kw);
  if (strcmp(kw, "not") == 0)
    return px__sub(c, v, &n->not_, where);
  if (strcmp(kw, "if") == 0)
    return px__sub(c, v, &n->if_, where);
  if (strcmp(kw, "then") == 0)
    return px__sub(c, v, &n->then_, where);
  if (strcmp(kw, "else") == 0)
    return px__sub(c, v, &n->else_, where);
  if (strcmp(kw, "$ref") == 0) {
    const char *r = json_string_value(v);
    if (r == NULL || strncmp(r, "#/$defs/", 8) != 0 || (n->ref = px__def(c->s, r + 8)) == NULL)
      return px__cerr(c, "%s: $ref must name one of this schema's $defs", where);
    return 0;
  }
  if (px__annotation(kw))
    return 0;
  return px__cerr(c, "%s: keyword \"%s\" is not supported", where, kw);
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__compile(px__cc_t *c, json_t *j, px__node_t *n, const char *where) {
  if (n == NULL)
    return -ENOMEM;
  if (json_is_boolean(j)) {
    n->never = json_is_false(j);
    return 0;
  }
  if (!json_is_object(j))
    return px__cerr(c, "%s: a schema is an object or a boolean", where);
  const char *kw;
  json_t *v;
  json_object_foreach(j, kw, v) {
    int rc = px__keyword(c, kw, v, n, where);
    if (rc != 0)
      return rc;
  }
  for (size_t i = 0; i < n->nreq; i++)
    n->req[i].prop = px__find_prop(n, n->req[i].name, strlen(n->req[i].name));
  return 0;
}

int px_schema_compile(const char *text, size_t n, px_schema_t **out, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *doc = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
  px_schema_t *s = calloc(1, sizeof(*s));
  px__cc_t c = {s, err, errlen};
  int rc = 0;
  *out = NULL;
  if (doc == NULL || s == NULL) {
    snprintf(err, errlen, "schema is not JSON: %s", doc == NULL ? jerr.text : "out of memory");
    json_decref(doc);
    free(s);
    return -EINVAL;
  }
  /* Every definition gets its node first, so $refs between them (in any
   * order) resolve while compiling. */
  json_t *defs = json_object_get(doc, "$defs");
  if (defs != NULL && !json_is_object(defs))
    rc = px__cerr(&c, "$defs must be an object");
  if (rc == 0 && defs != NULL) {
    s->defs = calloc(json_object_size(defs) + 1, sizeof(*s->defs));
    const char *name;
    json_t *d;
    json_object_foreach(defs, name, d) {
      if (s->defs == NULL || (s->defs[s->ndefs].name = strdup(name)) == NULL ||
          (s->defs[s->ndefs].node = px__new_node(s)) == NULL) {
        rc = -ENOMEM;
        break;
      }
      s->ndefs++;
    }
    for (size_t i = 0; rc == 0 && i < s->ndefs; i++) {
      char w[128];
      snprintf(w, sizeof(w), "$defs.%s", s->defs[i].name);
      rc = px__compile(&c, json_object_get(defs, s->defs[i].name), s->defs[i].node, w);
    }
  }
  if (rc == 0 && (s->root = px__new_node(s)) == NULL)
    rc = -ENOMEM;
  if (rc == 0)
    rc = px__compile(&c, doc, s->root, "schema");
  json_decref(doc);
  if (rc != 0) {
    if (rc == -ENOMEM)
      snprintf(err, errlen, "out of memory");
    px_schema_free(s);
    return -EINVAL;
  }
  *out = s;
  return 0;
}

void px_schema_free(px_schema_t *s) {
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->nall; i++) {
    px__node_t *n = s->all[i];
    json_decref(n->konst);
    json_decref(n->enums);
    for (size_t k = 0; k < n->nprops; k++)
      free(n->props[k].name);
    free(n->props);
    for (size_t k = 0; k < n->nreq; k++)
      free(n->req[k].name);
    free(n->req);
    px_pattern_free(n->pattern);
    free(n->pattern_src);
    free(n->any_of.v);
    free(n->one_of.v);
    free(n->all_of.v);
    free(n);
  }
  for (size_t i = 0; i < s->ndefs; i++)
    free(s->defs[i].name);
  free(s->defs);
  free(s->all);
  free(s);
}

/* ---- validating ----------------------------------------------------------- */

/* One step of the path to the value being checked: a member (its key
 * token) or an element (its index). */
typedef struct {
  int key; /* -1 for an element */
  uint32_t index;
} px__step_t;

#define PX__MAX_STEPS (PX_JSON_MAX_DEPTH + 2)
/* Schema applications nested in one another ($ref, anyOf…), beyond the
 * document's own depth: a guard against a schema whose refs loop. */
#define PX__MAX_EVAL_DEPTH 512

typedef struct {
  const px_jdoc_t *d;
  char *why;
  size_t whylen;
  char *path;
  size_t pathlen;
  px__step_t steps[PX__MAX_STEPS];
  int nsteps;
  int quiet; /* inside anyOf/oneOf/not/if: failures are answers, not errors */
  int num_idx;    /* the number token whose value is in num (-1: none) */
  double num;
  int depth;
  bool failed;
} px__vc_t;

static void px__render_path(px__vc_t *v, char *out, size_t n) {
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < v->nsteps && used + 1 < n; i++) {
    int w;
    if (v->steps[i].key >= 0) {
      char name[128];
      if (px_jstr(v->d, v->steps[i].key, name, sizeof(name)) < 0)
        snprintf(name, sizeof(name), "(long key)");
      w = snprintf(out + used, n - used, "%s%s", i ? "." : "", name);
    } else {
      w = snprintf(out + used, n - used, "[%u]", v->steps[i].index);
    }
    if (w < 0 || (size_t)w >= n - used)
      break;
    used += (size_t)w;
  }
}

__attribute__((format(printf, 2, 3))) static bool px__verr(px__vc_t *v, const char *fmt, ...) {
  if (v->quiet || v->failed)
    return false;
  char path[512], reason[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  px__render_path(v, path, sizeof(path));
  snprintf(v->why, v->whylen, "%s: %s", path[0] ? path : "(the measurement)", reason);
  if (v->path != NULL)
    snprintf(v->path, v->pathlen, "%s", path);
  v->failed = true;
  return false;
}

/* Whether a number token is integral when written with no fraction and
 * no exponent, or -1 when only its value can tell. */
static int px__plain_integer(const px_jdoc_t *d, int idx) {
  const char *p = d->text + d->tok[idx].start;
  uint32_t n = d->tok[idx].len;
  return memchr(p, '.', n) == NULL && memchr(p, 'e', n) == NULL && memchr(p, 'E', n) == NULL
             ? 1
             : -1;
}

static bool px__integral_of(const px_jdoc_t *d, int idx) {
  if (px__plain_integer(d, idx) == 1)
    return true;
  double x;
  px_jnum(d, idx, &x);
  return isfinite(x) && floor(x) == x;
}

/* The JSON type bits of the value at idx; for a number, INT as well only
 * when exact (the caller may ask px__integral later instead). */
static unsigned px__type_of(const px_jdoc_t *d, int idx, bool exact) {
  switch (px_jtype(d, idx)) {
  case PX_JT_NULL: return PX__T_NULL;
  case PX_JT_TRUE:
  case PX_JT_FALSE: return PX__T_BOOL;
  case PX_JT_STRING: return PX__T_STR;
  case PX_JT_ARRAY: return PX__T_ARR;
  case PX_JT_OBJECT: return PX__T_OBJ;
  case PX_JT_NUMBER: return exact && px__integral_of(d, idx) ? PX__T_INT | PX__T_NUM : PX__T_NUM;
  default: return 0;
  }
}

static void px__type_names(unsigned bits, char *out, size_t n) {
  static const char *const names[] = {"null", "boolean", "integer", "number",
                                      "string", "array", "object"};
  size_t used = 0;
  out[0] = '\0';
  if ((bits & PX__T_NUM) != 0)
    bits &= ~(unsigned)PX__T_INT;
  for (unsigned i = 0, k = 0; i < 7; i++) {
    if (!(bits & (1u << i)))
      continue;
    int w = snprintf(out + used, n - used, "%s%s", k++ ? " or " : "", names[i]);
    if (w < 0 || (size_t)w >= n - used)
      return;
    used += (size_t)w;
  }
}

/* The string at idx, unescaped: points into the text when it has no
 * escapes (not NUL-terminated then, unless copied), else into *buf. */
typedef struct {
  const char *p;
  size_t len;
  char *heap;
  char local[512];
} px__str_t;

static int px__str_get(const px_jdoc_t *d, int idx, px__str_t *s, bool nul) {
  const px_jtok_t *t = &d->tok[idx];
  s->heap = NULL;
  if (!t->escaped && !nul) {
    s->p = d->text + t->start;
    s->len = t->len;
    return 0;
  }
  size_t cap = (size_t)t->len + 8;
  char *buf = cap <= sizeof(s->local) ? s->local : (s->heap = malloc(cap));
  if (buf == NULL)
    return -ENOMEM;
  int n = px_jstr(d, idx, buf, cap);
  if (n < 0) {
    free(s->heap);
    s->heap = NULL;
    return -EINVAL;
  }
  s->p = buf;
  s->len = (size_t)n;
  return 0;
}

static size_t px__code_points(const char *p, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++)
    count += ((unsigned char)p[i] & 0xc0) != 0x80;
  return count;
}

/* The value at idx equals the JSON value j (numbers by value). */
/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__equal(const px_jdoc_t *d, int idx, json_t *j) {
  switch (px_jtype(d, idx)) {
  case PX_JT_NULL: return json_is_null(j);
  case PX_JT_TRUE: return json_is_true(j);
  case PX_JT_FALSE: return json_is_false(j);
  case PX_JT_NUMBER: {
    double x;
    return json_is_number(j) && px_jnum(d, idx, &x) && x == json_number_value(j);
  }
  case PX_JT_STRING: {
    if (!json_is_string(j))
      return false;
    px__str_t s;
    if (px__str_get(d, idx, &s, false) != 0)
      return false;
    bool eq = s.len == json_string_length(j) && memcmp(s.p, json_string_value(j), s.len) == 0;
    free(s.heap);
    return eq;
  }
  case PX_JT_ARRAY: {
    if (!json_is_array(j) || json_array_size(j) != d->tok[idx].size)
      return false;
    int e = idx + 1;
    for (size_t i = 0; i < d->tok[idx].size; i++, e = (int)d->tok[e].next)
      if (!px__equal(d, e, json_array_get(j, i)))
        return false;
    return true;
  }
  case PX_JT_OBJECT: {
    if (!json_is_object(j) || json_object_size(j) != d->tok[idx].size)
      return false;
    uint32_t k = (uint32_t)idx + 1;
    for (uint32_t m = 0; m < d->tok[idx].size; m++, k = d->tok[k + 1].next) {
      char name[256];
      if (px_jstr(d, (int)k, name, sizeof(name)) < 0 || json_object_get(j, name) == NULL ||
          !px__equal(d, (int)k + 1, json_object_get(j, name)))
        return false;
    }
    return true;
  }
  default: return false;
  }
}

static bool px__check(px__vc_t *v, const px__node_t *n, int idx);

/* The value of the number at idx, parsed once however many schemas look
 * at it ($ref, branches, bounds). */
static double px__number_value(px__vc_t *v, int idx) {
  if (v->num_idx != idx) {
    px_jnum(v->d, idx, &v->num);
    v->num_idx = idx;
  }
  return v->num;
}

static bool px__integral(px__vc_t *v, int idx) {
  if (px__plain_integer(v->d, idx) == 1)
    return true;
  double x = px__number_value(v, idx);
  return isfinite(x) && floor(x) == x;
}

static bool px__push(px__vc_t *v, int key, uint32_t index) {
  if (v->nsteps == PX__MAX_STEPS)
    return px__verr(v, "nested too deeply");
  v->steps[v->nsteps++] = (px__step_t){key, index};
  return true;
}

/* n's check of the value at idx in quiet mode: true or false, no message. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__quietly(px__vc_t *v, const px__node_t *n, int idx) {
  v->quiet++;
  bool ok = px__check(v, n, idx);
  v->quiet--;
  return ok;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__check_string(px__vc_t *v, const px__node_t *n, int idx) {
  if (n->min_len < 0 && n->max_len < 0 && !n->has_pattern && n->format == PX__FMT_NONE)
    return true;
  px__str_t s;
  /* inet_pton needs a C string; the pattern is matched in place. */
  if (px__str_get(v->d, idx, &s, n->format != PX__FMT_NONE) != 0)
    return px__verr(v, "unreadable string");
  bool ok = true;
  /* Code points lie between a quarter of the bytes and all of them:
   * counting is needed only when that range straddles a bound. */
  bool count = (n->max_len >= 0 && s.len > (size_t)n->max_len) ||
               (n->min_len >= 0 && s.len / 4 < (size_t)n->min_len);
  size_t cps = count ? px__code_points(s.p, s.len) : s.len;
  if (n->max_len >= 0 && cps > (size_t)n->max_len)
    ok = px__verr(v, "longer than %ld characters", n->max_len);
  else if (n->min_len >= 0 && cps < (size_t)n->min_len)
    ok = px__verr(v, "shorter than %ld characters", n->min_len);
  else if (n->has_pattern && !px_pattern_match(n->pattern, s.p, s.len))
    ok = px__verr(v, "does not match %s", n->pattern_src);
  else if (n->format != PX__FMT_NONE) {
    unsigned char addr[16];
    int af = n->format == PX__FMT_IPV4 ? AF_INET : AF_INET6;
    if (inet_pton(af, s.p, addr) != 1)
      ok = px__verr(v, "not an %s address", af == AF_INET ? "IPv4" : "IPv6");
  }
  free(s.heap);
  return ok;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__check_array(px__vc_t *v, const px__node_t *n, int idx) {
  uint32_t size = v->d->tok[idx].size;
  if (n->max_items >= 0 && size > (unsigned long)n->max_items)
    return px__verr(v, "more than %ld items", n->max_items);
  if (n->min_items >= 0 && size < (unsigned long)n->min_items)
    return px__verr(v, "fewer than %ld items", n->min_items);
  if (n->items == NULL)
    return true;
  int e = idx + 1;
  for (uint32_t i = 0; i < size; i++, e = (int)v->d->tok[e].next) {
    if (!px__push(v, -1, i))
      return false;
    bool ok = px__check(v, n->items, e);
    v->nsteps--;
    if (!ok)
      return false;
  }
  return true;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__check_object(px__vc_t *v, const px__node_t *n, int idx) {
  const px_jdoc_t *d = v->d;
  uint32_t size = d->tok[idx].size;
  if (n->max_props >= 0 && size > (unsigned long)n->max_props)
    return px__verr(v, "more than %ld members", n->max_props);
  if (n->min_props >= 0 && size < (unsigned long)n->min_props)
    return px__verr(v, "fewer than %ld members", n->min_props);
  bool seen_local[64] = {false}, *seen = n->nprops <= 64 ? seen_local : calloc(n->nprops, 1);
  if (seen == NULL)
    return px__verr(v, "out of memory");
  bool ok = true;
  uint32_t k = (uint32_t)idx + 1;
  for (uint32_t m = 0; ok && m < size; m++, k = d->tok[k + 1].next) {
    px__str_t name;
    if (px__str_get(d, (int)k, &name, false) != 0) {
      ok = px__verr(v, "unreadable member name");
      break;
    }
    int p = n->nprops > 0 ? px__find_prop(n, name.p, name.len) : -1;
    free(name.heap);
    if (!px__push(v, (int)k, 0)) {
      ok = false;
      break;
    }
    if (n->property_names != NULL && !px__check(v, n->property_names, (int)k))
      ok = false;
    else if (p >= 0) {
      seen[p] = true;
      ok = px__check(v, n->props[p].node, (int)k + 1);
    } else if (n->no_additional) {
      ok = px__verr(v, "unknown member");
    } else if (n->additional != NULL) {
      ok = px__check(v, n->additional, (int)k + 1);
    }
    v->nsteps--;
  }
  for (size_t r = 0; ok && r < n->nreq; r++) {
    bool present = n->req[r].prop >= 0 ? seen[n->req[r].prop]
                                        : px_jobj_get(d, (uint32_t)idx, n->req[r].name) >= 0;
    if (!present)
      ok = px__verr(v, "missing \"%s\"", n->req[r].name);
  }
  if (seen != seen_local)
    free(seen);
  return ok;
}

/* What a branch list accepts, as type names, for the message when none
 * of them matches. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static unsigned px__accepts(const px__node_t *n) {
  unsigned bits = 0;
  if (n->ref != NULL)
    bits |= px__accepts(n->ref);
  bits |= n->types;
  if (n->konst != NULL)
    bits |= json_is_string(n->konst) ? PX__T_STR : json_is_null(n->konst) ? PX__T_NULL
            : json_is_boolean(n->konst) ? PX__T_BOOL : json_is_number(n->konst) ? PX__T_NUM : 0;
  for (size_t i = 0; n->enums != NULL && i < json_array_size(n->enums); i++)
    bits |= json_is_string(json_array_get(n->enums, i)) ? PX__T_STR : 0;
  const px__list_t *lists[2] = {&n->any_of, &n->one_of};
  for (int l = 0; l < 2; l++)
    for (size_t i = 0; i < lists[l]->n; i++)
      bits |= px__accepts(lists[l]->v[i]);
  return bits;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
/* When none of a list's branches matches: if exactly one of them takes a
 * value of this type, its own complaint is the useful one (the path goes
 * on into the object); otherwise what types would have done. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__no_branch(px__vc_t *v, const px__node_t *n, const px__list_t *l, int idx,
                          const char *how) {
  if (v->quiet)
    return false;
  unsigned type = px__type_of(v->d, idx, true);
  const px__node_t *only = NULL;
  size_t taking = 0;
  for (size_t i = 0; i < l->n; i++)
    if (px__accepts(l->v[i]) & type) {
      only = l->v[i];
      taking++;
    }
  if (taking == 1 && !px__check(v, only, idx) && v->failed)
    return false;
  char want[96], got[32];
  px__type_names(px__accepts(n), want, sizeof(want));
  px__type_names(px__type_of(v->d, idx, true), got, sizeof(got));
  if (want[0] != '\0' && !(px__accepts(n) & px__type_of(v->d, idx, true)))
    return px__verr(v, "expected %s, got %s", want, got);
  return px__verr(v, "%s", how);
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__check_combinators(px__vc_t *v, const px__node_t *n, int idx) {
  for (size_t i = 0; i < n->all_of.n; i++)
    if (!px__check(v, n->all_of.v[i], idx))
      return false;
  if (n->any_of.n > 0) {
    bool any = false;
    for (size_t i = 0; !any && i < n->any_of.n; i++)
      any = px__quietly(v, n->any_of.v[i], idx);
    if (!any)
      return px__no_branch(v, n, &n->any_of, idx, "matches none of the allowed forms");
  }
  if (n->one_of.n > 0) {
    size_t matched = 0;
    for (size_t i = 0; i < n->one_of.n; i++)
      matched += px__quietly(v, n->one_of.v[i], idx);
    if (matched != 1)
      return matched == 0 ? px__no_branch(v, n, &n->one_of, idx, "matches none of the allowed forms")
                          : px__verr(v, "matches more than one of the allowed forms");
  }
  if (n->not_ != NULL && px__quietly(v, n->not_, idx))
    return px__verr(v, "matches a form that is not allowed");
  if (n->if_ != NULL) {
    const px__node_t *branch = px__quietly(v, n->if_, idx) ? n->then_ : n->else_;
    if (branch != NULL && !px__check(v, branch, idx))
      return false;
  }
  return true;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__check(px__vc_t *v, const px__node_t *n, int idx) {
  if (n->never)
    return px__verr(v, "not allowed here");
  if (++v->depth > PX__MAX_EVAL_DEPTH) {
    v->depth--;
    return px__verr(v, "the schema nests too deeply");
  }
  bool ok = true;
  unsigned type = px__type_of(v->d, idx, false);
  /* Integral or not matters only where integers are wanted and other
   * numbers are not (plain digits are told without parsing). */
  if (type == PX__T_NUM && (n->types & PX__T_INT) && !(n->types & PX__T_NUM) &&
      px__integral(v, idx))
    type |= PX__T_INT;
  if (n->ref != NULL)
    ok = px__check(v, n->ref, idx);
  /* In a branch of anyOf/oneOf failing is an answer: no message is made
   * (most branches of every such keyword fail). */
  if (ok && n->types != 0 && !(n->types & type) && v->quiet) {
    ok = false;
  } else if (ok && n->types != 0 && !(n->types & type)) {
    char want[96], got[32];
    px__type_names(n->types, want, sizeof(want));
    px__type_names(px__type_of(v->d, idx, true), got, sizeof(got));
    ok = px__verr(v, "expected %s, got %s", want, got);
  }
  if (ok && n->konst != NULL && !px__equal(v->d, idx, n->konst) && v->quiet) {
    ok = false;
  } else if (ok && n->konst != NULL && !px__equal(v->d, idx, n->konst)) {
    char *want = json_dumps(n->konst, JSON_ENCODE_ANY);
    ok = px__verr(v, "must be %s", want ? want : "a fixed value");
    free(want);
  }
  if (ok && n->enums != NULL) {
    bool found = false;
    for (size_t i = 0; !found && i < json_array_size(n->enums); i++)
      found = px__equal(v->d, idx, json_array_get(n->enums, i));
    if (!found)
      ok = px__verr(v, "not one of the allowed values");
  }
  if (ok && (type & PX__T_NUM) && (n->has_min || n->has_max)) {
    double x = px__number_value(v, idx);
    if (n->has_min && !(x >= n->min))
      ok = px__verr(v, "below the minimum %g", n->min);
    else if (n->has_max && !(x <= n->max))
      ok = px__verr(v, "above the maximum %g", n->max);
  }
  if (ok && type == PX__T_STR)
    ok = px__check_string(v, n, idx);
  if (ok && type == PX__T_ARR)
    ok = px__check_array(v, n, idx);
  if (ok && type == PX__T_OBJ)
    ok = px__check_object(v, n, idx);
  if (ok)
    ok = px__check_combinators(v, n, idx);
  v->depth--;
  return ok;
}

int px_schema_validate(const px_schema_t *s, const px_jdoc_t *d, int idx, char *why,
                       size_t whylen, char *path, size_t pathlen) {
  px__vc_t v = {.d = d, .why = why, .whylen = whylen, .path = path, .pathlen = pathlen,
               .num_idx = -1};
  if (path != NULL && pathlen > 0)
    path[0] = '\0';
  if (px__check(&v, s->root, idx))
    return 0;
  if (!v.failed)
    snprintf(why, whylen, "does not match the schema");
  return -EINVAL;
}

#define PX__NBUILTIN (sizeof(px_schema_texts) / sizeof(px_schema_texts[0]))
static px_schema_t *px__builtin[PX__NBUILTIN];
static pthread_once_t px__builtin_once = PTHREAD_ONCE_INIT;

static void px__builtin_init(void) {
  for (size_t i = 0; i < PX__NBUILTIN; i++) {
    char err[256];
    if (px_schema_compile((const char *)px_schema_texts[i].text, px_schema_texts[i].len,
                          &px__builtin[i], err, sizeof(err)) != 0)
      fprintf(stderr, "parallax-collector: the built-in schema %s: %s\n", px_schema_texts[i].name,
              err);
  }
}

const px_schema_t *px_schema_builtin(const char *name) {
  pthread_once(&px__builtin_once, px__builtin_init);
  for (size_t i = 0; i < PX__NBUILTIN; i++)
    if (strcmp(px_schema_texts[i].name, name) == 0)
      return px__builtin[i];
  return NULL;
}

const px_schema_t *px_schema_measurement(void) {
  return px_schema_builtin("measurement");
}
