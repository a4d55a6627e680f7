/* The PostgreSQL store's side of the analysis. Every stored measurement
 * has a row in analysis_queue, written in the transaction that stored it;
 * a worker (the analysis thread of any node) takes a batch with FOR
 * UPDATE SKIP LOCKED, so workers never wait for or repeat each other,
 * and deletes it in the transaction that writes the summaries. A worker
 * that dies mid-batch rolls back and its rows are taken again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/store/store_pg_internal.h"
#include "collector/store/summary_rows.h"
#include "collector/analysis/summary.h"

/* Summarises what QUEUE_TAKE returned and writes it, inside the open
 * transaction; *done gets the queue entries as an array literal. */
/* Adds certificates to the pool inside the open transaction; *grew when
 * one was new. */
static int px__pg_pool_write(px__pgconn_t *c, const px_blob_t *certs, size_t n, bool *grew) {
  for (size_t i = 0; i < n; i++) {
    px__pg_args_t a = {0};
    px__pg_bin(&a, certs[i].data, certs[i].len);
    px__pg_i64(&a, (int64_t)time(NULL));
    px__pg_i64(&a, PX_POOL_MAX);
    PGresult *w = px__pg_run(c, PX__PG_POOL_ADD, &a, false);
    bool ok = px__pg_ok(c, w, PGRES_COMMAND_OK, "intermediate pool");
    if (ok && strcmp(PQcmdTuples(w), "0") != 0)
      *grew = true;
    PQclear(w);
    if (!ok)
      return -EIO;
  }
  return 0;
}

static int px__pg_summarize_batch(px__pgconn_t *c, PGresult *r,
                                  int (*summarize)(void *data, const px_stored_t *m,
                                                   px_analysis_out_t *out),
                                  void *data, char *done, size_t done_len, bool *grew) {
  size_t used = 0;
  int rc = 0;
  done[used++] = '{';
  for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
    int64_t seq = px__pg_get_i64(r, i, 0);
    used += (size_t)snprintf(done + used, done_len - used, "%s%" PRId64, i ? "," : "", seq);
    if (PQgetisnull(r, i, 2))
      continue; /* the measurement is gone: nothing to summarise */
    px_stored_t m = {
        .id = px__pg_get_i64(r, i, 1),
        .uid = PQgetvalue(r, i, 2),
        .key_id = PQgetvalue(r, i, 3),
        .probe_cc = PQgetvalue(r, i, 4),
        .probe_asn = PQgetvalue(r, i, 5),
        .domain = PQgetvalue(r, i, 6),
        .measurement_start_time = (time_t)px__pg_get_i64(r, i, 7),
        .content = PQgetvalue(r, i, 8),
        .content_len = (size_t)PQgetlength(r, i, 8),
    };
    px_analysis_out_t out = {0};
    if ((rc = summarize(data, &m, &out)) == 0)
      rc = px__pg_pool_write(c, out.pool.v, out.pool.n, grew);
    if (rc == 0 && (out.summary != NULL || out.quarantine != NULL)) {
      px__pg_args_t a = {0};
      px__pg_i64(&a, m.measurement_start_time);
      px__pg_i64(&a, m.id);
      px__pg_text(&a, m.uid);
      PGresult *w;
      if (out.quarantine != NULL) {
        px__pg_text(&a, out.quarantine);
        px__pg_i64(&a, (int64_t)time(NULL));
        w = px__pg_run(c, PX__PG_QUARANTINE, &a, false);
      } else {
        px__pg_text(&a, m.key_id);
        px__pg_text(&a, m.probe_cc);
        px__pg_text(&a, m.probe_asn);
        px__pg_text(&a, m.domain);
        px__pg_text(&a, out.summary);
        px__pg_text(&a, out.claims_mismatch ? "true" : "false");
        px__pg_text(&a, out.awaiting_issuer ? "true" : "false");
        w = px__pg_run(c, PX__PG_SUMMARY_ADD, &a, false);
      }
      if (!px__pg_ok(c, w, PGRES_COMMAND_OK, "summary"))
        rc = -EIO;
      PQclear(w);
    }
    free(out.summary);
    free(out.quarantine);
    px_blobs_free(&out.pool);
  }
  snprintf(done + used, done_len - used, "}");
  return rc;
}

