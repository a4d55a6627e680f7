/* The researcher API: list, raw bytes, signatures, signers, export. */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/http/observations.h"
#include "collector/http/ooni.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "common/json_util.h"
#include "common/measurement.h"
#include "common/timeutil.h"

/* A bad_query reason into detail; returns -EINVAL. */
static int px__bad(char *detail, size_t n, const char *reason) {
  snprintf(detail, n, "%s", reason);
  return -EINVAL;
}

int px_filter_from_query(const px_query_t *q, bool paged, px_filter_t *f, char *asn_buf,
                         char *cc_buf, char *domain_buf, char *detail, size_t detail_len) {
  static const char *const known[] = {"probe_cc", "probe_asn", "domain", "test_name",
                                      "since",    "until",     "key_id", "limit",
                                      "cursor",   "format",    NULL};
  memset(f, 0, sizeof(*f));
  for (size_t i = 0; i < q->n; i++) {
    bool ok = false;
    for (size_t k = 0; known[k] != NULL; k++) {
      if (strcmp(q->v[i].name, known[k]) != 0)
        continue;
      /* limit and cursor page a listing; format shapes an export's lines
       * (its value is the export's to check). */
      if (strcmp(known[k], "limit") == 0 || strcmp(known[k], "cursor") == 0)
        ok = paged;
      else if (strcmp(known[k], "format") == 0)
        ok = !paged;
      else
        ok = true;
    }
    if (!ok) {
      snprintf(detail, detail_len, "unknown parameter \"%.64s\"", q->v[i].name);
      return -EINVAL;
    }
  }
  const char *v;
  if ((v = px_query_get(q, "probe_cc")) != NULL) {
    if (px_probe_cc_normalize(v, cc_buf) != 0)
      return px__bad(detail, detail_len, "probe_cc: two letters");
    f->probe_cc = cc_buf;
  }
  if ((v = px_query_get(q, "probe_asn")) != NULL) {
    if (px_probe_asn_normalize(v, asn_buf) != 0)
      return px__bad(detail, detail_len, "probe_asn: AS1234 or 1234");
    f->probe_asn = asn_buf;
  }
  if ((v = px_query_get(q, "domain")) != NULL) {
    size_t n = strlen(v);
    if (n == 0 || n > 253)
      return px__bad(detail, detail_len, "domain: a host name");
    for (size_t i = 0; i <= n; i++)
      domain_buf[i] = (char)tolower((unsigned char)v[i]);
    f->domain = domain_buf;
  }
  f->test_name = px_query_get(q, "test_name");
  f->key_id = px_query_get(q, "key_id");
  const char *names[2] = {"since", "until"};
  for (int i = 0; i < 2; i++) {
    if ((v = px_query_get(q, names[i])) == NULL)
      continue;
    time_t t;
    if (px_time_parse_utc(v, &t) != 0) {
      snprintf(detail, detail_len, "%s: ISO 8601 UTC, e.g. 2014-10-20 or 2014-10-20T12:00:00Z",
               names[i]);
      return -EINVAL;
    }
    if (i == 0) {
      f->has_since = true;
      f->since = t;
    } else {
      f->has_until = true;
      f->until = t;
    }
  }
  f->limit = 100;
  if ((v = px_query_get(q, "limit")) != NULL) {
    char *end;
    unsigned long l = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || *end != '\0' || l < 1 || l > 1000)
      return px__bad(detail, detail_len, "limit: 1 to 1000");
    f->limit = (unsigned)l;
  }
  if ((v = px_query_get(q, "cursor")) != NULL && v[0] != '\0') {
    if (px_cursor_decode(v, &f->cursor_time, &f->cursor_id) != 0)
      return px__bad(detail, detail_len, "cursor: use next_cursor as given");
    f->has_cursor = true;
  }
  return 0;
}

