/* The overview (issue 17): which domains are flagged in which countries
 * over a window, as GET /api/v1/overview (JSON) and as the page at /
 * without domain= (server-rendered HTML that needs no script). Both are
 * rendered from one document built here, and every cell's verdict is
 * px_compare's, the function behind GET /api/v1/compare: the overview
 * only groups compare's vantage groups by country, it judges nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/analysis/analysis.h"
#include "collector/analysis/vantages.h"
#include "collector/analysis/verdict.h"
#include "collector/http/html.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/target.h"
#include "common/timeutil.h"

/* The cost bound: at most this many domains are compared per overview
 * (the target list first, then domains measured in the window), each one
 * comparison as GET /api/v1/compare makes it. */
#define PX_OVERVIEW_DOMAINS_MAX 200
/* Domains measured in the window are found among its newest this many
 * measurements (one listing page), so finding them is bounded too. */
#define PX__OVERVIEW_SCAN 1000
/* Countries a cc= filter may name. */
#define PX__OVERVIEW_CC_MAX 32

static const char *const px__verdicts[] = {"tls_interception", "dns_inconsistent", "tls_blocked",
                                           "tls_divergent",    "consistent",       "insufficient_data"};
#define PX__NVERDICTS (sizeof(px__verdicts) / sizeof(px__verdicts[0]))

typedef struct {
  time_t since, until;
  const char *window; /* "24h", "7d", "30d", or NULL (since/until, or the default) */
  const char *since_s, *until_s; /* as given (for the page's links), or NULL */
  char cc[PX__OVERVIEW_CC_MAX][3];
  size_t ncc;
  const char *verdict; /* one of px__verdicts, or NULL */
  char sort[12];       /* "domain", "severity" or a country code */
} px__ov_params_t;

static int px__bad(char *detail, size_t n, const char *what, const char *value) {
  snprintf(detail, n, "%s, not \"%.64s\"", what, value);
  return -EINVAL;
}