/* A drained backlog leaves the queue's index full of dead entries at the
 * end that the catch-up checks (max(seq), "any seq <= mark") and the next
 * take walk first: after a migration of a million rows each of those took
 * 11-16 ms instead of 0.1 until autovacuum came by. So the node that
 * deleted them vacuums the queue every so many deletions (lazy VACUUM:
 * it blocks neither readers nor writers; SKIP_LOCKED: never waits). */
#define PX__PG_QUEUE_VACUUM_EVERY 20000

static void px__pg_queue_vacuum(px__pg_t *s, px__pgconn_t *c, int deleted) {
  int64_t dead = atomic_fetch_add(&s->queue_dead, deleted) + deleted;
  if (dead < PX__PG_QUEUE_VACUUM_EVERY)
    return;
  atomic_store(&s->queue_dead, 0);
  /* A failure is only a missed optimisation: autovacuum remains. */
  (void)px__pg_exec(c, "VACUUM (SKIP_LOCKED) analysis_queue");
}

int px__pg_analyze(px_store_t *base, unsigned max,
                   int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                   void *data) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  size_t done_len = (size_t)max * 21 + 3;
  char *done = malloc(done_len);
  PGresult *r = NULL;
  int n = 0;
  bool grew = false;
  rc = done != NULL ? px__pg_exec(c, "BEGIN") : -ENOMEM;
  if (rc == 0) {
    px__pg_args_t a = {0};
    px__pg_i64(&a, max);
    /* Binary: the content as its bytes. */
    r = px__pg_run(c, PX__PG_QUEUE_TAKE, &a, true);
    rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "analysis queue") ? 0 : -EIO;
  }
  if (rc == 0 && (n = PQntuples(r)) > 0)
    rc = px__pg_summarize_batch(c, r, summarize, data, done, done_len, &grew);
  PQclear(r);
  if (rc == 0 && n > 0) {
    px__pg_args_t a = {0};
    px__pg_text(&a, done);
    r = px__pg_run(c, PX__PG_QUEUE_DONE, &a, false);
    rc = px__pg_ok(c, r, PGRES_COMMAND_OK, "analysis queue") ? 0 : -EIO;
    PQclear(r);
  }
  /* A bigger pool may complete chains that lacked an issuer: those
   * measurements (this batch's included, now out of the queue) go back
   * into it, in the same transaction. */
  if (rc == 0 && grew) {
    r = px__pg_run(c, PX__PG_RECHECK, NULL, false);
    rc = px__pg_ok(c, r, PGRES_COMMAND_OK, "analysis recheck") ? 0 : -EIO;
    PQclear(r);
  }
  if (rc == 0)
    rc = px__pg_exec(c, "COMMIT");
  else if (PQstatus(c->conn) == CONNECTION_OK &&
           PQtransactionStatus(c->conn) != PQTRANS_IDLE)
    px__pg_exec(c, "ROLLBACK");
  if (rc == 0 && n > 0)
    px__pg_queue_vacuum(s, c, n);
  px__pg_release(s, c);
  free(done);
  return rc != 0 ? rc : n;
}

/* The newest queue entry anyone has committed. An entry committed later
 * with a lower number (several writers) is waited for too: harmless. */
int px__pg_analysis_mark(px_store_t *base, int64_t *mark) {
  PGresult *r = NULL;
  int rc = px__pg_one_row(px__pgs(base), false, PX__PG_MARK, NULL, "analysis mark", &r);
  if (rc == 0 && r != NULL) {
    *mark = px__pg_get_i64(r, 0, 0);
    PQclear(r);
  }
  return rc;
}

int px__pg_analysis_reached(px_store_t *base, int64_t mark, bool *reached) {
  px__pg_args_t a = {0};
  px__pg_i64(&a, mark);
  PGresult *r = NULL;
  int rc = px__pg_one_row(px__pgs(base), false, PX__PG_REACHED, &a, "analysis progress", &r);
  if (rc == 0 && r != NULL) {
    *reached = px__pg_get_bool(r, 0, 0);
    PQclear(r);
  }
  return rc;
}

