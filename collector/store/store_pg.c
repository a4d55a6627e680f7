/* The PostgreSQL store: a pool of libpq connections shared by MHD's
 * request threads and the analysis thread, any number of collector
 * processes ("nodes") on one database. This file: the URL, the pool,
 * statements, opening and closing. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/store/store_pg_internal.h"

/* Every statement that carries a value, prepared on every connection as
 * it is opened; binding is positional ($1…). Times are Unix seconds (as
 * in the SQLite store), content and hashes bytea. */
static const char *const px__pg_stmts[PX__PG_NSTMT] = {
    [PX__PG_FIND] = "SELECT m.key_id, l.leaf_index FROM measurements m LEFT JOIN log_leaves l "
                    "ON l.content_sha256 = m.content_sha256 "
                    "WHERE m.content_sha256 = $1 AND m.measurement_start_time = $2",
    [PX__PG_KEY_ADD] = "INSERT INTO keys (key_id, public_key, first_seen, last_seen) "
                       "VALUES ($1, $2, $3, $3) ON CONFLICT (key_id) DO NOTHING",
    [PX__PG_KEY_SEEN] = "UPDATE keys SET last_seen = $2 WHERE key_id = $1 AND last_seen < $2 "
                        "RETURNING coalesce(valid_before, 0)",
    [PX__PG_KEY_SHARE] = "SELECT coalesce(valid_before, 0) FROM keys WHERE key_id = $1 FOR SHARE",
    /* The row, its uid and its place in the analysis queue in one
     * statement; nothing when the content is stored already. */
    [PX__PG_INSERT] =
        "WITH m AS (INSERT INTO measurements (uid, content_sha256, content, signature, key_id, "
        "probe_cc, probe_asn, test_name, input, domain, measurement_start_time, received_at, "
        "geo_mismatch, uploader_cc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
        "$13, $14) ON CONFLICT (content_sha256, measurement_start_time) DO NOTHING "
        "RETURNING id, measurement_start_time), "
        "u AS (INSERT INTO measurement_uids (uid, measurement_start_time, measurement_id) "
        "SELECT $1::text, measurement_start_time, id FROM m), "
        "q AS (INSERT INTO analysis_queue (measurement_start_time, measurement_id) "
        "SELECT measurement_start_time, id FROM m) "
        "SELECT id FROM m",
    /* The same, in a transaction that holds the key row (FOR SHARE):
     * nothing is inserted when the key was rotated at or before the
     * measurement started. Answers the id (NULL when nothing was
     * inserted) and the key's valid_before (0: never rotated). */
    [PX__PG_INSERT_CHECKED] =
        "WITH k AS (SELECT coalesce(valid_before, 0) AS vb FROM keys WHERE key_id = $5::text), "
        "m AS (INSERT INTO measurements (uid, content_sha256, content, signature, key_id, "
        "probe_cc, probe_asn, test_name, input, domain, measurement_start_time, received_at, "
        "geo_mismatch, uploader_cc) SELECT $1::text, $2::bytea, $3::bytea, $4::text, $5::text, "
        "$6::text, $7::text, $8::text, $9::text, $10::text, $11::bigint, $12::bigint, "
        "$13::boolean, $14::text WHERE NOT EXISTS (SELECT 1 FROM k WHERE vb <> 0 AND "
        "$11::bigint >= vb) ON CONFLICT (content_sha256, measurement_start_time) DO NOTHING "
        "RETURNING id, measurement_start_time), "
        "u AS (INSERT INTO measurement_uids (uid, measurement_start_time, measurement_id) "
        "SELECT $1::text, measurement_start_time, id FROM m), "
        "q AS (INSERT INTO analysis_queue (measurement_start_time, measurement_id) "
        "SELECT measurement_start_time, id FROM m) "
        "SELECT (SELECT id FROM m), coalesce((SELECT vb FROM k), 0)",
    /* Sorted before locking: two rotations lock their keys in one order. */
    [PX__PG_KEYS_LOCK] = "SELECT key_id, coalesce(valid_before, 0) FROM keys "
                         "WHERE key_id IN ($1, $2) ORDER BY key_id FOR UPDATE",
    [PX__PG_KEY_ROTATE] = "UPDATE keys SET valid_before = $2 WHERE key_id = $1",
    /* least/greatest skip NULLs: the earlier valid_before of the two. */
    [PX__PG_KEY_IMPORT] =
        "INSERT INTO keys (key_id, public_key, first_seen, last_seen, valid_before) "
        "VALUES ($1, $2, $3, $4, nullif($5::bigint, 0)) ON CONFLICT (key_id) DO UPDATE SET "
        "first_seen = least(keys.first_seen, excluded.first_seen), "
        "last_seen = greatest(keys.last_seen, excluded.last_seen), "
        "valid_before = least(keys.valid_before, excluded.valid_before)",
    [PX__PG_GET] = "SELECT m.content, m.signature, m.key_id FROM measurement_uids u "
                   "JOIN measurements m ON m.measurement_start_time = u.measurement_start_time "
                   "AND m.id = u.measurement_id WHERE u.uid = $1",
    [PX__PG_KEYS] = "SELECT key_id, public_key, first_seen, last_seen, coalesce(valid_before, 0) "
                    "FROM keys ORDER BY first_seen, key_id",
    [PX__PG_COUNT] = "SELECT (SELECT count(*) FROM measurements), (SELECT count(*) FROM keys)",
    /* Another node's worker holds its rows locked: take the next ones. A
     * queue entry whose measurement is gone (a dropped partition) comes
     * back with NULLs and is simply retired. */
    [PX__PG_QUEUE_TAKE] =
        "SELECT q.seq, q.measurement_id, m.uid, m.key_id, m.probe_cc, m.probe_asn, m.domain, "
        "q.measurement_start_time, m.content FROM analysis_queue q LEFT JOIN measurements m "
        "ON m.measurement_start_time = q.measurement_start_time AND m.id = q.measurement_id "
        "ORDER BY q.seq LIMIT $1 FOR UPDATE OF q SKIP LOCKED",
    [PX__PG_SUMMARY_ADD] =
        "INSERT INTO summaries (measurement_start_time, measurement_id, uid, key_id, probe_cc, "
        "probe_asn, domain, summary, claims_mismatch, awaiting_issuer, digest) VALUES ($1, $2, $3, "
        "$4, $5, $6, $7, $8, $9, $10, encode(substring(sha256(convert_to($8, 'UTF8')) FROM 1 "
        "FOR 16), 'hex')) ON CONFLICT (measurement_start_time, measurement_id) DO UPDATE "
        "SET summary = excluded.summary, claims_mismatch = excluded.claims_mismatch, "
        "awaiting_issuer = excluded.awaiting_issuer, digest = excluded.digest",
    /* A measurement summarised before and quarantined now loses the summary. */
    [PX__PG_QUARANTINE] =
        "WITH d AS (DELETE FROM summaries WHERE measurement_start_time = $1 AND "
        "measurement_id = $2) INSERT INTO quarantine (measurement_start_time, measurement_id, "
        "uid, reason, quarantined_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    [PX__PG_POOL_ADD] =
        "INSERT INTO intermediate_pool (sha256, der, added_at) SELECT sha256($1::bytea), $1, $2 "
        "WHERE (SELECT count(*) FROM intermediate_pool) < $3 ON CONFLICT DO NOTHING",
    [PX__PG_POOL] = "SELECT der FROM intermediate_pool ORDER BY added_at, sha256",
    [PX__PG_RECHECK] =
        "INSERT INTO analysis_queue (measurement_start_time, measurement_id) "
        "SELECT s.measurement_start_time, s.measurement_id FROM summaries s WHERE "
        "s.awaiting_issuer AND NOT EXISTS (SELECT 1 FROM analysis_queue q WHERE "
        "q.measurement_id = s.measurement_id)",
    [PX__PG_QUARANTINED] = "SELECT uid, reason, quarantined_at FROM quarantine "
                           "ORDER BY quarantined_at DESC, measurement_id DESC LIMIT $1",
    [PX__PG_QUEUE_DONE] = "DELETE FROM analysis_queue WHERE seq = ANY ($1::bigint[])",
    /* The queue's sequence, not its newest row: it never goes back when
     * the queue drains, so an unchanged mark means nothing was stored. */
    [PX__PG_MARK] = "SELECT last_value FROM analysis_queue_seq_seq",
    [PX__PG_REACHED] = "SELECT NOT EXISTS (SELECT 1 FROM analysis_queue WHERE seq <= $1)",
    /* Only the newest row of each (key, digest) brings its text. */
    /* The window's rows without their texts, from the covering index
     * summaries_window (collector/store/summary_rows.h picks which need one). */
    [PX__PG_SUMMARIES] =
        "SELECT measurement_id, uid, key_id, probe_cc, probe_asn, "
        "measurement_start_time, coalesce(digest, '') FROM summaries WHERE domain = $1 AND "
        "measurement_start_time >= $2 AND measurement_start_time < $3 "
        "ORDER BY measurement_start_time",
    /* The texts of the rows that carry one, by primary key, in the order
     * asked ($1 times, $2 ids: array literals). */
    [PX__PG_SUMMARY_TEXTS] =
        "SELECT u.ord, s.summary FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY "
        "AS u(t, id, ord) JOIN summaries s ON s.measurement_start_time = u.t AND "
        "s.measurement_id = u.id ORDER BY u.ord",
    [PX__PG_ENSURE_MONTH] = "SELECT px_ensure_month($1)",
    [PX__PG_MIG_START] = "INSERT INTO migrations (source, last_id, copied, present, started_at, "
                         "updated_at) VALUES ($1, 0, 0, 0, $2, $2) ON CONFLICT (source) DO NOTHING",
    [PX__PG_MIG_GET] = "SELECT last_id, copied, present, (SELECT count(*) FROM migration_refused "
                       "r WHERE r.source = $1) FROM migrations WHERE source = $1",
    [PX__PG_MIG_MOVE] = "UPDATE migrations SET last_id = $3, copied = copied + $4, "
                        "present = present + $5, updated_at = $6 "
                        "WHERE source = $1 AND last_id = $2",
    [PX__PG_MIG_REFUSE] = "INSERT INTO migration_refused (source, uid, reason) VALUES ($1, $2, $3) "
                          "ON CONFLICT (source, uid) DO UPDATE SET reason = excluded.reason",
    [PX__PG_MIG_REFUSED] = "SELECT uid, reason FROM migration_refused WHERE source = $1 "
                           "ORDER BY uid",
    /* The list as one text, a uid a line: uids hold no newline. */
    [PX__PG_COUNT_UIDS] = "SELECT count(*) FROM measurement_uids "
                          "WHERE uid = ANY (string_to_array($1, E'\\n'))",
    /* The measurement log (store_pg_log.c). */
    [PX__PG_LOG_LOCK] = "SELECT size, frontier FROM log_head WHERE id = 1 FOR UPDATE",
    [PX__PG_LOG_HEAD] = "SELECT size, frontier FROM log_head WHERE id = 1",
    [PX__PG_LOG_HEAD_SET] = "UPDATE log_head SET size = $1, frontier = $2 WHERE id = 1",
    [PX__PG_LOG_LEAF_ADD] = "INSERT INTO log_leaves (leaf_index, measurement_uid, "
                            "content_sha256, received_at) VALUES ($1, $2, $3, $4)",
    [PX__PG_LOG_NODE_ADD] = "INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)",
    [PX__PG_LOG_NODE] = "SELECT hash FROM log_nodes WHERE level = $1 AND idx = $2",
    [PX__PG_LOG_LEAF_AT] = "SELECT leaf_index, measurement_uid, content_sha256, received_at "
                           "FROM log_leaves WHERE leaf_index = $1",
    [PX__PG_LOG_LEAF_OF] = "SELECT leaf_index, measurement_uid, content_sha256, received_at "
                           "FROM log_leaves WHERE measurement_uid = $1",
    [PX__PG_LOG_UNLOGGED] =
        "SELECT m.uid, m.content_sha256, m.received_at FROM measurements m WHERE NOT EXISTS "
        "(SELECT 1 FROM log_leaves l WHERE l.measurement_uid = m.uid) "
        "ORDER BY m.received_at, m.id LIMIT $1",
    [PX__PG_LOG_HEAD_PUT] = "INSERT INTO log_heads (tree_size, root_hash, signed_at, key_id, "
                            "public_key, signature) VALUES ($1, $2, $3, $4, $5, $6) "
                            "ON CONFLICT (tree_size) DO NOTHING",
    [PX__PG_LOG_HEAD_GET] = "SELECT tree_size, root_hash, signed_at, key_id, public_key, "
                            "signature FROM log_heads WHERE tree_size = $1",
    [PX__PG_LOG_HEAD_TOP] = "SELECT tree_size, root_hash, signed_at, key_id, public_key, "
                            "signature FROM log_heads ORDER BY tree_size DESC LIMIT 1",
};