/* px_filter_from_query, answering 400 when the query is bad. */
static bool px__filter(px_request_t *r, const px_query_t *q, px_filter_t *f, bool paged,
                       char *asn_buf, char *cc_buf, char *domain_buf, enum MHD_Result *ret) {
  char detail[160];
  if (px_filter_from_query(q, paged, f, asn_buf, cc_buf, domain_buf, detail, sizeof(detail)) == 0)
    return true;
  *ret = px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
  return false;
}

enum MHD_Result px_api_measurements(px_request_t *r, const px_query_t *q) {
  px_filter_t f;
  char asn[16], cc[3], domain[256], cursor[64], base[512];
  enum MHD_Result ret;
  json_t *results;
  if (!px__filter(r, q, &f, true, asn, cc, domain, &ret))
    return ret;
  if (px_store_list(r->c->store, &f, &results, cursor, sizeof(cursor)) != 0) {
    json_decref(results);
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", "query failed");
  }
  px_public_base(r, base, sizeof(base));
  size_t i;
  json_t *row;
  json_array_foreach(results, i, row) {
    char url[1024];
    snprintf(url, sizeof(url), "%s/api/v1/raw_measurement?measurement_uid=%s", base,
             json_string_value(json_object_get(row, "measurement_uid")));
    json_object_set_new(row, "measurement_url", json_string(url));
  }
  json_t *meta = json_object(), *doc = json_object();
  json_object_set_new(meta, "count", json_integer((json_int_t)json_array_size(results)));
  json_object_set_new(meta, "limit", json_integer(f.limit));
  json_object_set_new(meta, "next_cursor", cursor[0] ? json_string(cursor) : json_null());
  json_object_set_new(doc, "metadata", meta);
  json_object_set_new(doc, "results", results);
  return px_respond_json(r, MHD_HTTP_OK, doc);
}

/* The format parameter of raw_measurement and export.jsonl: absent (the
 * signed bytes, the export's wrapper) or "ooni". False after a 400. */
static bool px__format(px_request_t *r, const px_query_t *q, bool *ooni, enum MHD_Result *ret) {
  const char *v = px_query_get(q, "format");
  *ooni = false;
  if (v == NULL)
    return true;
  if (strcmp(v, "ooni") == 0) {
    *ooni = true;
    return true;
  }
  char detail[160];
  snprintf(detail, sizeof(detail),
           "format: \"ooni\", or none for the default; not \"%.32s\"", v);
  *ret = px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
  return false;
}

/* The stored content as OONI reads it (collector/http/ooni.h), or 500. */
static enum MHD_Result px__raw_ooni(px_request_t *r, const char *uid, const char *content,
                                    size_t len) {
  char *line;
  size_t n;
  int rc = px_ooni_line(uid, content, len, &line, &n);
  if (rc == -ENOMEM)
    return MHD_NO;
  if (rc != 0)
    return px_respond_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
                            "the stored content is not one compact JSON object");
  enum MHD_Result ret = px_respond(r, MHD_HTTP_OK, "application/json", line, n);
  free(line);
  return ret;
}

enum MHD_Result px_api_raw(px_request_t *r, const px_query_t *q, bool signature) {
  const char *uid = px_query_get(q, "measurement_uid");
  char *content = NULL, *sig = NULL, *key_id = NULL;
  size_t len = 0;
  enum MHD_Result ret;
  bool ooni = false;
  /* raw_measurement takes format=ooni too; the signature has one form. */
  bool has_format = !signature && px_query_get(q, "format") != NULL;
  if (uid == NULL || uid[0] == '\0' || q->n != (has_format ? 2u : 1u))
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            signature ? "give exactly one parameter: measurement_uid"
                                      : "give measurement_uid, and format=ooni or nothing else");
  if (has_format && !px__format(r, q, &ooni, &ret))
    return ret;
  int rc = px_store_get(r->c->store, uid, &content, &len, &sig, &key_id);
  if (rc == -ENOENT)
    ret = px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no measurement with that uid");
  else if (rc != 0)
    ret = px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", "lookup failed");
  else if (signature)
    ret = px_respond(r, MHD_HTTP_OK, "text/plain; charset=utf-8", sig, strlen(sig));
  else if (ooni)
    ret = px__raw_ooni(r, uid, content, len);
  else
    /* The exact signed bytes: no re-serialisation, no trailing newline. */
    ret = px_respond(r, MHD_HTTP_OK, "application/json", content, len);
  free(content);
  free(sig);
  free(key_id);
  return ret;
}

