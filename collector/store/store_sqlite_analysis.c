/* The SQLite store's side of the analysis: reading measurements not yet
 * summarised, writing summaries through the writer thread, and the
 * per-domain reads of the comparison. One process writes the file, so
 * "analysed up to id N" is a sound watermark here. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "collector/store/store_sqlite_internal.h"
#include "collector/store/summary_rows.h"
#include "collector/analysis/summary.h"
#include "common/encoding.h"

/* One batch: what the analysis read and made of it, written by the
 * writer thread. The strings are owned copies: the reader's rows are gone
 * by then. A row with quarantine set is a quarantine, not a summary. */
typedef struct {
  px_summary_row_t row;
  bool claims_mismatch, awaiting_issuer, recheck;
  char *quarantine;
  px_blobs_t pool;
} px__result_t;

typedef struct {
  px__result_t *rows;
  size_t n, cap;
  int64_t up_to; /* the last id read, summarised or not */
  int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out);
  void *data;
} px__summaries_t;

static void px__summaries_free(px__summaries_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    px_summary_row_t *r = &b->rows[i].row;
    free((char *)r->uid);
    free((char *)r->key_id);
    free((char *)r->probe_cc);
    free((char *)r->probe_asn);
    free((char *)r->domain);
    free((char *)r->summary);
    free(b->rows[i].quarantine);
    px_blobs_free(&b->rows[i].pool);
  }
  free(b->rows);
}

static int px__summarize_row(px__summaries_t *b, const px_stored_t *m, bool recheck) {
  px_analysis_out_t out = {0};
  int rc = b->summarize(b->data, m, &out);
  if (!recheck)
    b->up_to = m->id;
  if (rc != 0 || (out.summary == NULL && out.quarantine == NULL && !recheck)) {
    free(out.summary);
    free(out.quarantine);
    px_blobs_free(&out.pool);
    return rc;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    px__result_t *rows = realloc(b->rows, cap * sizeof(*rows));
    if (rows == NULL) {
      free(out.summary);
      free(out.quarantine);
      px_blobs_free(&out.pool);
      return -ENOMEM;
    }
    b->rows = rows;
    b->cap = cap;
  }
  px__result_t *r = &b->rows[b->n++];
  *r = (px__result_t){
      .row = {.measurement_id = m->id,
              .uid = strdup(m->uid),
              .key_id = strdup(m->key_id),
              .probe_cc = strdup(m->probe_cc),
              .probe_asn = strdup(m->probe_asn),
              .domain = strdup(m->domain),
              .measurement_start_time = m->measurement_start_time,
              .summary = out.quarantine != NULL ? NULL : out.summary},
      .claims_mismatch = out.claims_mismatch,
      .awaiting_issuer = out.awaiting_issuer,
      .recheck = recheck,
      .quarantine = out.quarantine,
      .pool = out.pool,
  };
  if (out.quarantine != NULL)
    free(out.summary);
  if (!r->row.uid || !r->row.key_id || !r->row.probe_cc || !r->row.probe_asn || !r->row.domain)
    return -ENOMEM;
  return 0;
}

/* Reads up to max measurements to summarise: those waiting to be summarised
 * again (their chain lacked an issuer the pool now may have) first, then
 * those past the watermark. The writer thread is the only writer, so ids
 * commit in order and a watermark cannot skip a row. Returns how many
 * were read. */
static int px__read_unanalyzed(px__sqlite_t *s, unsigned max, px__summaries_t *b) {
  static const char *const sql[2] = {
      "SELECT m.id, m.uid, m.key_id, m.probe_cc, m.probe_asn, m.domain, "
      "m.measurement_start_time, m.content FROM analysis_recheck r JOIN measurements m "
      "ON m.id = r.measurement_id ORDER BY r.measurement_id LIMIT ?1",
      "SELECT id, uid, key_id, probe_cc, probe_asn, domain, measurement_start_time, content "
      "FROM measurements WHERE id > (SELECT last_id FROM analysis_state WHERE id = 1) "
      "ORDER BY id LIMIT ?1"};
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  int n = 0, rc = 0;
  for (int pass = 0; pass < 2 && rc == 0 && (unsigned)n < max; pass++) {
    sqlite3_stmt *st;
    int step = SQLITE_DONE;
    if (sqlite3_prepare_v2(db, sql[pass], -1, &st, NULL) != SQLITE_OK) {
      rc = -EIO;
      break;
    }
    sqlite3_bind_int64(st, 1, max - (unsigned)n);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
      px_stored_t m = {
          .id = sqlite3_column_int64(st, 0),
          .uid = (const char *)sqlite3_column_text(st, 1),
          .key_id = (const char *)sqlite3_column_text(st, 2),
          .probe_cc = (const char *)sqlite3_column_text(st, 3),
          .probe_asn = (const char *)sqlite3_column_text(st, 4),
          .domain = (const char *)sqlite3_column_text(st, 5),
          .measurement_start_time = (time_t)sqlite3_column_int64(st, 6),
          .content = sqlite3_column_blob(st, 7),
          .content_len = (size_t)sqlite3_column_bytes(st, 7),
      };
      rc = px__summarize_row(b, &m, pass == 0);
      n++;
    }
    /* A failed step (I/O error, busy) ends the loop like the last row;
     * the caller must not take a partial scan for a complete one. */
    if (rc == 0 && step != SQLITE_DONE)
      rc = -EIO;
    sqlite3_finalize(st);
  }
  px__store_reader_done(s, slot);
  return rc != 0 ? rc : n;
}

