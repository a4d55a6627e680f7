#include "collector/ingest/pattern.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { PX__LIT, PX__ANY, PX__CLASS, PX__BOL, PX__EOL, PX__GROUP };

typedef struct px__seq px__seq_t;

typedef struct {
  int kind;
  unsigned char c;
  uint8_t set[32]; /* PX__CLASS: one bit per byte */
  size_t min, max; /* repetitions of a single-byte atom */
  px__seq_t **alts; /* PX__GROUP */
  size_t nalts;
} px__node_t;

struct px__seq {
  px__node_t *v;
  size_t n, cap;
};

struct px_pattern {
  px__seq_t **alts; /* the top level is a group */
  size_t nalts;
  bool anchored; /* every alternative starts with ^ */
};

typedef struct {
  const char *p;
  const char *why;
} px__parse_t;

static void px__seq_free(px__seq_t *q);

/* NOLINTNEXTLINE(misc-no-recursion) */
static void px__alts_free(px__seq_t **alts, size_t n) {
  for (size_t i = 0; i < n; i++)
    px__seq_free(alts[i]);
  free(alts);
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static void px__seq_free(px__seq_t *q) {
  if (q == NULL)
    return;
  for (size_t i = 0; i < q->n; i++)
    if (q->v[i].kind == PX__GROUP)
      px__alts_free(q->v[i].alts, q->v[i].nalts);
  free(q->v);
  free(q);
}

static px__node_t *px__push(px__seq_t *q) {
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 8;
    px__node_t *v = realloc(q->v, cap * sizeof(*v));
    if (v == NULL)
      return NULL;
    q->v = v;
    q->cap = cap;
  }
  px__node_t *x = &q->v[q->n++];
  memset(x, 0, sizeof(*x));
  x->min = x->max = 1;
  return x;
}