/* ---- parameters and results ----------------------------------------------- */

void px__pg_text(px__pg_args_t *a, const char *s) {
  a->v[a->n] = s;
  a->len[a->n] = 0;
  a->fmt[a->n] = 0;
  a->n++;
}

void px__pg_i64(px__pg_args_t *a, int64_t v) {
  snprintf(a->num[a->n], sizeof(a->num[a->n]), "%" PRId64, v);
  px__pg_text(a, a->num[a->n]);
}

void px__pg_bin(px__pg_args_t *a, const void *p, size_t n) {
  a->v[a->n] = p;
  a->len[a->n] = (int)n;
  a->fmt[a->n] = 1;
  a->n++;
}

void px__pg_null(px__pg_args_t *a) {
  px__pg_text(a, NULL);
}

int64_t px__pg_get_i64(PGresult *r, int row, int col) {
  const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
  if (PQgetisnull(r, row, col))
    return 0;
  if (PQfformat(r, col) == 0)
    return strtoll((const char *)p, NULL, 10);
  uint64_t v = 0;
  int n = PQgetlength(r, row, col);
  for (int i = 0; i < n && i < 8; i++)
    v = v << 8 | p[i];
  if (n == 4) /* int4: sign-extend */
    return (int64_t)(int32_t)(uint32_t)v;
  return (int64_t)v;
}