/* The pool's new certificates of one result, within PX_POOL_MAX. *grew
 * is set when one was new. */
static int px__write_pool(px__sqlite_t *s, const px_blobs_t *pool, int64_t *size, bool *grew) {
  sqlite3_stmt *st;
  if (pool->n == 0)
    return 0;
  if (sqlite3_prepare_v2(s->writer,
                         "INSERT OR IGNORE INTO intermediate_pool (sha256, der, added_at) "
                         "VALUES (?1, ?2, ?3)",
                         -1, &st, NULL) != SQLITE_OK)
    return -EIO;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < pool->n && *size < PX_POOL_MAX; i++) {
    uint8_t md[32];
    unsigned md_len;
    if (EVP_Digest(pool->v[i].data, pool->v[i].len, md, &md_len, EVP_sha256(), NULL) != 1) {
      rc = -EIO;
      break;
    }
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 1, md, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, pool->v[i].data, (int)pool->v[i].len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = -EIO;
    else if (sqlite3_changes(s->writer) > 0) {
      (*size)++;
      *grew = true;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

/* The first 16 bytes of the SHA-256 of a summary, in hex. */
static int px__digest(const char *summary, char out[33]) {
  uint8_t md[32];
  unsigned md_len;
  if (EVP_Digest(summary, strlen(summary), md, &md_len, EVP_sha256(), NULL) != 1)
    return -EIO;
  px_hex_encode(md, 16, out);
  return 0;
}

static int px__pool_size(px__sqlite_t *s, int64_t *size) {
  sqlite3_stmt *st;
  int rc = -EIO;
  if (sqlite3_prepare_v2(s->writer, "SELECT count(*) FROM intermediate_pool", -1, &st, NULL) ==
      SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) {
      *size = sqlite3_column_int64(st, 0);
      rc = 0;
    }
    sqlite3_finalize(st);
  }
  return rc;
}

static int px__write_summaries(px__sqlite_t *s, px__job_t *j) {
  px__summaries_t *b = j->arg;
  sqlite3_stmt *st = s->ins_summary, *q = NULL;
  int64_t pool_size = 0;
  bool grew = false;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < b->n; i++) {
    const px__result_t *res = &b->rows[i];
    const px_summary_row_t *r = &res->row;
    if (res->pool.n > 0 && pool_size == 0 && (rc = px__pool_size(s, &pool_size)) != 0)
      break;
    if ((rc = px__write_pool(s, &res->pool, &pool_size, &grew)) != 0)
      break;
    if (res->recheck) {
      char sql[96];
      snprintf(sql, sizeof(sql), "DELETE FROM analysis_recheck WHERE measurement_id = %lld",
               (long long)r->measurement_id);
      if (sqlite3_exec(s->writer, sql, NULL, NULL, NULL) != SQLITE_OK) {
        rc = -EIO;
        break;
      }
      if (r->summary == NULL && res->quarantine == NULL)
        continue;
    }
    if (res->quarantine != NULL) {
      if (q == NULL &&
          sqlite3_prepare_v2(s->writer,
                             "INSERT OR REPLACE INTO quarantine (measurement_id, uid, reason, "
                             "quarantined_at) VALUES (?1, ?2, ?3, ?4)",
                             -1, &q, NULL) != SQLITE_OK)
        return -EIO;
      sqlite3_reset(q);
      sqlite3_bind_int64(q, 1, r->measurement_id);
      sqlite3_bind_text(q, 2, r->uid, -1, SQLITE_STATIC);
      sqlite3_bind_text(q, 3, res->quarantine, -1, SQLITE_STATIC);
      sqlite3_bind_int64(q, 4, (sqlite3_int64)time(NULL));
      rc = sqlite3_step(q) == SQLITE_DONE ? 0 : -EIO;
      if (rc == 0 && res->recheck) {
        /* Summarised before, quarantined now: the old summary goes. */
        char sql[96];
        snprintf(sql, sizeof(sql), "DELETE FROM summaries WHERE measurement_id = %lld",
                 (long long)r->measurement_id);
        rc = sqlite3_exec(s->writer, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
      }
      continue;
    }
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, r->measurement_id);
    sqlite3_bind_text(st, 2, r->uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->probe_cc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->probe_asn, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->domain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->measurement_start_time);
    sqlite3_bind_text(st, 8, r->summary, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, res->claims_mismatch ? 1 : 0);
    sqlite3_bind_int(st, 10, res->awaiting_issuer ? 1 : 0);
    char digest[33];
    if ((rc = px__digest(r->summary, digest)) != 0)
      break;
    sqlite3_bind_text(st, 11, digest, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = -EIO;
  }
  sqlite3_finalize(q);
  /* A bigger pool may complete chains that lacked an issuer: those
   * measurements (this batch's included) are summarised again. */
  if (rc == 0 && grew &&
      sqlite3_exec(s->writer,
                   "INSERT OR IGNORE INTO analysis_recheck SELECT measurement_id FROM summaries "
                   "WHERE awaiting_issuer = 1",
                   NULL, NULL, NULL) != SQLITE_OK)
    rc = -EIO;
  if (rc != 0)
    return rc;
  sqlite3_reset(s->set_analyzed);
  sqlite3_bind_int64(s->set_analyzed, 1, b->up_to);
  return sqlite3_step(s->set_analyzed) == SQLITE_DONE ? 0 : -EIO;
}

int px__sq_analyze(px_store_t *base, unsigned max,
                   int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                   void *data) {
  px__sqlite_t *s = px__sq(base);
  px__summaries_t b = {.summarize = summarize, .data = data};
  int n = px__read_unanalyzed(s, max, &b);
  if (n > 0) {
    px__job_t job = {.write = px__write_summaries, .arg = &b};
    int rc = px__store_run(s, &job);
    if (rc != 0)
      n = rc;
  }
  px__summaries_free(&b);
  return n;
}

/* The one integer sql reads, through a reader connection; -EIO when
 * there is no row. */
static int px__sq_read_i64(px__sqlite_t *s, const char *sql, int64_t *out) {
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int rc = -EIO;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = 0;
    }
    sqlite3_finalize(st);
  }
  px__store_reader_done(s, slot);
  return rc;
}