/* "{a,b,c}" of the carriers' times (times) or ids, malloc'ed. */
static char *px__pg_carrier_array(const px_summary_rows_t *rows, bool times) {
  size_t cap = 64, len = 0;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  out[len++] = '{';
  px_summary_row_t *row;
  for (size_t i = 0; px_summary_rows_next_carrier(rows, &i, &row);) {
    if (cap - len < 32) {
      char *bigger = realloc(out, cap *= 2);
      if (bigger == NULL) {
        free(out);
        return NULL;
      }
      out = bigger;
    }
    len += (size_t)snprintf(out + len, cap - len, "%s%" PRId64, len > 1 ? "," : "",
                            times ? (int64_t)row->measurement_start_time : row->measurement_id);
  }
  out[len++] = '}';
  out[len] = '\0';
  return out;
}

/* One read-only snapshot: the window's rows without texts, then the texts
 * of just the rows that carry one (collector/store/summary_rows.h). */
int px__pg_summaries(px_store_t *base, const char *domain, time_t since, time_t until,
                     bool latest_per_key, int (*cb)(void *data, const px_summary_row_t *row),
                     void *data) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  px_summary_rows_t rows;
  px_summary_rows_init(&rows, latest_per_key);
  rc = px__pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  PGresult *r = NULL;
  if (rc == 0) {
    px__pg_args_t a = {0};
    px__pg_text(&a, domain);
    px__pg_i64(&a, since);
    px__pg_i64(&a, until);
    r = px__pg_run(c, PX__PG_SUMMARIES, &a, false);
    rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "summaries") ? 0 : -EIO;
  }
  for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
    px_summary_row_t row = {
        .measurement_id = px__pg_get_i64(r, i, 0),
        .uid = PQgetvalue(r, i, 1),
        .key_id = PQgetvalue(r, i, 2),
        .probe_cc = PQgetvalue(r, i, 3),
        .probe_asn = PQgetvalue(r, i, 4),
        .domain = domain,
        .measurement_start_time = (time_t)px__pg_get_i64(r, i, 5),
        .digest = PQgetvalue(r, i, 6),
    };
    rc = px_summary_rows_add(&rows, &row);
  }
  PQclear(r);
  r = NULL;
  if (rc == 0)
    rc = px_summary_rows_pick(&rows);
  char *times = NULL, *ids = NULL;
  if (rc == 0) {
    times = px__pg_carrier_array(&rows, true);
    ids = px__pg_carrier_array(&rows, false);
    rc = times != NULL && ids != NULL ? 0 : -ENOMEM;
  }
  if (rc == 0) {
    px__pg_args_t a = {0};
    px__pg_text(&a, times);
    px__pg_text(&a, ids);
    r = px__pg_run(c, PX__PG_SUMMARY_TEXTS, &a, false);
    rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "summary texts") ? 0 : -EIO;
  }
  /* Results come by ordinal (1-based, the carriers' order); a carrier
   * whose row vanished (a newer analysis dropped it) keeps NULL. */
  int next = 0;
  px_summary_row_t *row;
  for (size_t i = 0, k = 1; rc == 0 && px_summary_rows_next_carrier(&rows, &i, &row); k++)
    if (next < PQntuples(r) && px__pg_get_i64(r, next, 0) == (int64_t)k) {
      rc = px_summary_rows_set_text(&rows, row, PQgetvalue(r, next, 1),
                                    (size_t)PQgetlength(r, next, 1));
      next++;
    }
  PQclear(r);
  free(times);
  free(ids);
  if (px__pg_exec(c, rc == 0 ? "COMMIT" : "ROLLBACK") != 0 && rc == 0)
    rc = -EIO;
  /* The connection goes back before the callbacks: they may be slow. */
  px__pg_release(s, c);
  if (rc == 0)
    rc = px_summary_rows_emit(&rows, cb, data);
  px_summary_rows_free(&rows);
  return rc;
}