bool px__pg_get_bool(PGresult *r, int row, int col) {
  const char *p = PQgetvalue(r, row, col);
  if (PQgetisnull(r, row, col))
    return false;
  return PQfformat(r, col) == 0 ? p[0] == 't' : p[0] != 0;
}

const char *px__pg_state(PGresult *r) {
  const char *s = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  return s != NULL ? s : "";
}

bool px__pg_ok(px__pgconn_t *c, PGresult *r, ExecStatusType want, const char *what) {
  if (r != NULL && PQresultStatus(r) == want)
    return true;
  if (PQstatus(c->conn) != CONNECTION_OK) {
    c->broken = true;
    fprintf(stderr, "parallax-collector: postgresql: %s: the connection is lost: %s", what,
            PQerrorMessage(c->conn));
    return false;
  }
  /* Conflicts the callers retry or answer (a missing partition, a
   * deadlock, a serialization failure, a duplicate) are not news. */
  const char *state = px__pg_state(r);
  if (strcmp(state, "23514") != 0 && strcmp(state, "40001") != 0 &&
      strcmp(state, "40P01") != 0 && strcmp(state, "23505") != 0)
    fprintf(stderr, "parallax-collector: postgresql: %s: %s", what,
            r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c->conn));
  return false;
}

PGresult *px__pg_run(px__pgconn_t *c, px__pg_stmt_t st, const px__pg_args_t *a, bool binary) {
  char name[16];
  snprintf(name, sizeof(name), "px_%d", (int)st);
  return px__pg_run_named(c, name, a, binary);
}