int px__sq_analysis_mark(px_store_t *base, int64_t *mark) {
  return px__sq_read_i64(px__sq(base), "SELECT coalesce(max(id), 0) FROM measurements", mark);
}

int px__sq_analysis_reached(px_store_t *base, int64_t mark, bool *reached) {
  int64_t last_id;
  int rc = px__sq_read_i64(px__sq(base), "SELECT last_id FROM analysis_state WHERE id = 1",
                           &last_id);
  if (rc == 0)
    *reached = last_id >= mark;
  return rc;
}

/* One read transaction: the window's rows from the covering index
 * summaries_window (no texts), then the texts of just the rows that carry
 * one (collector/store/summary_rows.h), each by its primary key. */
int px__sq_summaries(px_store_t *base, const char *domain, time_t since, time_t until,
                     bool latest_per_key, int (*cb)(void *data, const px_summary_row_t *row),
                     void *data) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st = NULL, *text = NULL;
  px_summary_rows_t rows;
  px_summary_rows_init(&rows, latest_per_key);
  int rc = 0, step = SQLITE_DONE;
  if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
    px__store_reader_done(s, slot);
    return -EIO;
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT measurement_id, uid, key_id, probe_cc, probe_asn, "
                         "measurement_start_time, coalesce(digest, '') FROM summaries "
                         "INDEXED BY summaries_window WHERE domain = ?1 AND "
                         "measurement_start_time >= ?2 AND measurement_start_time < ?3 "
                         "ORDER BY measurement_start_time",
                         -1, &st, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "SELECT summary FROM summaries WHERE measurement_id = ?1", -1, &text,
                         NULL) != SQLITE_OK)
    rc = -EIO;
  if (rc == 0) {
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since);
    sqlite3_bind_int64(st, 3, until);
  }
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    px_summary_row_t r = {
        .measurement_id = sqlite3_column_int64(st, 0),
        .uid = (const char *)sqlite3_column_text(st, 1),
        .key_id = (const char *)sqlite3_column_text(st, 2),
        .probe_cc = (const char *)sqlite3_column_text(st, 3),
        .probe_asn = (const char *)sqlite3_column_text(st, 4),
        .domain = domain,
        .measurement_start_time = (time_t)sqlite3_column_int64(st, 5),
        .digest = (const char *)sqlite3_column_text(st, 6),
    };
    rc = px_summary_rows_add(&rows, &r);
  }
  /* A failed step (I/O error, busy) ends the loop like the last row;
   * the caller must not take a partial scan for a complete one. */
  if (rc == 0 && step != SQLITE_DONE)
    rc = -EIO;
  if (rc == 0)
    rc = px_summary_rows_pick(&rows);
  px_summary_row_t *row;
  for (size_t i = 0; rc == 0 && px_summary_rows_next_carrier(&rows, &i, &row);) {
    sqlite3_reset(text);
    sqlite3_bind_int64(text, 1, row->measurement_id);
    step = sqlite3_step(text);
    if (step == SQLITE_ROW)
      rc = px_summary_rows_set_text(&rows, row, (const char *)sqlite3_column_text(text, 0),
                                    (size_t)sqlite3_column_bytes(text, 0));
    else if (step != SQLITE_DONE)
      rc = -EIO;
  }
  sqlite3_finalize(st);
  sqlite3_finalize(text);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  px__store_reader_done(s, slot);
  /* The connection is back before the callbacks: they may be slow. */
  if (rc == 0)
    rc = px_summary_rows_emit(&rows, cb, data);
  px_summary_rows_free(&rows);
  return rc;
}