static bool px__is_cc(const char *s) {
  return strlen(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

/* The query's window, filters and order; -EINVAL with the reason (which
 * quotes the offending value) in detail. */
static int px__ov_params(const px_query_t *q, px__ov_params_t *p, char *detail, size_t n) {
  static const char *const known[] = {"since", "until", "window", "cc", "verdict", "sort"};
  memset(p, 0, sizeof(*p));
  for (size_t i = 0; i < q->n; i++) {
    bool ok = false;
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
      ok = ok || strcmp(q->v[i].name, known[k]) == 0;
    if (!ok)
      return px__bad(detail, n, "unknown parameter", q->v[i].name);
  }
  time_t now = time(NULL), span = PX_COMPARE_WINDOW_S;
  p->until = now + 60; /* as compare: what was measured this minute counts */
  const char *s = px_query_get(q, "window");
  p->since_s = px_query_get(q, "since");
  p->until_s = px_query_get(q, "until");
  if (p->since_s != NULL && p->since_s[0] == '\0')
    p->since_s = NULL;
  if (p->until_s != NULL && p->until_s[0] == '\0')
    p->until_s = NULL;
  if (s != NULL && s[0] != '\0') { /* (empty: as the page's form sends "as given") */
    static const struct {
      const char *name;
      time_t days;
    } windows[] = {{"24h", 1}, {"7d", 7}, {"30d", 30}};
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++)
      if (strcmp(s, windows[i].name) == 0) {
        p->window = windows[i].name;
        span = windows[i].days * 86400;
      }
    if (p->window == NULL)
      return px__bad(detail, n, "window: 24h, 7d or 30d", s);
    if (p->since_s != NULL)
      return px__bad(detail, n, "window and since: one or the other", s);
  }
  if ((s = px_query_get(q, "until")) != NULL && s[0] != '\0' &&
      px_time_parse_utc(s, &p->until) != 0)
    return px__bad(detail, n, "until: ISO 8601 UTC", s);
  p->since = p->until - span;
  if ((s = px_query_get(q, "since")) != NULL && s[0] != '\0' &&
      px_time_parse_utc(s, &p->since) != 0)
    return px__bad(detail, n, "since: ISO 8601 UTC", s);
  if (p->since >= p->until)
    return px__bad(detail, n, "since must be before until", p->since_s ? p->since_s : "");
  /* cc=DE,CN (an empty value: every country, as the page's form sends it). */
  if ((s = px_query_get(q, "cc")) != NULL && s[0] != '\0') {
    const char *c = s;
    while (true) {
      size_t len = strcspn(c, ",");
      char one[3] = {0};
      if (len == 2) {
        one[0] = (char)(c[0] >= 'a' && c[0] <= 'z' ? c[0] - 32 : c[0]);
        one[1] = (char)(c[1] >= 'a' && c[1] <= 'z' ? c[1] - 32 : c[1]);
      }
      if (!px__is_cc(one) || p->ncc == PX__OVERVIEW_CC_MAX)
        return px__bad(detail, n, "cc: up to 32 two-letter country codes, comma-separated", s);
      memcpy(p->cc[p->ncc++], one, 3);
      if (c[len] == '\0')
        break;
      c += len + 1;
    }
  }
  if ((s = px_query_get(q, "verdict")) != NULL && s[0] != '\0') {
    for (size_t k = 0; k < PX__NVERDICTS && p->verdict == NULL; k++)
      if (strcmp(s, px__verdicts[k]) == 0)
        p->verdict = px__verdicts[k];
    if (p->verdict == NULL)
      return px__bad(detail, n, "verdict: one of the compare verdicts", s);
  }
  snprintf(p->sort, sizeof(p->sort), "domain");
  if ((s = px_query_get(q, "sort")) != NULL && s[0] != '\0') {
    if (strcmp(s, "domain") != 0 && strcmp(s, "severity") != 0 && !px__is_cc(s))
      return px__bad(detail, n, "sort: domain, severity or a country code", s);
    snprintf(p->sort, sizeof(p->sort), "%s", s);
  }
  return 0;
}

/* ---- the domains ----------------------------------------------------------- */

typedef struct {
  char *v[PX_OVERVIEW_DOMAINS_MAX];
  bool target[PX_OVERVIEW_DOMAINS_MAX];
  size_t n;
  bool truncated;
} px__domains_t;

/* Adds the store key of a target or an input (host name, lower case, no
 * port), once. */
static void px__domains_add(px__domains_t *d, const char *input, bool target) {
  px_target_t t;
  const char *reason;
  char key[PX_HOSTNAME_MAX + 1];
  if (px_target_parse(input, 443, &t, &reason) != 0 || !px_query_domain(t.hostname, key))
    return;
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->v[i], key) == 0)
      return;
  if (d->n == PX_OVERVIEW_DOMAINS_MAX) {
    d->truncated = true;
    return;
  }
  if ((d->v[d->n] = strdup(key)) != NULL)
    d->target[d->n++] = target;
}

static int px__domains_load(px_request_t *r, const px__ov_params_t *p, px__domains_t *d) {
  for (size_t i = 0; i < r->c->cfg.ntargets; i++)
    px__domains_add(d, r->c->cfg.targets[i], true);
  px_filter_t f = {.has_since = true, .has_until = true, .since = p->since, .until = p->until,
                   .limit = PX__OVERVIEW_SCAN};
  json_t *rows = NULL;
  char cursor[128];
  if (px_store_list(r->c->store, &f, &rows, cursor, sizeof(cursor)) != 0)
    return -EIO;
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    const char *input = json_string_value(json_object_get(row, "input"));
    if (input != NULL)
      px__domains_add(d, input, false);
  }
  /* More than one page: domains only in older measurements may be missing. */
  if (cursor[0] != '\0')
    d->truncated = true;
  json_decref(rows);
  return 0;
}

static void px__domains_free(px__domains_t *d) {
  for (size_t i = 0; i < d->n; i++)
    free(d->v[i]);
}

/* ---- the document ---------------------------------------------------------- */

static bool px__cc_shown(const px__ov_params_t *p, const char *cc) {
  if (p->ncc == 0)
    return true;
  for (size_t i = 0; i < p->ncc; i++)
    if (strcmp(p->cc[i], cc) == 0)
      return true;
  return false;
}

/* compare's groups of one domain as cells, one per country: the most
 * severe group's verdict (the larger confidence among equals), the
 * vantages and measurements of all its groups, and the groups. */