PGresult *px__pg_run_named(px__pgconn_t *c, const char *name, const px__pg_args_t *a,
                           bool binary) {
  static const px__pg_args_t none;
  if (a == NULL)
    a = &none;
  return PQexecPrepared(c->conn, name, a->n, a->v, a->len, a->fmt, binary ? 1 : 0);
}

int px__pg_prepare_once(px__pgconn_t *c, uint64_t prepared[2], unsigned mask, const char *name,
                        const char *sql) {
  uint64_t bit = (uint64_t)1 << (mask % 64);
  if (prepared[mask / 64 % 2] & bit)
    return 0;
  PGresult *r = PQprepare(c->conn, name, sql, 0, NULL);
  bool ok = px__pg_ok(c, r, PGRES_COMMAND_OK, "prepare");
  PQclear(r);
  if (!ok)
    return -EIO;
  prepared[mask / 64 % 2] |= bit;
  return 0;
}

int px__pg_one_row(px__pg_t *s, bool binary, px__pg_stmt_t st, const px__pg_args_t *a,
                   const char *what, PGresult **out) {
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  PGresult *r = px__pg_run(c, st, a, binary);
  rc = !px__pg_ok(c, r, PGRES_TUPLES_OK, what) ? -EIO
       : PQntuples(r) == 0                     ? -ENOENT
       : PQntuples(r) == 1                     ? 0
                                               : -EIO;
  px__pg_release(s, c);
  if (rc != 0)
    PQclear(r);
  else
    *out = r;
  return rc;
}

