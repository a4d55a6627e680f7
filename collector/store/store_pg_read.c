/* The PostgreSQL store's reads for the researcher API: one measurement by
 * uid, keyset pages, the key list, the export stream, counts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/store/store_pg_internal.h"
#include "common/timeutil.h"

static char *px__pg_dup(PGresult *r, int row, int col, size_t *len) {
  int n = PQgetlength(r, row, col);
  char *out = malloc((size_t)n + 1);
  if (out == NULL)
    return NULL;
  memcpy(out, PQgetvalue(r, row, col), (size_t)n);
  out[n] = '\0';
  if (len != NULL)
    *len = (size_t)n;
  return out;
}

int px__pg_get(px_store_t *base, const char *uid, char **content, size_t *content_len,
               char **signature, char **key_id) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  px__pg_args_t a = {0};
  px__pg_text(&a, uid);
  /* Binary results: the content comes back as its bytes, not hex. */
  PGresult *r = px__pg_run(c, PX__PG_GET, &a, true);
  if (!px__pg_ok(c, r, PGRES_TUPLES_OK, "get")) {
    rc = -EIO;
  } else if (PQntuples(r) == 0) {
    rc = -ENOENT;
  } else {
    *content = px__pg_dup(r, 0, 0, content_len);
    *signature = px__pg_dup(r, 0, 1, NULL);
    *key_id = px__pg_dup(r, 0, 2, NULL);
    rc = (*content && *signature && *key_id) ? 0 : -ENOMEM;
  }
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}

/* The filters of f as " AND col = $n" clauses (numbered from 1) with
 * their values in a; returns which filters are set (bits 0-6), which
 * names the prepared statement: the SQL is a function of that mask. */
static unsigned px__pg_where(const px_filter_t *f, char *sql, size_t n, px__pg_args_t *a) {
  static const char *const cols[] = {"probe_cc", "probe_asn", "domain", "test_name", "key_id"};
  const char *vals[] = {f->probe_cc, f->probe_asn, f->domain, f->test_name, f->key_id};
  unsigned mask = 0;
  sql[0] = '\0';
  for (int i = 0; i < 5; i++) {
    if (vals[i] == NULL)
      continue;
    px__pg_text(a, vals[i]);
    snprintf(sql + strlen(sql), n - strlen(sql), " AND %s = $%d", cols[i], a->n);
    mask |= 1u << i;
  }
  if (f->has_since) {
    px__pg_i64(a, f->since);
    snprintf(sql + strlen(sql), n - strlen(sql), " AND measurement_start_time >= $%d", a->n);
    mask |= 1u << 5;
  }
  if (f->has_until) {
    px__pg_i64(a, f->until);
    snprintf(sql + strlen(sql), n - strlen(sql), " AND measurement_start_time < $%d", a->n);
    mask |= 1u << 6;
  }
  return mask;
}

/* Newest first, keyset on (measurement_start_time, id): the page after a
 * cursor costs what the first one does, however deep. The redundant
 * "measurement_start_time <= cursor" lets the planner skip the newer
 * partitions (it does not prune on a row comparison). */