static json_t *px__cells(const json_t *doc, const px__ov_params_t *p) {
  json_t *cells = json_object();
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(doc, "vantages"), i, g) {
    const char *cc = json_string_value(json_object_get(g, "probe_cc"));
    const char *verdict = json_string_value(json_object_get(g, "verdict"));
    if (cc == NULL || verdict == NULL || !px__cc_shown(p, cc))
      continue;
    double conf = json_number_value(json_object_get(g, "confidence"));
    json_int_t vc = json_integer_value(json_object_get(g, "vantage_count"));
    json_int_t ms =
        json_integer_value(json_object_get(json_object_get(g, "observed"), "measurements"));
    json_t *c = json_object_get(cells, cc);
    if (c == NULL) {
      c = json_object();
      json_object_set_new(c, "probe_cc", json_string(cc));
      json_object_set_new(c, "verdict", json_string(verdict));
      json_object_set_new(c, "confidence", json_real(conf));
      json_object_set_new(c, "vantage_count", json_integer(0));
      json_object_set_new(c, "measurements", json_integer(0));
      json_object_set_new(c, "groups", json_array());
      json_object_set_new(cells, cc, c);
    } else {
      const char *had = json_string_value(json_object_get(c, "verdict"));
      int rn = px_verdict_rank(verdict), rh = px_verdict_rank(had);
      if (rn > rh || (rn == rh && conf > json_number_value(json_object_get(c, "confidence")))) {
        json_object_set_new(c, "verdict", json_string(verdict));
        json_object_set_new(c, "confidence", json_real(conf));
      }
    }
    json_object_set_new(c, "vantage_count",
                        json_integer(json_integer_value(json_object_get(c, "vantage_count")) + vc));
    json_object_set_new(c, "measurements",
                        json_integer(json_integer_value(json_object_get(c, "measurements")) + ms));
    json_t *grp = json_object();
    json_object_set(grp, "probe_asn", json_object_get(g, "probe_asn"));
    json_object_set_new(grp, "verdict", json_string(verdict));
    json_object_set_new(grp, "confidence", json_real(conf));
    json_object_set_new(grp, "vantage_count", json_integer(vc));
    json_object_set_new(grp, "measurements", json_integer(ms));
    json_array_append_new(json_object_get(c, "groups"), grp);
  }
  return cells;
}

/* The most severe verdict among cells (one of px__verdicts), or NULL. */
static const char *px__worst(const json_t *cells) {
  const char *worst = NULL, *k;
  json_t *c;
  json_object_foreach((json_t *)cells, k, c) {
    const char *v = json_string_value(json_object_get(c, "verdict"));
    if (worst == NULL || px_verdict_rank(v) > px_verdict_rank(worst))
      worst = v;
  }
  for (size_t i = 0; worst != NULL && i < PX__NVERDICTS; i++)
    if (strcmp(worst, px__verdicts[i]) == 0)
      return px__verdicts[i];
  return NULL;
}

static bool px__has_verdict(const json_t *cells, const char *verdict) {
  const char *k;
  json_t *c;
  json_object_foreach((json_t *)cells, k, c) {
    if (strcmp(json_string_value(json_object_get(c, "verdict")), verdict) == 0)
      return true;
  }
  return false;
}

/* A row and what it sorts by: the rank of its worst verdict, or of its
 * verdict in the sort's country (-2 where it has none), then the domain. */
typedef struct {
  json_t *row;
  int key;
  const char *domain;
} px__row_t;

static int px__row_cmp(const void *a, const void *b) {
  const px__row_t *x = a, *y = b;
  if (x->key != y->key)
    return y->key - x->key; /* most severe first */
  return strcmp(x->domain, y->domain);
}

static int px__sort_key(const px__ov_params_t *p, const json_t *cells) {
  if (strcmp(p->sort, "domain") == 0)
    return 0;
  if (strcmp(p->sort, "severity") == 0)
    return px__worst(cells) ? px_verdict_rank(px__worst(cells)) : -2;
  const json_t *c = json_object_get(cells, p->sort);
  return c ? px_verdict_rank(json_string_value(json_object_get(c, "verdict"))) : -2;
}