/* The version row locked, so two nodes upgraded at once requeue once: the summaries are dropped and every measurement goes back
 * into the queue (quarantined ones too: a newer analysis may read them). */
int px__pg_analysis_version(px_store_t *base, int version, bool *requeued) {
  px__pg_t *s = px__pgs(base);
  int rc;
  *requeued = false;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  rc = px__pg_exec(c, "BEGIN");
  /* FOR UPDATE: a second node upgraded at the same time waits here and
   * then sees the new version. */
  PGresult *r = rc == 0 ? PQexec(c->conn,
                                 "SELECT version FROM analysis_version WHERE id = 1 FOR UPDATE")
                        : NULL;
  if (rc == 0 && (!px__pg_ok(c, r, PGRES_TUPLES_OK, "analysis version") || PQntuples(r) != 1))
    rc = -EIO;
  long stored = rc == 0 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
  PQclear(r);
  if (rc == 0 && stored < version) {
    char sql[512];
    snprintf(sql, sizeof(sql),
             "DELETE FROM summaries; DELETE FROM quarantine; DELETE FROM analysis_queue; "
             "INSERT INTO analysis_queue (measurement_start_time, measurement_id) "
             "SELECT measurement_start_time, id FROM measurements ORDER BY measurement_start_time, id; "
             "UPDATE analysis_version SET version = %d WHERE id = 1",
             version);
    rc = px__pg_exec(c, sql);
    *requeued = rc == 0;
  }
  if (rc == 0)
    rc = px__pg_exec(c, "COMMIT");
  else if (PQstatus(c->conn) == CONNECTION_OK && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
    px__pg_exec(c, "ROLLBACK");
  if (rc != 0)
    *requeued = false;
  px__pg_release(s, c);
  return rc;
}

int px__pg_quarantined(px_store_t *base, unsigned limit,
                       int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                       void *data, int64_t *total) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  PGresult *n = PQexec(c->conn, "SELECT count(*) FROM quarantine");
  rc = px__pg_ok(c, n, PGRES_TUPLES_OK, "quarantine") && PQntuples(n) == 1 ? 0 : -EIO;
  if (rc == 0)
    *total = px__pg_get_i64(n, 0, 0);
  PQclear(n);
  PGresult *r = NULL;
  if (rc == 0 && limit > 0) {
    px__pg_args_t a = {0};
    px__pg_i64(&a, limit);
    r = px__pg_run(c, PX__PG_QUARANTINED, &a, false);
    rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "quarantine") ? 0 : -EIO;
  }
  px__pg_release(s, c);
  for (int i = 0; rc == 0 && r != NULL && i < PQntuples(r); i++)
    rc = cb(data, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), (time_t)px__pg_get_i64(r, i, 2));
  PQclear(r);
  return rc;
}

int px__pg_pool(px_store_t *base, int (*cb)(void *data, const uint8_t *der, size_t n), void *data) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  PGresult *r = px__pg_run(c, PX__PG_POOL, NULL, true);
  rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "intermediate pool") ? 0 : -EIO;
  px__pg_release(s, c);
  for (int i = 0; rc == 0 && i < PQntuples(r); i++)
    rc = cb(data, (const uint8_t *)PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
  PQclear(r);
  return rc;
}

int px__pg_pool_add(px_store_t *base, const px_blob_t *certs, size_t n) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  bool grew = false;
  rc = px__pg_exec(c, "BEGIN");
  if (rc == 0)
    rc = px__pg_pool_write(c, certs, n, &grew);
  if (rc == 0 && grew) {
    PGresult *r = px__pg_run(c, PX__PG_RECHECK, NULL, false);
    rc = px__pg_ok(c, r, PGRES_COMMAND_OK, "analysis recheck") ? 0 : -EIO;
    PQclear(r);
  }
  if (rc == 0)
    rc = px__pg_exec(c, "COMMIT");
  else if (PQstatus(c->conn) == CONNECTION_OK && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
    px__pg_exec(c, "ROLLBACK");
  px__pg_release(s, c);
  return rc;
}