static int px__signer_line(void *data, const char *key_id, const char *pubkey, time_t first,
                           time_t last, time_t valid_before) {
  FILE *f = data;
  (void)first;
  (void)last;
  if (valid_before == 0) {
    fprintf(f, "%s namespaces=\"parallax-measurement-v1\" %s\n", key_id, pubkey);
    return 0;
  }
  /* A rotated key: OpenSSH's own option, in UTC (the Z), so ssh-keygen
   * -Y verify -Overify-time=<measurement time> accepts what it signed
   * before the rotation and nothing after. */
  char stamp[20];
  struct tm tm;
  gmtime_r(&valid_before, &tm);
  strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%SZ", &tm);
  fprintf(f, "%s namespaces=\"parallax-measurement-v1\",valid-before=\"%s\" %s\n", key_id, stamp,
          pubkey);
  return 0;
}

enum MHD_Result px_api_allowed_signers(px_request_t *r) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL)
    return MHD_NO;
  fputs("# parallax collector: every key that signed a stored measurement or was named\n"
        "# by a key rotation.\n"
        "# Verify one: ssh-keygen -Y verify -f allowed_signers -I <key_id> "
        "-n parallax-measurement-v1 -s m.json.sig < m.json\n"
        "# A rotated key has valid-before: add -Overify-time=<measurement_start_time as\n"
        "# YYYYMMDDHHMMSSZ> to verify what it signed before the rotation.\n", f);
  int rc = px_store_keys(r->c->store, px__signer_line, f);
  fclose(f);
  enum MHD_Result ret = rc == 0
      ? px_respond(r, MHD_HTTP_OK, "text/plain; charset=utf-8", buf, len)
      : px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", "query failed");
  free(buf);
  return ret;
}

/* Streaming export: rows are fetched in batches as MHD asks for bytes, so
 * a large export holds neither a big buffer nor a long read transaction.
 * A batch is at most PX__EXPORT_ROWS rows and, past its first row, at
 * most PX_STORE_EXPORT_BATCH_BYTES of content (the store stops there), so
 * however large the rows and however slowly the client reads, an export
 * holds about a MiB of JSON plus one row. At most --max-exports stream at
 * once. */
#define PX__EXPORT_ROWS 200

typedef struct {
  px_collector_t *c;
  px_store_export_t *rows;
  char *buf;
  size_t len, cap, off;
  bool done;
  bool ooni; /* format=ooni: the measurements themselves, uid added */
  bool csv;  /* observations.csv: a row per observation (collector/http/observations.h) */
} px__export_t;

/* Appends text (and, for a line, a newline) to the batch buffer. */
static int px__export_put(px__export_t *e, const char *text, size_t n, bool line) {
  if (e->len + n + 1 > e->cap) {
    size_t cap = e->cap ? e->cap : 65536;
    while (cap < e->len + n + 1)
      cap *= 2;
    char *b = realloc(e->buf, cap);
    if (b == NULL)
      return -ENOMEM;
    e->buf = b;
    e->cap = cap;
  }
  memcpy(e->buf + e->len, text, n);
  e->len += n;
  if (line)
    e->buf[e->len++] = '\n';
  return 0;
}

static int px__export_append(px__export_t *e, const char *text, size_t n) {
  return px__export_put(e, text, n, true);
}

static int px__export_raw(px__export_t *e, const char *text, size_t n) {
  return px__export_put(e, text, n, false);
}