/* The overview document (schemas/overview.schema.json), or NULL with
 * *status and detail set. */
static json_t *px__overview(px_request_t *r, const px__ov_params_t *p, unsigned *status,
                            char *detail, size_t n) {
  int64_t mark = -1;
  /* Measurements acknowledged before this request are part of it. */
  bool lagging = px_analysis_catch_up(r->c->analysis, 5000, &mark) != 0;
  time_t analysed_at = time(NULL);
  px__domains_t *d = calloc(1, sizeof(*d));
  if (d == NULL || px__domains_load(r, p, d) != 0) {
    if (d != NULL)
      px__domains_free(d);
    free(d);
    *status = MHD_HTTP_SERVICE_UNAVAILABLE;
    snprintf(detail, n, "query failed");
    return NULL;
  }
  px__row_t *rows = calloc(d->n ? d->n : 1, sizeof(*rows));
  size_t nrows = 0;
  json_t *countries = json_object();
  int rc = rows != NULL ? 0 : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < d->n; i++) {
    px_vantages_t vs;
    rc = px_vantages_load(r->c->store, d->v[i], p->since, p->until, false, &vs);
    json_t *doc = rc == 0 ? px_compare_mode(d->v[i], vs.v, vs.n, PX_QUORUM, PX_COMPARE_WINDOW)
                          : NULL;
    px_vantages_free(&vs);
    if (doc == NULL) {
      rc = rc != 0 ? rc : -ENOMEM;
      break;
    }
    json_t *cells = px__cells(doc, p);
    json_decref(doc);
    /* With a filter, a row is there for what matches it; without, every
     * target is a row, measured or not ("nothing seen" is an answer). */
    bool keep = p->verdict ? px__has_verdict(cells, p->verdict)
                           : (p->ncc == 0 ? (d->target[i] || json_object_size(cells) > 0)
                                          : json_object_size(cells) > 0);
    if (!keep) {
      json_decref(cells);
      continue;
    }
    const char *k;
    json_t *c;
    json_object_foreach(cells, k, c) json_object_set_new(countries, k, json_true());
    json_t *row = json_object();
    json_object_set_new(row, "domain", json_string(d->v[i]));
    json_object_set_new(row, "target", json_boolean(d->target[i]));
    const char *worst = px__worst(cells);
    json_object_set_new(row, "worst_verdict", worst ? json_string(worst) : json_null());
    rows[nrows].key = px__sort_key(p, cells);
    json_object_set_new(row, "cells", cells);
    rows[nrows].row = row;
    rows[nrows++].domain = json_string_value(json_object_get(row, "domain"));
  }
  bool truncated = d->truncated;
  size_t compared = d->n;
  px__domains_free(d);
  free(d);
  if (rc != 0) {
    for (size_t i = 0; i < nrows; i++)
      json_decref(rows[i].row);
    free(rows);
    json_decref(countries);
    *status = rc == -ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_SERVICE_UNAVAILABLE;
    snprintf(detail, n, "query failed");
    return NULL;
  }
  qsort(rows, nrows, sizeof(*rows), px__row_cmp);
  json_t *doc = json_object();
  char a[PX_TIME_ISO_LEN];
  px_time_format_iso(p->since, a);
  json_object_set_new(doc, "since", json_string(a));
  px_time_format_iso(p->until, a);
  json_object_set_new(doc, "until", json_string(a));
  json_object_set_new(doc, "window", p->window ? json_string(p->window) : json_null());
  px_time_format_iso(analysed_at, a);
  json_object_set_new(doc, "analysed_at", json_string(a));
  json_object_set_new(doc, "analysis_complete", json_boolean(!lagging));
  json_object_set_new(doc, "trust_store", json_string(px_analysis_trust(r->c->analysis)));
  json_object_set_new(doc, "quorum", json_integer(PX_QUORUM));
  json_object_set_new(doc, "domains_max", json_integer(PX_OVERVIEW_DOMAINS_MAX));
  json_object_set_new(doc, "domains_compared", json_integer((json_int_t)compared));
  json_object_set_new(doc, "domains_truncated", json_boolean(truncated));
  json_t *filters = json_object(), *ccs = json_array();
  for (size_t i = 0; i < p->ncc; i++)
    json_array_append_new(ccs, json_string(p->cc[i]));
  json_object_set_new(filters, "cc", ccs);
  json_object_set_new(filters, "verdict", p->verdict ? json_string(p->verdict) : json_null());
  json_object_set_new(doc, "filters", filters);
  json_object_set_new(doc, "sort", json_string(p->sort));
  /* Columns: the countries of the rows shown, alphabetically. */
  json_t *cols = json_array();
  const char *k;
  json_t *v;
  json_object_foreach(countries, k, v) json_array_append_new(cols, json_string(k));
  json_decref(countries);
  size_t ncols = json_array_size(cols);
  for (size_t i = 1; i < ncols; i++)
    for (size_t j = i; j > 0 && strcmp(json_string_value(json_array_get(cols, j - 1)),
                                       json_string_value(json_array_get(cols, j))) > 0;
         j--) {
      json_t *t = json_incref(json_array_get(cols, j));
      json_array_set(cols, j, json_array_get(cols, j - 1));
      json_array_set_new(cols, j - 1, t);
    }
  json_object_set_new(doc, "countries", cols);
  json_t *arr = json_array();
  for (size_t i = 0; i < nrows; i++)
    json_array_append_new(arr, rows[i].row);
  free(rows);
  json_object_set_new(doc, "domains", arr);
  return doc;
}

