/* The PostgreSQL store's schema: versioned migrations, applied at start-up
 * by whichever node gets the advisory lock first, and the monthly
 * partitions of measurements and summaries, made as the months come. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/store/store_pg_internal.h"

/* pg_advisory_lock(class, id) keys: "px" and what the lock is for. */
#define PX__PG_LOCK_CLASS "28792"

/* Versioned migrations, applied in order at start-up, each in its own
 * transaction with its schema_version row; never edit one that has
 * shipped, add the next. Constant text: nothing in them comes from
 * outside. */
static const char *const px__pg_migrations[] = {
    /* 1: the SQLite store's schema (its migrations 1 to 4), for several
     * writers and years of history:
     * - measurements and summaries are partitioned by month of the signed
     *   measurement_start_time (Unix seconds), so a recent window reads a
     *   recent partition and old months can be detached or dropped whole;
     *   px_ensure_month makes a month's partitions;
     * - a unique constraint must hold the partition key: content is
     *   deduplicated on (content_sha256, measurement_start_time), the
     *   start time coming from the content itself;
     * - measurement_uids maps a uid to its row, one index probe instead of
     *   one per partition;
     * - analysis_queue holds every measurement not summarised yet, written
     *   in the transaction that stores it: with several writers ids do not
     *   commit in order, so "analysed up to id N" could pass one by. */
    "CREATE TABLE keys ("
    "  key_id text PRIMARY KEY,"
    "  public_key text NOT NULL,"
    "  first_seen bigint NOT NULL,"
    "  last_seen bigint NOT NULL,"
    "  valid_before bigint);"
    "CREATE SEQUENCE measurements_id_seq;"
    "CREATE TABLE measurements ("
    "  id bigint NOT NULL DEFAULT nextval('measurements_id_seq'),"
    "  uid text NOT NULL,"
    "  content_sha256 bytea NOT NULL,"
    "  content bytea NOT NULL,"
    "  signature text NOT NULL,"
    "  key_id text NOT NULL REFERENCES keys (key_id),"
    "  probe_cc text NOT NULL,"
    "  probe_asn text NOT NULL,"
    "  test_name text NOT NULL,"
    "  input text NOT NULL,"
    "  domain text NOT NULL,"
    "  measurement_start_time bigint NOT NULL,"
    "  received_at bigint NOT NULL,"
    "  geo_mismatch boolean NOT NULL DEFAULT false,"
    "  uploader_cc text,"
    "  PRIMARY KEY (measurement_start_time, id),"
    "  UNIQUE (content_sha256, measurement_start_time)"
    ") PARTITION BY RANGE (measurement_start_time);"
    "ALTER SEQUENCE measurements_id_seq OWNED BY measurements.id;"
    "CREATE INDEX measurements_cc ON measurements (probe_cc, measurement_start_time, id);"
    "CREATE INDEX measurements_asn ON measurements (probe_asn, measurement_start_time, id);"
    "CREATE INDEX measurements_domain ON measurements (domain, measurement_start_time, id);"
    "CREATE INDEX measurements_key ON measurements (key_id, measurement_start_time, id);"
    "CREATE TABLE measurement_uids ("
    "  uid text PRIMARY KEY,"
    "  measurement_start_time bigint NOT NULL,"
    "  measurement_id bigint NOT NULL);"
    "CREATE TABLE summaries ("
    "  measurement_start_time bigint NOT NULL,"
    "  measurement_id bigint NOT NULL,"
    "  uid text NOT NULL,"
    "  key_id text NOT NULL,"
    "  probe_cc text NOT NULL,"
    "  probe_asn text NOT NULL,"
    "  domain text NOT NULL,"
    "  summary text NOT NULL,"
    "  PRIMARY KEY (measurement_start_time, measurement_id)"
    ") PARTITION BY RANGE (measurement_start_time);"
    "CREATE INDEX summaries_domain ON summaries (domain, measurement_start_time);"
    "CREATE TABLE analysis_queue ("
    "  seq bigserial PRIMARY KEY,"
    "  measurement_start_time bigint NOT NULL,"
    "  measurement_id bigint NOT NULL);"
    /* A month's partitions, in the schema the tables live in. Made apart
     * and then attached: ATTACH PARTITION takes a lock that readers and
     * writers of the parent do not wait for (CREATE TABLE … PARTITION OF
     * would queue every insert behind any open export). The advisory lock
     * makes two nodes that meet a new month at once make it once. */
    "CREATE FUNCTION px_ensure_month(t bigint) RETURNS void LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "  lo timestamp := date_trunc('month', to_timestamp(t) AT TIME ZONE 'UTC');\n"
    "  a bigint := extract(epoch FROM lo)::bigint;\n"
    "  b bigint := extract(epoch FROM lo + interval '1 month')::bigint;\n"
    "  suffix text := to_char(lo, 'YYYYMM') ||\n"
    "                 CASE WHEN lo < timestamp '0001-01-01' THEN '_bc' ELSE '' END;\n"
    "  sch text := current_schema();\n"
    "  parent text;\n"
    "  part text;\n"
    "BEGIN\n"
    "  FOREACH parent IN ARRAY ARRAY['measurements', 'summaries'] LOOP\n"
    "    part := parent || '_p' || suffix;\n"
    "    CONTINUE WHEN to_regclass(format('%I.%I', sch, part)) IS NOT NULL;\n"
    "    PERFORM pg_advisory_xact_lock(" PX__PG_LOCK_CLASS ", 2);\n"
    "    PERFORM set_config('lock_timeout', '10s', true);\n"
    /* The catalog this statement sees may predate the lock: a node that
     * made the month meanwhile (create and attach in one commit, under
     * the lock) shows as a duplicate table. */
    "    BEGIN\n"
    "      EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING "
    "CONSTRAINTS)', sch, part, sch, parent);\n"
    "      EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%s) "
    "TO (%s)', sch, parent, sch, part, a, b);\n"
    "    EXCEPTION WHEN duplicate_table THEN\n"
    "      NULL;\n"
    "    END;\n"
    "  END LOOP;\n"
    "END\n"
    "$f$;",
    /* 2: `parallax-collector migrate` (collector/tools/migrate.c): each source's
     * progress, moved in the transaction of the batch it covers, so a
     * migration interrupted anywhere resumes after its last commit; and
     * the source rows it refused, with why. */
    "CREATE TABLE migrations ("
    "  source text PRIMARY KEY,"
    "  last_id bigint NOT NULL,"
    "  copied bigint NOT NULL,"
    "  present bigint NOT NULL,"
    "  started_at bigint NOT NULL,"
    "  updated_at bigint NOT NULL);"
    "CREATE TABLE migration_refused ("
    "  source text NOT NULL REFERENCES migrations (source),"
    "  uid text NOT NULL,"
    "  reason text NOT NULL,"
    "  PRIMARY KEY (source, uid));",
    /* 3: the analysis's own findings (the SQLite store's migration 5):
     * whether an agent's certificate fields differ from the DER's, the
     * measurements it could not analyse (quarantined: never retried, so a
     * poison row cannot stop it), and the analysis version the summaries
     * were made by. The queue index answers "is it pending?" per row of a
     * listing. */
    "ALTER TABLE summaries ADD COLUMN claims_mismatch boolean NOT NULL DEFAULT false;"
    "CREATE TABLE quarantine ("
    "  measurement_start_time bigint NOT NULL,"
    "  measurement_id bigint NOT NULL,"
    "  uid text NOT NULL,"
    "  reason text NOT NULL,"
    "  quarantined_at bigint NOT NULL,"
    "  PRIMARY KEY (measurement_start_time, measurement_id));"
    "CREATE INDEX quarantine_recent ON quarantine (quarantined_at, measurement_id);"
    "CREATE INDEX analysis_queue_measurement ON analysis_queue (measurement_id);"
    "CREATE TABLE analysis_version (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL);"
    "INSERT INTO analysis_version VALUES (1, 1);",
    /* 4: chain completion (the SQLite store's migration 6): the pool of
     * intermediates, and which summaries wait for an issuer (queued
     * again when the pool grows). */
    "ALTER TABLE summaries ADD COLUMN awaiting_issuer boolean NOT NULL DEFAULT false;"
    "CREATE TABLE intermediate_pool ("
    "  sha256 bytea PRIMARY KEY,"
    "  der bytea NOT NULL,"
    "  added_at bigint NOT NULL);"
    "CREATE INDEX summaries_awaiting ON summaries (measurement_id) WHERE awaiting_issuer;",
    /* 5: a digest of each summary (the SQLite store's migration 7). */
    "ALTER TABLE summaries ADD COLUMN digest text;",
    /* 6: what the window's listing reads, all but the texts, in one index
     * (the SQLite store's migration 8): index-only scans. */
    "CREATE INDEX summaries_window ON summaries (domain, measurement_start_time) "
    "INCLUDE (measurement_id, key_id, digest, uid, probe_cc, probe_asn);"
    "DROP INDEX summaries_domain;",
    /* 7: the measurement log (store_pg_log.c; the SQLite store's
     * migration 9), and its head: one row, the size and the frontier, that
     * every appender locks, so the nodes on one database keep one log in
     * one order. What is stored already is added at the next start. */
    "CREATE TABLE log_leaves (leaf_index bigint PRIMARY KEY, "
    "measurement_uid text NOT NULL UNIQUE, content_sha256 bytea NOT NULL UNIQUE, "
    "received_at bigint NOT NULL);"
    "CREATE TABLE log_nodes (level int NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, "
    "PRIMARY KEY (level, idx));"
    "CREATE TABLE log_head (id int PRIMARY KEY CHECK (id = 1), size bigint NOT NULL, "
    "frontier bytea NOT NULL);"
    "INSERT INTO log_head VALUES (1, 0, ''::bytea);",
    /* 8: the signed tree heads, the first of each size, whichever node
     * signed it (the SQLite store's migration 10). */
    "CREATE TABLE log_heads (tree_size bigint PRIMARY KEY, root_hash bytea NOT NULL, "
    "signed_at bigint NOT NULL, key_id text NOT NULL, public_key text NOT NULL, "
    "signature text NOT NULL);",
    NULL,
};

