/* The PostgreSQL store as a migration's destination
 * (`parallax-collector migrate`, collector/tools/migrate.c): batches of verified
 * rows stored with the source's progress in one transaction, the refused
 * rows recorded, and the checks the migration ends with. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/store/store_pg_internal.h"

/* Runs st expecting want; -EIO (logged by px__pg_ok) otherwise. */
static int px__pg_mig_step(px__pgconn_t *c, px__pg_stmt_t st, const px__pg_args_t *a,
                           ExecStatusType want, PGresult **out, const char *what) {
  PGresult *r = px__pg_run(c, st, a, false);
  if (!px__pg_ok(c, r, want, what)) {
    PQclear(r);
    return -EIO;
  }
  if (out != NULL)
    *out = r;
  else
    PQclear(r);
  return 0;
}

int px__pg_migration_get(px_store_t *base, const char *source, px_migration_t *m) {
  px__pg_t *s = px__pgs(base);
  int rc;
  memset(m, 0, sizeof(*m));
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  px__pg_args_t a = {0};
  px__pg_text(&a, source);
  px__pg_i64(&a, (int64_t)time(NULL));
  PGresult *r = NULL;
  rc = px__pg_mig_step(c, PX__PG_MIG_START, &a, PGRES_COMMAND_OK, NULL, "migration");
  a.n = 1;
  if (rc == 0)
    rc = px__pg_mig_step(c, PX__PG_MIG_GET, &a, PGRES_TUPLES_OK, &r, "migration");
  if (rc == 0 && PQntuples(r) == 1) {
    m->last_id = px__pg_get_i64(r, 0, 0);
    m->copied = px__pg_get_i64(r, 0, 1);
    m->present = px__pg_get_i64(r, 0, 2);
    m->refused = px__pg_get_i64(r, 0, 3);
  } else if (rc == 0) {
    rc = -EIO;
  }
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}

/* The batch's statements go out in libpq's pipeline mode, PX__PG_PIPE at
 * a time before a sync: one round trip per chunk instead of one per row,
 * and few enough results in flight that neither side's socket buffer
 * fills while the other waits. */
#define PX__PG_PIPE 128

enum { PX__Q_PLAIN, PX__Q_INSERT, PX__Q_MOVE };

typedef struct {
  px__pgconn_t *c;
  int kinds[PX__PG_PIPE];
  size_t queued;
  int rc;          /* the first failure */
  size_t inserted; /* rows an INSERT stored */
  size_t rows;     /* INSERT results read so far */
  bool *stored;    /* per row, in order: whether its INSERT stored it */
  bool moved;      /* the progress row moved */
} px__pg_pipe_t;

/* Reads the results of everything queued, up to and including the sync. */
static int px__pg_pipe_sync(px__pg_pipe_t *p) {
  PGconn *conn = p->c->conn;
  if (p->queued == 0)
    return p->rc;
  if (PQpipelineSync(conn) != 1) {
    p->c->broken = true;
    p->rc = -EIO;
    return p->rc;
  }
  for (size_t i = 0; i < p->queued; i++) {
    PGresult *r = PQgetResult(conn);
    if (r == NULL) { /* the connection is gone */
      p->c->broken = true;
      p->rc = -EIO;
      p->queued = 0;
      return p->rc;
    }
    ExecStatusType st = PQresultStatus(r);
    bool ok = p->kinds[i] == PX__Q_INSERT ? st == PGRES_TUPLES_OK : st == PGRES_COMMAND_OK;
    if (p->kinds[i] == PX__Q_INSERT) {
      bool stored = ok && PQntuples(r) > 0;
      p->inserted += stored;
      p->stored[p->rows++] = stored;
    }
    else if (ok && p->kinds[i] == PX__Q_MOVE)
      p->moved = strcmp(PQcmdTuples(r), "1") == 0;
    if (!ok && p->rc == 0) {
      if (st != PGRES_PIPELINE_ABORTED)
        px__pg_ok(p->c, r, PGRES_COMMAND_OK, "migration batch");
      p->rc = -EIO;
    }
    PQclear(r);
    while ((r = PQgetResult(conn)) != NULL) /* the end of this statement's results */
      PQclear(r);
  }
  p->queued = 0;
  PGresult *r = PQgetResult(conn);
  if (r == NULL || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
    p->c->broken = true;
    p->rc = -EIO;
  }
  PQclear(r);
  return p->rc;
}

/* Queues a prepared statement (a->n parameters) or, with st < 0, the
 * value-less sql (BEGIN, COMMIT). */