/* A format=ooni line. A row that is not what upload stores (altered in
 * the database) is left out and said on stderr, not cut into the stream:
 * every line stays one OONI measurement. The default export still has it. */
static int px__export_ooni_row(px__export_t *e, const px_stored_row_t *row) {
  char *line;
  size_t n;
  int rc = px_ooni_line(row->uid, row->content, row->content_len, &line, &n);
  if (rc == -EINVAL) {
    fprintf(stderr, "parallax-collector: export: %s%s is not one compact JSON object; "
            "left out of format=ooni\n", px_ooni_uid_ok(row->uid) ? "measurement " : "a row",
            px_ooni_uid_ok(row->uid) ? row->uid : " with a malformed uid");
    return 0;
  }
  if (rc != 0)
    return rc;
  rc = px__export_append(e, line, n);
  free(line);
  return rc;
}

static int px__export_row(void *data, const px_stored_row_t *row) {
  px__export_t *e = data;
  if (e->ooni)
    return px__export_ooni_row(e, row);
  if (e->csv) {
    int rc = px_observations_csv(row->uid, row->content, row->content_len, &e->buf, &e->len,
                                 &e->cap);
    if (rc == -EINVAL)
      fprintf(stderr, "parallax-collector: observations.csv: a stored row is not a JSON object; "
                      "left out\n");
    return rc == -EINVAL ? 0 : rc;
  }
  char when[PX_TIME_ISO_LEN];
  json_t *line = json_object();
  px_time_format_iso(row->received_at, when);
  json_object_set_new(line, "measurement_uid", json_string(row->uid));
  json_object_set_new(line, "key_id", json_string(row->key_id));
  json_object_set_new(line, "content", px_json_string_lossy(row->content, row->content_len));
  json_object_set_new(line, "signature", json_string(row->signature));
  json_object_set_new(line, "received_at", json_string(when));
  char *text = px_json_dump(line);
  json_decref(line);
  if (text == NULL)
    return -ENOMEM;
  int rc = px__export_append(e, text, strlen(text));
  free(text);
  return rc;
}

static ssize_t px__export_read(void *cls, uint64_t pos, char *out, size_t max) {
  px__export_t *e = cls;
  (void)pos;
  if (e->off == e->len) {
    e->off = e->len = 0;
    /* A batch of large rows leaves a large buffer: not kept for the
     * (maybe slow) rest of the export. */
    if (e->cap > 2 * PX_STORE_EXPORT_BATCH_BYTES) {
      free(e->buf);
      e->buf = NULL;
      e->cap = 0;
    }
    if (e->done)
      return MHD_CONTENT_READER_END_OF_STREAM;
    /* Fewer rows than asked for is not the end: the store may have
     * stopped at its byte bound. Nor is a batch without a line (format=ooni
     * leaves malformed rows out). Only an empty batch is. */
    int n;
    do
      n = px_store_export_next(e->rows, PX__EXPORT_ROWS, px__export_row, e);
    while (n > 0 && e->len == 0);
    if (n < 0)
      return MHD_CONTENT_READER_END_WITH_ERROR;
    if (e->len == 0) {
      e->done = true;
      return MHD_CONTENT_READER_END_OF_STREAM;
    }
  }
  size_t k = e->len - e->off < max ? e->len - e->off : max;
  memcpy(out, e->buf + e->off, k);
  e->off += k;
  return (ssize_t)k;
}

static void px__export_free(void *cls) {
  px__export_t *e = cls;
  px_store_export_close(e->rows);
  atomic_fetch_sub(&e->c->exports, 1);
  free(e->buf);
  free(e);
}

/* export.jsonl and observations.csv: the same filters, streaming and
 * bounds, rows shaped by the endpoint. */