int px__pg_exec(px__pgconn_t *c, const char *sql) {
  PGresult *r = PQexec(c->conn, sql);
  bool ok = px__pg_ok(c, r, PGRES_COMMAND_OK, sql);
  PQclear(r);
  return ok ? 0 : -EIO;
}

/* ---- connections ----------------------------------------------------------- */

static void px__pg_quiet(void *arg, const char *message) {
  (void)arg;
  (void)message; /* NOTICEs (an IF NOT EXISTS that found it) are no news */
}

/* Opens one connection with the session settings. synchronous_commit off
 * (a database or role default) is turned back on: a COMMIT must be on
 * disk before the 200; stronger settings (remote_apply…) are kept. */
static PGconn *px__pg_connect_plain(const char *conninfo, char *err, size_t errlen) {
  const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
  const char *const values[] = {"10", "parallax-collector", conninfo, NULL};
  PGconn *conn = PQconnectdbParams(keys, values, 1);
  if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
    snprintf(err, errlen, "postgresql: cannot connect: %s",
             conn ? PQerrorMessage(conn) : "out of memory");
    err[strcspn(err, "\n")] = '\0';
    PQfinish(conn);
    return NULL;
  }
  PQsetNoticeProcessor(conn, px__pg_quiet, NULL);
  /* Measurement content is TOASTed: lz4 (PostgreSQL 14 and later, when
   * built with it) compresses it at a fraction of pglz's CPU, and every
   * reader decompresses either. */
  PGresult *r = PQexec(conn, "SET client_min_messages = warning; "
                             "SELECT set_config('synchronous_commit', 'on', false) "
                             "WHERE current_setting('synchronous_commit') = 'off'; "
                             "SELECT set_config('default_toast_compression', 'lz4', false) "
                             "FROM pg_settings WHERE name = 'default_toast_compression' "
                             "AND 'lz4' = ANY (enumvals)");
  bool ok = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  if (!ok) {
    snprintf(err, errlen, "postgresql: cannot set up a connection: %s", PQerrorMessage(conn));
    err[strcspn(err, "\n")] = '\0';
    PQfinish(conn);
    return NULL;
  }
  return conn;
}

/* A pool connection: the session, then every statement of px__pg_stmts. */
static PGconn *px__pg_connect(const char *conninfo, char *err, size_t errlen) {
  PGconn *conn = px__pg_connect_plain(conninfo, err, errlen);
  for (int i = 0; conn != NULL && i < PX__PG_NSTMT; i++) {
    char name[16];
    snprintf(name, sizeof(name), "px_%d", i);
    PGresult *r = PQprepare(conn, name, px__pg_stmts[i], 0, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
      snprintf(err, errlen, "postgresql: cannot prepare statement %d: %s", i,
               PQerrorMessage(conn));
      err[strcspn(err, "\n")] = '\0';
      PQfinish(conn);
      conn = NULL;
    }
    PQclear(r);
  }
  return conn;
}