static int px__pg_pipe_send(px__pg_pipe_t *p, int kind, int st, const px__pg_args_t *a,
                            const char *sql) {
  if (p->rc != 0)
    return p->rc;
  int sent;
  if (st >= 0) {
    char name[16];
    snprintf(name, sizeof(name), "px_%d", st);
    sent = PQsendQueryPrepared(p->c->conn, name, a->n, a->v, a->len, a->fmt, 0);
  } else {
    sent = PQsendQueryParams(p->c->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
  }
  if (sent != 1) {
    p->c->broken = true;
    p->rc = -EIO;
    return p->rc;
  }
  p->kinds[p->queued++] = kind;
  return p->queued == PX__PG_PIPE ? px__pg_pipe_sync(p) : 0;
}

/* Queues one row: its measurement, uid and analysis queue entry (the
 * statement submissions use); nothing is stored when the content is. */
static int px__pg_pipe_row(px__pg_pipe_t *p, const px_submission_t *sub) {
  px__pg_args_t a = {0};
  px__pg_insert_args(&a, sub);
  return px__pg_pipe_send(p, PX__Q_INSERT, PX__PG_INSERT, &a, NULL);
}

/* The batch as BEGIN … COMMIT on c, pipelined. */
static int px__pg_import_try(px__pgconn_t *c, const char *source, int64_t from_id,
                             int64_t to_id, const px_submission_t *rows, size_t n,
                             const px_refusal_t *refused, size_t nrefused, size_t *copied) {
  px__pg_pipe_t p = {.c = c, .stored = calloc(n > 0 ? n : 1, sizeof(bool))};
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  const px_submission_t **logged = calloc(n > 0 ? n : 1, sizeof(*logged));
  if (p.stored == NULL || logged == NULL || PQenterPipelineMode(c->conn) != 1) {
    free(p.stored);
    free((void *)logged);
    return -EIO;
  }
  px__pg_pipe_send(&p, PX__Q_PLAIN, -1, NULL, "BEGIN");
  for (size_t i = 0; p.rc == 0 && i < n; i++)
    px__pg_pipe_row(&p, &rows[i]);
  for (size_t i = 0; p.rc == 0 && i < nrefused; i++) {
    px__pg_args_t a = {0};
    px__pg_text(&a, source);
    px__pg_text(&a, refused[i].uid);
    px__pg_text(&a, refused[i].reason);
    px__pg_pipe_send(&p, PX__Q_PLAIN, PX__PG_MIG_REFUSE, &a, NULL);
  }
  /* Everything so far, then the progress: how many rows were new is only
   * known once their results are in. */
  px__pg_pipe_sync(&p);
  px__pg_args_t a = {0};
  px__pg_text(&a, source);
  px__pg_i64(&a, from_id);
  px__pg_i64(&a, to_id);
  px__pg_i64(&a, (int64_t)p.inserted);
  px__pg_i64(&a, (int64_t)(n - p.inserted));
  px__pg_i64(&a, (int64_t)time(NULL));
  px__pg_pipe_send(&p, PX__Q_MOVE, PX__PG_MIG_MOVE, &a, NULL);
  px__pg_pipe_sync(&p);
  int rc = p.rc;
  if (rc == 0 && !p.moved)
    rc = -ESTALE;
  if (PQexitPipelineMode(c->conn) != 1) {
    c->broken = true;
    rc = rc != 0 ? rc : -EIO;
  }
  /* The new rows become leaves in the source's order (the order of its
   * own log), then the COMMIT. */
  size_t nlogged = 0;
  for (size_t i = 0; i < p.rows && i < n; i++)
    if (p.stored[i])
      logged[nlogged++] = &rows[i];
  int64_t first;
  if (rc == 0)
    rc = px__pg_log_append(c, logged, nlogged, &first) != 0 ? -EIO : px__pg_exec(c, "COMMIT");
  if (rc != 0 && !c->broken && PQstatus(c->conn) == CONNECTION_OK &&
      PQtransactionStatus(c->conn) != PQTRANS_IDLE)
    px__pg_exec(c, "ROLLBACK");
  if (rc == 0)
    *copied = p.inserted;
  free(p.stored);
  free((void *)logged);
  return rc;
}

int px__pg_import_batch(px_store_t *base, const char *source, int64_t from_id, int64_t to_id,
                        const px_submission_t *rows, size_t n, const px_refusal_t *refused,
                        size_t nrefused, size_t *copied) {
  px__pg_t *s = px__pgs(base);
  int rc;
  *copied = 0;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  rc = 0;
  /* Every month's partitions first, each in its own short transaction
   * (px_ensure_month remembers the months it made). */
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = px__pg_ensure_month(s, c, rows[i].meta.measurement_start_time);
  if (rc == 0)
    rc = px__pg_import_try(c, source, from_id, to_id, rows, n, refused, nrefused, copied);
  px__pg_release(s, c);
  return rc;
}

int px__pg_count_uids(px_store_t *base, const char *const *uids, size_t n, size_t *present) {
  px__pg_t *s = px__pgs(base);
  size_t len = 1;
  *present = 0;
  for (size_t i = 0; i < n; i++) {
    if (strchr(uids[i], '\n') != NULL)
      return -EINVAL;
    len += strlen(uids[i]) + 1;
  }
  char *list = malloc(len);
  if (list == NULL)
    return -ENOMEM;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    size_t k = strlen(uids[i]);
    memcpy(list + off, uids[i], k);
    off += k;
    list[off++] = i + 1 < n ? '\n' : '\0';
  }
  list[off] = '\0';
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c != NULL) {
    px__pg_args_t a = {0};
    PGresult *r = NULL;
    px__pg_text(&a, list);
    rc = px__pg_mig_step(c, PX__PG_COUNT_UIDS, &a, PGRES_TUPLES_OK, &r, "uids");
    if (rc == 0)
      *present = (size_t)px__pg_get_i64(r, 0, 0);
    PQclear(r);
    px__pg_release(s, c);
  }
  free(list);
  return rc;
}

int px__pg_migration_refused(px_store_t *base, const char *source,
                             int (*cb)(void *data, const char *uid, const char *reason),
                             void *data) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  px__pg_args_t a = {0};
  PGresult *r = NULL;
  px__pg_text(&a, source);
  rc = px__pg_mig_step(c, PX__PG_MIG_REFUSED, &a, PGRES_TUPLES_OK, &r, "refusals");
  for (int i = 0; rc == 0 && r != NULL && i < PQntuples(r); i++)
    rc = cb(data, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}