int px__pg_list(px_store_t *base, const px_filter_t *f, json_t **results, char *next_cursor,
                size_t cursor_len) {
  px__pg_t *s = px__pgs(base);
  px__pg_args_t a = {0};
  char where[512], sql[2048], name[32];
  unsigned limit = f->limit ? f->limit : 100;
  unsigned mask = px__pg_where(f, where, sizeof(where), &a);
  int k = a.n;
  snprintf(sql, sizeof(sql),
           "SELECT id, uid, input, probe_cc, probe_asn, test_name, measurement_start_time, "
           "key_id, geo_mismatch, "
           "coalesce((SELECT s.claims_mismatch FROM summaries s WHERE s.measurement_start_time = "
           "measurements.measurement_start_time AND s.measurement_id = measurements.id), false), "
           "EXISTS (SELECT 1 FROM quarantine x WHERE x.measurement_start_time = "
           "measurements.measurement_start_time AND x.measurement_id = measurements.id), "
           "EXISTS (SELECT 1 FROM analysis_queue q WHERE q.measurement_id = measurements.id) "
           "FROM measurements WHERE true%s AND measurement_start_time <= $%d "
           "AND (measurement_start_time, id) < ($%d, $%d) "
           "ORDER BY measurement_start_time DESC, id DESC LIMIT $%d",
           where, k + 1, k + 1, k + 2, k + 3);
  snprintf(name, sizeof(name), "list_%u", mask);
  px__pg_i64(&a, f->has_cursor ? f->cursor_time : INT64_MAX);
  px__pg_i64(&a, f->has_cursor ? f->cursor_id : INT64_MAX);
  /* One extra row says whether there is a next page. */
  px__pg_i64(&a, (int64_t)limit + 1);
  next_cursor[0] = '\0';
  *results = json_array();
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  rc = px__pg_prepare_once(c, c->list_prepared, mask, name, sql);
  PGresult *r = rc == 0 ? px__pg_run_named(c, name, &a, false) : NULL;
  if (rc == 0 && !px__pg_ok(c, r, PGRES_TUPLES_OK, "list"))
    rc = -EIO;
  int rows = rc == 0 ? PQntuples(r) : 0;
  for (int i = 0; i < rows; i++) {
    if ((unsigned)i == limit) {
      px_cursor_encode(px__pg_get_i64(r, i - 1, 6), px__pg_get_i64(r, i - 1, 0), next_cursor,
                       cursor_len);
      break;
    }
    char mst[PX_TIME_OONI_LEN];
    px_time_format_ooni((time_t)px__pg_get_i64(r, i, 6), mst);
    json_t *o = json_object();
    json_object_set_new(o, "measurement_uid", json_string(PQgetvalue(r, i, 1)));
    json_object_set_new(o, "input", json_string(PQgetvalue(r, i, 2)));
    json_object_set_new(o, "probe_cc", json_string(PQgetvalue(r, i, 3)));
    json_object_set_new(o, "probe_asn", json_string(PQgetvalue(r, i, 4)));
    json_object_set_new(o, "test_name", json_string(PQgetvalue(r, i, 5)));
    json_object_set_new(o, "measurement_start_time", json_string(mst));
    json_object_set_new(o, "key_id", json_string(PQgetvalue(r, i, 7)));
    json_object_set_new(o, "geo_mismatch", json_boolean(px__pg_get_bool(r, i, 8)));
    json_object_set_new(o, "analysis",
                        json_string(px__pg_get_bool(r, i, 10)   ? "quarantined"
                                    : px__pg_get_bool(r, i, 11) ? "pending"
                                                                : "analysed"));
    json_object_set_new(o, "claims_mismatch", json_boolean(px__pg_get_bool(r, i, 9)));
    json_array_append_new(*results, o);
  }
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}

int px__pg_keys(px_store_t *base,
                int (*cb)(void *data, const char *key_id, const char *pubkey, time_t first_seen,
                          time_t last_seen, time_t valid_before),
                void *data) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  PGresult *r = px__pg_run(c, PX__PG_KEYS, NULL, false);
  rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "keys") ? 0 : -EIO;
  /* The rows are all in r: the connection goes back before the callbacks. */
  px__pg_release(s, c);
  for (int i = 0; rc == 0 && i < PQntuples(r); i++)
    rc = cb(data, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), (time_t)px__pg_get_i64(r, i, 2),
            (time_t)px__pg_get_i64(r, i, 3), (time_t)px__pg_get_i64(r, i, 4));
  PQclear(r);
  return rc;
}

int px__pg_count(px_store_t *base, int64_t *measurements, int64_t *keys) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  PGresult *r = px__pg_run(c, PX__PG_COUNT, NULL, false);
  rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "count") && PQntuples(r) == 1 ? 0 : -EIO;
  if (rc == 0) {
    *measurements = px__pg_get_i64(r, 0, 0);
    *keys = px__pg_get_i64(r, 0, 1);
  }
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}

/* ---- export ----------------------------------------------------------------- */

/* An export reads one REPEATABLE READ snapshot, taken when it opens,
 * through all its batches: rows that commit out of id order (several
 * writers) can neither be passed over nor appear halfway. Oldest first
 * means by measurement_start_time, then id: the partitions' own order. */
typedef struct {
  px_store_export_t base;
  px__pgconn_t *c;
  px_filter_t f;
  int64_t after_time, after_id;
} px__pg_export_t;