px__pgconn_t *px__pg_checkout(px__pg_t *s, int *rc) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 30;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stopping) {
      pthread_mutex_unlock(&s->mu);
      *rc = -ESHUTDOWN;
      return NULL;
    }
    px__pgconn_t *idle = NULL, *unopened = NULL;
    for (unsigned i = 0; i < s->pool_size; i++) {
      px__pgconn_t *c = &s->pool[i];
      if (c->busy)
        continue;
      if (c->conn != NULL) {
        idle = c;
        break;
      }
      if (unopened == NULL)
        unopened = c;
    }
    px__pgconn_t *c = idle ? idle : unopened;
    if (c != NULL) {
      c->busy = true;
      pthread_mutex_unlock(&s->mu);
      if (c->conn == NULL) {
        char err[512];
        c->conn = px__pg_connect(s->conninfo, err, sizeof(err));
        memset(c->list_prepared, 0, sizeof(c->list_prepared));
        memset(c->export_prepared, 0, sizeof(c->export_prepared));
        c->broken = false;
        if (c->conn == NULL) {
          fprintf(stderr, "parallax-collector: %s\n", err);
          px__pg_release(s, c);
          *rc = -EIO;
          return NULL;
        }
      }
      return c;
    }
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) {
      pthread_mutex_unlock(&s->mu);
      *rc = -EBUSY;
      return NULL;
    }
  }
}

void px__pg_release(px__pg_t *s, px__pgconn_t *c) {
  /* A connection left inside a transaction (an error path) or lost is not
   * handed to the next caller as it is. */
  if (c->conn != NULL && (c->broken || PQstatus(c->conn) != CONNECTION_OK ||
                          PQtransactionStatus(c->conn) != PQTRANS_IDLE)) {
    PQfinish(c->conn);
    c->conn = NULL;
  }
  pthread_mutex_lock(&s->mu);
  c->busy = false;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

int px__pg_export_slot(px__pg_t *s) {
  pthread_mutex_lock(&s->mu);
  int rc = s->exports < s->exports_max ? 0 : -EBUSY;
  if (rc == 0)
    s->exports++;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

void px__pg_export_slot_done(px__pg_t *s) {
  pthread_mutex_lock(&s->mu);
  s->exports--;
  pthread_mutex_unlock(&s->mu);
}

/* ---- the URL ---------------------------------------------------------------- */

/* Copies url into *conninfo without the query parameters that are ours
 * (pool_size=N: connections this process opens at most), which libpq
 * would refuse. */
static int px__pg_parse_url(const char *url, char **conninfo, unsigned *pool_size, char *err,
                            size_t errlen) {
  size_t n = strlen(url);
  char *out = malloc(n + 1);
  if (out == NULL)
    return -ENOMEM;
  const char *q = strchr(url, '?');
  size_t base = q ? (size_t)(q - url) : n;
  memcpy(out, url, base);
  out[base] = '\0';
  size_t len = base;
  char sep = '?';
  for (const char *p = q ? q + 1 : NULL; p != NULL && *p != '\0';) {
    const char *end = strchr(p, '&');
    size_t plen = end ? (size_t)(end - p) : strlen(p);
    if (plen > 10 && strncmp(p, "pool_size=", 10) == 0) {
      char num[16];
      char *stop;
      snprintf(num, sizeof(num), "%.*s", (int)(plen - 10), p + 10);
      unsigned long v = strtoul(num, &stop, 10);
      if (*stop != '\0' || v < 2 || v > PX__PG_POOL_MAX) {
        snprintf(err, errlen, "--db: pool_size must be 2 to %d", PX__PG_POOL_MAX);
        free(out);
        return -EPROTONOSUPPORT; /* a URL we do not take, like an unknown scheme */
      }
      *pool_size = (unsigned)v;
    } else if (plen > 0) {
      out[len++] = sep;
      memcpy(out + len, p, plen);
      len += plen;
      out[len] = '\0';
      sep = '&';
    }
    p = end ? end + 1 : NULL;
  }
  *conninfo = out;
  return 0;
}

/* ---- the store ----------------------------------------------------------- */

static void px__pg_close(px_store_t *base) {
  px__pg_t *s = px__pgs(base);
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_mutex_unlock(&s->mu);
  /* Every caller (request threads, the analysis, exports) is gone by the
   * time main closes the store; nothing is busy. */
  for (unsigned i = 0; i < s->pool_size; i++)
    PQfinish(s->pool[i].conn);
  free(s->pool);
  free(s->months);
  free(s->conninfo);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->months_mu);
  pthread_mutex_destroy(&s->put_mu);
  free(s);
}

static void px__pg_set_commit_hook(px_store_t *base, void (*fn)(void *data), void *data) {
  px__pg_t *s = px__pgs(base);
  pthread_mutex_lock(&s->mu);
  s->on_commit = fn;
  s->on_commit_data = data;
  pthread_mutex_unlock(&s->mu);
}

static int px__pg_ping(px_store_t *base) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  PGresult *r = px__pg_run(c, PX__PG_MARK, NULL, false);
  rc = px__pg_ok(c, r, PGRES_TUPLES_OK, "ping") ? 0 : -EIO;
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}