static int px__pg_do(PGconn *conn, const char *sql, ExecStatusType want, char *err,
                     size_t errlen) {
  PGresult *r = PQexec(conn, sql);
  bool ok = r != NULL && PQresultStatus(r) == want;
  if (!ok) {
    snprintf(err, errlen, "postgresql: %s", PQerrorMessage(conn));
    err[strcspn(err, "\n")] = '\0';
  }
  PQclear(r);
  return ok ? 0 : -EIO;
}

/* Under the session advisory lock: a node that starts while another
 * migrates waits, then finds the work done. */
static int px__pg_migrate_locked(PGconn *conn, char *err, size_t errlen) {
  int rc = px__pg_do(conn, "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
                     PGRES_COMMAND_OK, err, errlen);
  if (rc != 0)
    return rc;
  PGresult *r = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_version");
  if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    snprintf(err, errlen, "postgresql: %s", PQerrorMessage(conn));
    PQclear(r);
    return -EIO;
  }
  int version = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  int known = 0;
  while (px__pg_migrations[known] != NULL)
    known++;
  if (version > known) {
    snprintf(err, errlen, "the database has schema version %d, newer than this collector (%d)",
             version, known);
    return -EINVAL;
  }
  for (int v = version; v < known; v++) {
    char num[16];
    snprintf(num, sizeof(num), "%d", v + 1);
    if ((rc = px__pg_do(conn, "BEGIN", PGRES_COMMAND_OK, err, errlen)) != 0)
      return rc;
    if ((rc = px__pg_do(conn, px__pg_migrations[v], PGRES_COMMAND_OK, err, errlen)) == 0) {
      const char *params[] = {num};
      r = PQexecParams(conn, "INSERT INTO schema_version VALUES ($1)", 1, NULL, params, NULL,
                       NULL, 0);
      if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "postgresql: %s", PQerrorMessage(conn));
        rc = -EIO;
      }
      PQclear(r);
    }
    if (rc == 0)
      rc = px__pg_do(conn, "COMMIT", PGRES_COMMAND_OK, err, errlen);
    if (rc != 0) {
      char ignored[8];
      px__pg_do(conn, "ROLLBACK", PGRES_COMMAND_OK, ignored, sizeof(ignored));
      return rc;
    }
  }
  return 0;
}