static void px__set(px__node_t *x, unsigned char c) {
  x->set[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool px__in(const px__node_t *x, unsigned char c) {
  return (x->set[c >> 3] >> (c & 7)) & 1;
}

/* Escapes mean the character itself; the letter classes (\d, \w, \s…)
 * are not in the subset. */
static int px__escaped(px__parse_t *ps, unsigned char *c) {
  unsigned char e = (unsigned char)*++ps->p;
  if (e == '\0' || isalnum(e)) {
    ps->why = "unsupported escape";
    return -1;
  }
  *c = e;
  ps->p++;
  return 0;
}

static int px__class(px__parse_t *ps, px__node_t *x) {
  bool negate = *++ps->p == '^';
  if (negate)
    ps->p++;
  x->kind = PX__CLASS;
  while (*ps->p != ']') {
    unsigned char lo;
    if (*ps->p == '\0') {
      ps->why = "unterminated [";
      return -1;
    }
    if (*ps->p == '\\') {
      if (px__escaped(ps, &lo) != 0)
        return -1;
    } else {
      lo = (unsigned char)*ps->p++;
    }
    unsigned char hi = lo;
    if (ps->p[0] == '-' && ps->p[1] != ']' && ps->p[1] != '\0') {
      ps->p++;
      if (*ps->p == '\\') {
        if (px__escaped(ps, &hi) != 0)
          return -1;
      } else {
        hi = (unsigned char)*ps->p++;
      }
      if (hi < lo) {
        ps->why = "bad range";
        return -1;
      }
    }
    for (unsigned c = lo; c <= hi; c++)
      px__set(x, (unsigned char)c);
  }
  ps->p++;
  if (negate)
    for (int i = 0; i < 32; i++)
      x->set[i] = (uint8_t)~x->set[i];
  return 0;
}

static size_t px__number(px__parse_t *ps, bool *ok) {
  size_t v = 0;
  *ok = isdigit((unsigned char)*ps->p) != 0;
  while (isdigit((unsigned char)*ps->p)) {
    v = v * 10 + (size_t)(*ps->p++ - '0');
    if (v > 100000)
      *ok = false;
  }
  return v;
}

static int px__quantifier(px__parse_t *ps, px__node_t *x) {
  char q = *ps->p;
  if (q != '*' && q != '+' && q != '?' && q != '{')
    return 0;
  if (x->kind == PX__GROUP || x->kind == PX__BOL || x->kind == PX__EOL) {
    ps->why = "quantifiers apply to single characters or classes only";
    return -1;
  }
  ps->p++;
  if (q == '*' || q == '+' || q == '?') {
    x->min = q == '+';
    x->max = q == '?' ? 1 : SIZE_MAX;
    return 0;
  }
  bool ok;
  x->min = x->max = px__number(ps, &ok);
  if (ok && *ps->p == ',') {
    ps->p++;
    x->max = *ps->p == '}' ? SIZE_MAX : px__number(ps, &ok);
  }
  if (!ok || *ps->p != '}' || x->max < x->min) {
    ps->why = "bad {n,m}";
    return -1;
  }
  ps->p++;
  return 0;
}

static px__seq_t **px__alternatives(px__parse_t *ps, size_t *nalts);

/* NOLINTNEXTLINE(misc-no-recursion) */
static px__seq_t *px__sequence(px__parse_t *ps) {
  px__seq_t *q = calloc(1, sizeof(*q));
  while (q != NULL && *ps->p != '\0' && *ps->p != '|' && *ps->p != ')') {
    px__node_t *x = px__push(q);
    if (x == NULL)
      break;
    unsigned char c = (unsigned char)*ps->p;
    int rc = 0;
    if (c == '(') {
      ps->p++;
      x->kind = PX__GROUP;
      x->alts = px__alternatives(ps, &x->nalts);
      if (x->alts == NULL || *ps->p != ')') {
        ps->why = ps->why ? ps->why : "unbalanced (";
        rc = -1;
      } else {
        ps->p++;
      }
    } else if (c == '[') {
      rc = px__class(ps, x);
    } else if (c == '\\') {
      x->kind = PX__LIT;
      rc = px__escaped(ps, &x->c);
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
      ps->why = "a quantifier with nothing to repeat";
      rc = -1;
    } else {
      x->kind = c == '.' ? PX__ANY : c == '^' ? PX__BOL : c == '$' ? PX__EOL : PX__LIT;
      x->c = c;
      ps->p++;
    }
    if (rc == 0)
      rc = px__quantifier(ps, x);
    if (rc != 0) {
      px__seq_free(q);
      return NULL;
    }
  }
  return q;
}

/* NOLINTNEXTLINE(misc-no-recursion) */
static px__seq_t **px__alternatives(px__parse_t *ps, size_t *nalts) {
  px__seq_t **alts = NULL;
  *nalts = 0;
  for (;;) {
    px__seq_t *q = px__sequence(ps);
    px__seq_t **more = q != NULL ? realloc(alts, (*nalts + 1) * sizeof(px__seq_t *)) : NULL;
    if (more == NULL) {
      px__seq_free(q);
      px__alts_free(alts, *nalts);
      return NULL;
    }
    alts = more;
    alts[(*nalts)++] = q;
    if (*ps->p != '|')
      return alts;
    ps->p++;
  }
}

px_pattern_t *px_pattern_compile(const char *src, const char **why) {
  px__parse_t ps = {src, NULL};
  px_pattern_t *p = calloc(1, sizeof(*p));
  if (p != NULL)
    p->alts = px__alternatives(&ps, &p->nalts);
  if (p == NULL || p->alts == NULL || *ps.p != '\0') {
    *why = ps.why ? ps.why : *ps.p == ')' ? "unbalanced )" : "out of memory";
    px_pattern_free(p);
    return NULL;
  }
  p->anchored = true;
  for (size_t i = 0; i < p->nalts; i++)
    if (p->alts[i]->n == 0 || p->alts[i]->v[0].kind != PX__BOL)
      p->anchored = false;
  return p;
}

void px_pattern_free(px_pattern_t *p) {
  if (p == NULL)
    return;
  px__alts_free(p->alts, p->nalts);
  free(p);
}

/* What is left to match after the current sequence ends (a group's
 * continuation). */
typedef struct px__cont {
  const px__seq_t *seq;
  size_t i;
  const struct px__cont *next;
} px__cont_t;

static bool px__one(const px__node_t *x, unsigned char c) {
  switch (x->kind) {
  case PX__LIT: return c == x->c;
  case PX__ANY: return c != '\n' && c != '\r';
  default: return px__in(x, c);
  }
}

/* Backtracking over single-byte atoms only (groups are not repeated), so
 * the work is polynomial in the (bounded) length of the subject. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static bool px__seq(const px__seq_t *q, size_t i, const unsigned char *s, size_t n, size_t pos,
                    const px__cont_t *k) {
  if (i == q->n)
    return k == NULL || px__seq(k->seq, k->i, s, n, pos, k->next);
  const px__node_t *x = &q->v[i];
  switch (x->kind) {
  case PX__BOL: return pos == 0 && px__seq(q, i + 1, s, n, pos, k);
  case PX__EOL: return pos == n && px__seq(q, i + 1, s, n, pos, k);
  case PX__GROUP: {
    px__cont_t after = {q, i + 1, k};
    for (size_t a = 0; a < x->nalts; a++)
      if (px__seq(x->alts[a], 0, s, n, pos, &after))
        return true;
    return false;
  }
  default: {
    size_t count = 0;
    while (count < x->max && pos + count < n && px__one(x, s[pos + count]))
      count++;
    if (count < x->min)
      return false;
    for (size_t c = count;; c--) {
      if (px__seq(q, i + 1, s, n, pos + c, k))
        return true;
      if (c == x->min)
        return false;
    }
  }
  }
}

bool px_pattern_match(const px_pattern_t *p, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t start = 0; start <= n; start++) {
    for (size_t a = 0; a < p->nalts; a++)
      if (px__seq(p->alts[a], 0, u, n, start, NULL))
        return true;
    if (p->anchored)
      break;
  }
  return false;
}