static const struct px_store_migrate_ops px__pg_migrate_ops = {
    .count = px__pg_count,
    .import_key = px__pg_import_key,
    .migration_get = px__pg_migration_get,
    .import_batch = px__pg_import_batch,
    .count_uids = px__pg_count_uids,
    .migration_refused = px__pg_migration_refused,
};

static const px_store_ops_t px__pg_ops = {
    .name = "postgresql",
    .close = px__pg_close,
    .put = px__pg_put,
    .get = px__pg_get,
    .list = px__pg_list,
    .keys = px__pg_keys,
    .rotate_key = px__pg_rotate_key,
    .export_open = px__pg_export_open,
    .export_next = px__pg_export_next,
    .export_close = px__pg_export_close,
    .analyze = px__pg_analyze,
    .analysis_version = px__pg_analysis_version,
    .pool = px__pg_pool,
    .pool_add = px__pg_pool_add,
    .quarantined = px__pg_quarantined,
    .analysis_mark = px__pg_analysis_mark,
    .analysis_reached = px__pg_analysis_reached,
    .summaries = px__pg_summaries,
    .set_commit_hook = px__pg_set_commit_hook,
    .ping = px__pg_ping,
    .log_head = px__pg_log_head,
    .log_node = px__pg_log_node,
    .log_leaf = px__pg_log_leaf,
    .log_head_put = px__pg_log_head_put,
    .log_head_get = px__pg_log_head_get,
    .migrate = &px__pg_migrate_ops,
};

int px_store_pg_open(const char *url, px_store_t **out, char *err, size_t errlen) {
  px__pg_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return -ENOMEM;
  s->base.ops = &px__pg_ops;
  s->pool_size = PX__PG_POOL_DEFAULT;
  int rc = px__pg_parse_url(url, &s->conninfo, &s->pool_size, err, errlen);
  if (rc != 0) {
    free(s);
    return rc;
  }
  /* Half the pool at most for exports, which hold theirs for as long as
   * the client reads: submissions always find a connection. */
  s->exports_max = s->pool_size / 2;
  s->pool = calloc(s->pool_size, sizeof(*s->pool));
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->months_mu, NULL);
  pthread_mutex_init(&s->put_mu, NULL);
  if (s->pool == NULL) {
    px__pg_close(&s->base);
    return -ENOMEM;
  }
  /* Schema first, on a connection of its own (the statements of the pool
   * need the tables), then this month's and next month's partitions, so
   * that ingest rarely has to create one. */
  PGconn *conn = px__pg_connect_plain(s->conninfo, err, errlen);
  rc = conn != NULL ? px__pg_migrate(conn, err, errlen) : -EIO;
  PQfinish(conn);
  px__pgconn_t *c = rc == 0 ? px__pg_checkout(s, &rc) : NULL;
  if (c != NULL) {
    time_t now = time(NULL);
    rc = px__pg_ensure_month(s, c, now);
    if (rc == 0)
      rc = px__pg_ensure_month(s, c, now + (time_t)32 * 86400);
    if (rc != 0)
      snprintf(err, errlen, "postgresql: cannot create this month's partitions: %s",
               PQerrorMessage(c->conn));
    px__pg_release(s, c);
    if (rc == 0)
      rc = px__pg_log_backfill(s, err, errlen);
  } else if (rc != 0 && err[0] == '\0') {
    snprintf(err, errlen, "postgresql: cannot connect");
  }
  if (rc != 0) {
    err[strcspn(err, "\n")] = '\0';
    px__pg_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}