/* ---- GET /api/v1/overview ---------------------------------------------------- */

enum MHD_Result px_api_overview(px_request_t *r, const px_query_t *q) {
  px__ov_params_t p;
  char detail[160];
  unsigned status = MHD_HTTP_BAD_REQUEST;
  if (px__ov_params(q, &p, detail, sizeof(detail)) != 0)
    return px_respond_error(r, status, "bad_query", detail);
  json_t *doc = px__overview(r, &p, &status, detail, sizeof(detail));
  if (doc == NULL)
    return px_respond_error(r, status, "storage_error", detail);
  return px_respond_json(r, MHD_HTTP_OK, doc);
}

/* ---- the page ---------------------------------------------------------------- */

static const char px__head[] =
    "<!doctype html>\n"
    "<html lang=en><head><meta charset=utf-8>\n"
    "<meta name=viewport content='width=device-width,initial-scale=1'>\n"
    "<title>parallax: overview</title>\n"
    "<link rel=stylesheet href=/static/app.css>\n"
    "</head><body>\n"
    "<h1>parallax</h1>\n";

static const char *px__s(const json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "";
}

/* A query value, percent-encoded, then escaped for an attribute. */
static void px__qv(FILE *f, const char *name, const char *value) {
  char enc[3 * 256 + 1];
  px_percent_encode(value, enc, sizeof(enc));
  fputc('&', f);
  px_html_escape(f, name);
  fputc('=', f);
  px_html_escape(f, enc);
}

/* href="/?…": the page as asked, sorted by sort. */
static void px__href(FILE *f, const px__ov_params_t *p, const char *sort) {
  fputs(" href=\"/?sort=", f);
  px_html_escape(f, sort);
  if (p->window)
    px__qv(f, "window", p->window);
  if (p->since_s)
    px__qv(f, "since", p->since_s);
  if (p->until_s)
    px__qv(f, "until", p->until_s);
  if (p->ncc > 0) {
    char ccs[PX__OVERVIEW_CC_MAX * 3 + 1];
    size_t len = 0;
    for (size_t i = 0; i < p->ncc; i++)
      len += (size_t)snprintf(ccs + len, sizeof(ccs) - len, "%s%s", i ? "," : "", p->cc[i]);
    px__qv(f, "cc", ccs);
  }
  if (p->verdict)
    px__qv(f, "verdict", p->verdict);
  fputc('"', f);
}

static void px__domain_link(FILE *f, const char *domain) {
  char enc[3 * (PX_HOSTNAME_MAX + 1) + 1];
  px_percent_encode(domain, enc, sizeof(enc));
  fputs("<a href=\"/?domain=", f);
  px_html_escape(f, enc);
  fputs("\">", f);
}