typedef struct {
  int version;
  bool requeued;
} px__version_t;

/* Runs in the writer thread: one transaction. */
static int px__write_version(px__sqlite_t *s, px__job_t *j) {
  px__version_t *v = j->arg;
  sqlite3_stmt *st;
  int stored = 0, rc = -EIO;
  if (sqlite3_prepare_v2(s->writer, "SELECT version FROM analysis_version WHERE id = 1", -1, &st,
                         NULL) != SQLITE_OK)
    return -EIO;
  if (sqlite3_step(st) == SQLITE_ROW) {
    stored = sqlite3_column_int(st, 0);
    rc = 0;
  }
  sqlite3_finalize(st);
  if (rc != 0 || stored >= v->version)
    return rc;
  char sql[256];
  snprintf(sql, sizeof(sql),
           "DELETE FROM summaries; DELETE FROM quarantine; DELETE FROM analysis_recheck; "
           "UPDATE analysis_state SET last_id = 0 WHERE id = 1; "
           "UPDATE analysis_version SET version = %d WHERE id = 1;",
           v->version);
  if (sqlite3_exec(s->writer, sql, NULL, NULL, NULL) != SQLITE_OK)
    return -EIO;
  v->requeued = true;
  return 0;
}

int px__sq_analysis_version(px_store_t *base, int version, bool *requeued) {
  px__sqlite_t *s = px__sq(base);
  px__version_t v = {version, false};
  px__job_t job = {.write = px__write_version, .arg = &v};
  int rc = px__store_run(s, &job);
  *requeued = rc == 0 && v.requeued;
  return rc;
}

int px__sq_quarantined(px_store_t *base, unsigned limit,
                       int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                       void *data, int64_t *total) {
  px__sqlite_t *s = px__sq(base);
  int rc = px__sq_read_i64(s, "SELECT count(*) FROM quarantine", total);
  if (rc != 0 || limit == 0)
    return rc;
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int step = SQLITE_DONE;
  if (sqlite3_prepare_v2(db,
                         "SELECT uid, reason, quarantined_at FROM quarantine "
                         "ORDER BY quarantined_at DESC, measurement_id DESC LIMIT ?1",
                         -1, &st, NULL) != SQLITE_OK) {
    px__store_reader_done(s, slot);
    return -EIO;
  }
  sqlite3_bind_int64(st, 1, limit);
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
    rc = cb(data, (const char *)sqlite3_column_text(st, 0),
            (const char *)sqlite3_column_text(st, 1), (time_t)sqlite3_column_int64(st, 2));
  if (rc == 0 && step != SQLITE_DONE)
    rc = -EIO;
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

int px__sq_pool(px_store_t *base, int (*cb)(void *data, const uint8_t *der, size_t n), void *data) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int rc = 0, step = SQLITE_DONE;
  if (sqlite3_prepare_v2(db, "SELECT der FROM intermediate_pool ORDER BY added_at, rowid", -1, &st,
                         NULL) != SQLITE_OK) {
    px__store_reader_done(s, slot);
    return -EIO;
  }
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
    rc = cb(data, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
  if (rc == 0 && step != SQLITE_DONE)
    rc = -EIO;
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

typedef struct {
  const px_blob_t *certs;
  size_t n;
} px__pool_job_t;

static int px__write_pool_job(px__sqlite_t *s, px__job_t *j) {
  px__pool_job_t *p = j->arg;
  px_blobs_t blobs = {(px_blob_t *)p->certs, p->n, p->n};
  int64_t size = 0;
  bool grew = false;
  int rc = px__pool_size(s, &size);
  return rc != 0 ? rc : px__write_pool(s, &blobs, &size, &grew);
}

int px__sq_pool_add(px_store_t *base, const px_blob_t *certs, size_t n) {
  px__pool_job_t p = {certs, n};
  px__job_t job = {.write = px__write_pool_job, .arg = &p};
  return px__store_run(px__sq(base), &job);
}