int px__pg_migrate(PGconn *conn, char *err, size_t errlen) {
  /* ATTACH PARTITION without blocking readers, FKs and ON CONFLICT on
   * partitioned tables: 12 and later. */
  if (PQserverVersion(conn) < 120000) {
    snprintf(err, errlen, "postgresql: server version %d: 12 or later is needed",
             PQserverVersion(conn));
    return -EINVAL;
  }
  int rc = px__pg_do(conn, "SELECT pg_advisory_lock(" PX__PG_LOCK_CLASS ", 1)", PGRES_TUPLES_OK,
                     err, errlen);
  if (rc != 0)
    return rc;
  rc = px__pg_migrate_locked(conn, err, errlen);
  char ignored[8];
  px__pg_do(conn, "SELECT pg_advisory_unlock(" PX__PG_LOCK_CLASS ", 1)", PGRES_TUPLES_OK,
            ignored, sizeof(ignored));
  return rc;
}

/* ---- months ------------------------------------------------------------ */

static int32_t px__pg_month(int64_t t) {
  struct tm tm;
  time_t tt = (time_t)t;
  if (gmtime_r(&tt, &tm) == NULL)
    return INT32_MIN;
  return (int32_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

static bool px__pg_month_known(px__pg_t *s, int32_t m) {
  bool known = false;
  pthread_mutex_lock(&s->months_mu);
  for (size_t i = 0; i < s->nmonths && !known; i++)
    known = s->months[i] == m;
  pthread_mutex_unlock(&s->months_mu);
  return known;
}

int px__pg_ensure_month(px__pg_t *s, px__pgconn_t *c, int64_t t) {
  int32_t m = px__pg_month(t);
  if (px__pg_month_known(s, m))
    return 0;
  px__pg_args_t a = {0};
  px__pg_i64(&a, t);
  PGresult *r = px__pg_run(c, PX__PG_ENSURE_MONTH, &a, false);
  bool ok = px__pg_ok(c, r, PGRES_TUPLES_OK, "a month's partitions");
  PQclear(r);
  if (!ok)
    return -EIO;
  pthread_mutex_lock(&s->months_mu);
  if (s->nmonths == s->months_cap) {
    size_t cap = s->months_cap ? s->months_cap * 2 : 16;
    int32_t *grown = realloc(s->months, cap * sizeof(*grown));
    if (grown != NULL) {
      s->months = grown;
      s->months_cap = cap;
    }
  }
  /* Out of memory: not remembered, asked again next time; no harm. */
  if (s->nmonths < s->months_cap)
    s->months[s->nmonths++] = m;
  pthread_mutex_unlock(&s->months_mu);
  return 0;
}

void px__pg_forget_month(px__pg_t *s, int64_t t) {
  int32_t m = px__pg_month(t);
  pthread_mutex_lock(&s->months_mu);
  for (size_t i = 0; i < s->nmonths; i++)
    if (s->months[i] == m)
      s->months[i] = s->months[--s->nmonths];
  pthread_mutex_unlock(&s->months_mu);
}