static void px__sorted_th(FILE *f, const px__ov_params_t *p, const char *sort, const char *label) {
  fputs("<th scope=col", f);
  if (strcmp(p->sort, sort) == 0)
    fputs(strcmp(sort, "domain") == 0 ? " aria-sort=ascending" : " aria-sort=descending", f);
  fputs("><a", f);
  px__href(f, p, sort);
  fputs(">", f);
  px_html_escape(f, label);
  fputs("</a></th>", f);
}

static void px__form(FILE *f, const px__ov_params_t *p) {
  static const char *const windows[][2] = {
      {"24h", "last 24 hours"}, {"7d", "last 7 days"}, {"30d", "last 30 days"}};
  fputs("<form id=filters method=get action=/>\n<label>Window <select name=window>", f);
  bool given = p->window == NULL && (p->since_s != NULL || p->until_s != NULL);
  if (given)
    fputs("<option value='' selected>as given</option>", f);
  for (size_t i = 0; i < 3; i++) {
    fputs("<option value=", f);
    px_html_escape(f, windows[i][0]);
    bool sel = p->window ? strcmp(p->window, windows[i][0]) == 0 : (!given && i == 0);
    fputs(sel ? " selected>" : ">", f);
    px_html_escape(f, windows[i][1]);
    fputs("</option>", f);
  }
  fputs("</select></label>\n", f);
  if (given) {
    if (p->since_s) {
      fputs("<input type=hidden name=since value=\"", f);
      px_html_escape(f, p->since_s);
      fputs("\">", f);
    }
    if (p->until_s) {
      fputs("<input type=hidden name=until value=\"", f);
      px_html_escape(f, p->until_s);
      fputs("\">", f);
    }
  }
  fputs("<label>Countries <input name=cc size=12 placeholder=DE,CN value=\"", f);
  for (size_t i = 0; i < p->ncc; i++) {
    if (i)
      fputc(',', f);
    px_html_escape(f, p->cc[i]);
  }
  fputs("\"></label>\n<label>Verdict <select name=verdict><option value=''>any</option>", f);
  for (size_t i = 0; i < PX__NVERDICTS; i++) {
    fputs("<option", f);
    if (p->verdict == px__verdicts[i])
      fputs(" selected", f);
    fputs(">", f);
    px_html_escape(f, px__verdicts[i]);
    fputs("</option>", f);
  }
  fputs("</select></label>\n<input type=hidden name=sort value=\"", f);
  px_html_escape(f, p->sort);
  fputs("\">\n<button type=submit>Show</button></form>\n", f);
}

static void px__cell(FILE *f, const char *domain, const json_t *c) {
  if (c == NULL) {
    fputs("<td class=none>no data</td>", f);
    return;
  }
  const char *v = px__s(c, "verdict");
  fputs("<td class=\"v-", f);
  px_html_escape(f, v);
  fputs("\" data-cc=\"", f);
  px_html_escape(f, px__s(c, "probe_cc"));
  fputs("\" data-verdict=\"", f);
  px_html_escape(f, v);
  fputs("\">", f);
  px__domain_link(f, domain);
  fputs("<span class=verdict>", f);
  px_html_escape(f, v);
  fprintf(f, "</span></a><br><span class=counts>%.0f%% confidence, %lld vantage(s), %lld "
             "measurement(s)</span></td>",
          json_number_value(json_object_get(c, "confidence")) * 100.0,
          (long long)json_integer_value(json_object_get(c, "vantage_count")),
          (long long)json_integer_value(json_object_get(c, "measurements")));
}