int px__pg_export_open(px_store_t *base, const px_filter_t *f, px_store_export_t **out) {
  px__pg_t *s = px__pgs(base);
  if (f->after_id != 0)
    return -EOPNOTSUPP; /* pages on (time, id), not on id */
  int rc = px__pg_export_slot(s);
  if (rc != 0)
    return rc;
  px__pg_export_t *e = calloc(1, sizeof(*e));
  if (e == NULL || px_filter_dup(&e->f, f) != 0) {
    free(e);
    px__pg_export_slot_done(s);
    return -ENOMEM;
  }
  e->base.store = base;
  e->after_time = INT64_MIN;
  e->after_id = -1;
  e->c = px__pg_checkout(s, &rc);
  if (e->c != NULL) {
    rc = px__pg_exec(e->c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    /* The snapshot is taken by the first query, not by BEGIN: now. */
    PGresult *r = rc == 0 ? PQexec(e->c->conn, "SELECT 1") : NULL;
    if (rc == 0 && !px__pg_ok(e->c, r, PGRES_TUPLES_OK, "export"))
      rc = -EIO;
    PQclear(r);
  }
  if (rc != 0) {
    px__pg_export_close(&e->base);
    return rc;
  }
  *out = &e->base;
  return 0;
}

int px__pg_export_next(px_store_export_t *base, unsigned max,
                       int (*cb)(void *data, const px_stored_row_t *row), void *data) {
  px__pg_export_t *e = (px__pg_export_t *)base;
  px__pg_args_t a = {0};
  char where[512], sql[2048], name[32];
  unsigned mask = px__pg_where(&e->f, where, sizeof(where), &a);
  int k = a.n;
  /* libpq holds a whole result in memory, so the byte bound is applied
   * by the server: the running total of the contents before each row
   * (octet_length reads a TOASTed value's size, not the value), and only
   * rows that start below the bound are sent. */
  snprintf(sql, sizeof(sql),
           "SELECT id, uid, key_id, content, signature, received_at, measurement_start_time, "
           "geo_mismatch, uploader_cc, content_sha256 FROM ("
           "SELECT id, uid, key_id, content, signature, received_at, measurement_start_time, "
           "geo_mismatch, uploader_cc, content_sha256, sum(octet_length(content)) OVER "
           "(ORDER BY measurement_start_time, id ROWS UNBOUNDED PRECEDING) "
           "- octet_length(content) AS before FROM measurements WHERE true%s "
           "AND measurement_start_time >= $%d AND (measurement_start_time, id) > ($%d, $%d) "
           "ORDER BY measurement_start_time, id LIMIT $%d) batch "
           "WHERE before < $%d ORDER BY measurement_start_time, id",
           where, k + 1, k + 1, k + 2, k + 3, k + 4);
  snprintf(name, sizeof(name), "export_%u", mask);
  px__pg_i64(&a, e->after_time);
  px__pg_i64(&a, e->after_id);
  px__pg_i64(&a, max);
  px__pg_i64(&a, (int64_t)PX_STORE_EXPORT_BATCH_BYTES);
  int rc = px__pg_prepare_once(e->c, e->c->export_prepared, mask, name, sql);
  if (rc != 0)
    return rc;
  PGresult *r = px__pg_run_named(e->c, name, &a, true);
  if (!px__pg_ok(e->c, r, PGRES_TUPLES_OK, "export")) {
    PQclear(r);
    return -EIO;
  }
  int n = PQntuples(r);
  for (int i = 0; rc == 0 && i < n; i++) {
    bool flagged = px__pg_get_bool(r, i, 7);
    px_stored_row_t row = {
        .id = px__pg_get_i64(r, i, 0),
        .uid = PQgetvalue(r, i, 1),
        .key_id = PQgetvalue(r, i, 2),
        .content = PQgetvalue(r, i, 3),
        .content_len = (size_t)PQgetlength(r, i, 3),
        .signature = PQgetvalue(r, i, 4),
        .received_at = (time_t)px__pg_get_i64(r, i, 5),
        .measurement_start_time = (time_t)px__pg_get_i64(r, i, 6),
        .geo_mismatch = flagged,
        .uploader_cc = flagged && !PQgetisnull(r, i, 8) ? PQgetvalue(r, i, 8) : NULL,
        .content_sha256 = (const uint8_t *)PQgetvalue(r, i, 9),
    };
    e->after_time = row.measurement_start_time;
    e->after_id = row.id;
    rc = cb(data, &row);
  }
  PQclear(r);
  return rc != 0 ? rc : n;
}

void px__pg_export_close(px_store_export_t *base) {
  px__pg_export_t *e = (px__pg_export_t *)base;
  px__pg_t *s = px__pgs(base->store);
  if (e->c != NULL) {
    if (PQstatus(e->c->conn) == CONNECTION_OK &&
        PQtransactionStatus(e->c->conn) != PQTRANS_IDLE)
      px__pg_exec(e->c, "ROLLBACK");
    px__pg_release(s, e->c);
  }
  px_filter_free(&e->f);
  free(e);
  px__pg_export_slot_done(s);
}