static enum MHD_Result px__export_start(px_request_t *r, const px_query_t *q, bool csv) {
  enum MHD_Result ret;
  px_filter_t f;
  char asn[16], cc[3], domain[256];
  bool ooni = false;
  if (!px__filter(r, q, &f, false, asn, cc, domain, &ret))
    return ret;
  if (csv && px_query_get(q, "format") != NULL)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "unknown parameter \"format\" (observations.csv has one form)");
  if (!csv && !px__format(r, q, &ooni, &ret))
    return ret;
  /* Each export holds its buffer and a thread for as long as its client
   * reads: a bounded number at once, whatever the store. */
  if (atomic_fetch_add(&r->c->exports, 1) >= r->c->cfg.max_exports) {
    atomic_fetch_sub(&r->c->exports, 1);
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                            "too many exports at once; try again later");
  }
  px__export_t *e = calloc(1, sizeof(*e));
  if (e == NULL) {
    atomic_fetch_sub(&r->c->exports, 1);
    return MHD_NO;
  }
  e->c = r->c;
  e->ooni = ooni;
  e->csv = csv;
  if (csv && px__export_raw(e, px_observations_csv_header, strlen(px_observations_csv_header)) != 0) {
    px__export_free(e);
    return MHD_NO;
  }
  /* The export copies the filter: the stream outlives the request. */
  int rc = px_store_export_open(r->c->store, &f, &e->rows);
  if (rc != 0) {
    px__export_free(e);
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                            rc == -EBUSY ? "too many exports at once; try again later"
                                         : "query failed");
  }
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, px__export_read, e, px__export_free);
  if (resp == NULL) {
    px__export_free(e);
    return MHD_NO;
  }
  px_response_headers(r, resp, csv ? "text/csv; charset=utf-8; header=present"
                                    : "application/x-ndjson");
  ret = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return ret;
}

enum MHD_Result px_api_export(px_request_t *r, const px_query_t *q) {
  return px__export_start(r, q, false);
}

enum MHD_Result px_api_observations(px_request_t *r, const px_query_t *q) {
  return px__export_start(r, q, true);
}

typedef struct {
  json_t *results;
  char base[512];
} px__quarantine_t;

static int px__quarantine_row(void *data, const char *uid, const char *reason, time_t at) {
  px__quarantine_t *q = data;
  char when[PX_TIME_ISO_LEN], url[1024];
  px_time_format_iso(at, when);
  snprintf(url, sizeof(url), "%s/api/v1/raw_measurement?measurement_uid=%s", q->base, uid);
  json_t *r = json_object();
  json_object_set_new(r, "measurement_uid", json_string(uid));
  json_object_set_new(r, "reason", px_json_string_lossy(reason, strlen(reason)));
  json_object_set_new(r, "quarantined_at", json_string(when));
  json_object_set_new(r, "measurement_url", json_string(url));
  json_array_append_new(q->results, r);
  return 0;
}

/* GET /api/v1/quarantine: what the analysis could not analyse, and why
 * (the measurements themselves stay stored and served). */
enum MHD_Result px_api_quarantine(px_request_t *r, const px_query_t *q) {
  unsigned long limit = 100;
  const char *v = px_query_get(q, "limit");
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->v[i].name, "limit") != 0)
      return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "the only parameter is limit");
  if (v != NULL) {
    char *end;
    limit = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || *end != '\0' || limit < 1 || limit > 1000)
      return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "limit: 1 to 1000");
  }
  px__quarantine_t data = {json_array(), ""};
  int64_t total = 0;
  px_public_base(r, data.base, sizeof(data.base));
  if (px_store_quarantined(r->c->store, (unsigned)limit, px__quarantine_row, &data, &total) != 0) {
    json_decref(data.results);
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", "query failed");
  }
  json_t *meta = json_object(), *doc = json_object();
  json_object_set_new(meta, "count", json_integer((json_int_t)json_array_size(data.results)));
  json_object_set_new(meta, "total", json_integer(total));
  json_object_set_new(meta, "limit", json_integer((json_int_t)limit));
  json_object_set_new(doc, "metadata", meta);
  json_object_set_new(doc, "results", data.results);
  return px_respond_json(r, MHD_HTTP_OK, doc);
}