/* The document as the page. */
static void px__render(FILE *f, const px__ov_params_t *p, const json_t *doc) {
  fputs(px__head, f);
  fputs("<p class=lead>Which domains look different from which countries. Each cell is the "
        "comparison of that domain's vantages in that country with every other country's; "
        "follow a domain for its evidence.</p>\n",
        f);
  px__form(f, p);
  fputs("<p id=analysed>Analysed at <time>", f);
  px_html_escape(f, px__s(doc, "analysed_at"));
  fputs("</time>", f);
  fputs(json_is_true(json_object_get(doc, "analysis_complete"))
            ? ", every measurement stored before it included."
            : ": the analysis was still catching up, recent measurements may be missing.",
        f);
  fprintf(f, " %lld domain(s) compared (at most %d: the target list first, then domains "
             "measured in the window)%s.</p>\n",
          (long long)json_integer_value(json_object_get(doc, "domains_compared")),
          PX_OVERVIEW_DOMAINS_MAX,
          json_is_true(json_object_get(doc, "domains_truncated"))
              ? "; more domains were measured than are compared here"
              : "");
  const json_t *cols = json_object_get(doc, "countries"), *rows = json_object_get(doc, "domains");
  fputs("<table id=overview class=overview>\n<caption>Verdicts by domain and country, ", f);
  px_html_escape(f, px__s(doc, "since"));
  fputs(" to ", f);
  px_html_escape(f, px__s(doc, "until"));
  fputs(": each cell gives the verdict, its confidence and the vantages and measurements "
        "behind it.</caption>\n<thead><tr>",
        f);
  px__sorted_th(f, p, "domain", "domain");
  px__sorted_th(f, p, "severity", "most severe");
  size_t i;
  json_t *v;
  json_array_foreach(cols, i, v) px__sorted_th(f, p, json_string_value(v), json_string_value(v));
  fputs("</tr></thead>\n<tbody>\n", f);
  json_t *row;
  json_array_foreach(rows, i, row) {
    const char *domain = px__s(row, "domain");
    const json_t *cells = json_object_get(row, "cells");
    fputs("<tr><th scope=row>", f);
    px__domain_link(f, domain);
    px_html_escape(f, domain);
    fputs("</a></th><td>", f);
    const char *worst = json_string_value(json_object_get(row, "worst_verdict"));
    px_html_escape(f, worst ? worst : "no measurements");
    fputs("</td>", f);
    size_t j;
    json_t *cc;
    json_array_foreach(cols, j, cc) px__cell(f, domain, json_object_get(cells, json_string_value(cc)));
    fputs("</tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
  if (json_array_size(rows) == 0)
    fputs("<p id=empty>No domain matches.</p>\n", f);
  /* One domain's comparison: a plain form (GET /?domain=), which the
   * collector's own script, where it runs, answers in place. */
  fputs("<h2>One domain</h2>\n"
        "<form id=f method=get action=/><label>Domain <input id=domain name=domain "
        "placeholder=www.icloud.com autocomplete=off></label> <button type=submit>Compare</button>"
        "</form>\n<div id=status>Choose a domain.</div>\n"
        "<table id=results hidden><thead><tr><th scope=col>country</th><th scope=col>network</th>"
        "<th scope=col>addresses</th><th scope=col>leaf sha256</th><th scope=col>issuer</th>"
        "<th scope=col>valid</th><th scope=col>verdict</th></tr></thead><tbody></tbody></table>\n"
        "<script src=/static/app.js></script></body></html>\n",
        f);
}

static enum MHD_Result px__page(px_request_t *r, unsigned status, char *body, size_t len) {
  static const char *const extra[] = {"Content-Security-Policy", PX_PAGE_CSP, NULL};
  enum MHD_Result ret = px_respond_with(r, status, "text/html; charset=utf-8", body, len, extra);
  free(body);
  return ret;
}

enum MHD_Result px_web_overview(px_request_t *r, const px_query_t *q) {
  px__ov_params_t p;
  char detail[160];
  unsigned status = MHD_HTTP_BAD_REQUEST;
  json_t *doc = NULL;
  if (px__ov_params(q, &p, detail, sizeof(detail)) == 0)
    doc = px__overview(r, &p, &status, detail, sizeof(detail));
  char *body = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&body, &len);
  if (f == NULL) {
    json_decref(doc);
    return MHD_NO;
  }
  if (doc != NULL) {
    px__render(f, &p, doc);
    status = MHD_HTTP_OK;
  } else {
    fputs(px__head, f);
    fputs("<p id=error>Cannot show the overview: ", f);
    px_html_escape(f, detail);
    fputs(".</p>\n<p><a href=/>The overview of the last 24 hours</a></p></body></html>\n", f);
  }
  json_decref(doc);
  if (fclose(f) != 0) {
    free(body);
    return MHD_NO;
  }
  return px__page(r, status, body, len);
}
