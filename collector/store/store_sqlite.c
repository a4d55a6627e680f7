/* The SQLite store: one writer thread doing group commits in WAL mode with
 * synchronous=FULL, a small pool of reader connections for the API. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector/store/store.h"
#include "collector/store/store_sqlite_internal.h"
#include "common/encoding.h"
#include "common/timeutil.h"

/* Versioned migrations, applied in order at start-up; never edit one that
 * has shipped, add the next. */
static const char *const px__migrations[] = {
    /* 1: measurements, keys, indexes for the researcher API filters. */
    "CREATE TABLE keys ("
    "  key_id TEXT PRIMARY KEY,"
    "  public_key TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL);"
    "CREATE TABLE measurements ("
    "  id INTEGER PRIMARY KEY,"
    "  uid TEXT NOT NULL UNIQUE,"
    "  content_sha256 BLOB NOT NULL UNIQUE,"
    "  content BLOB NOT NULL,"
    "  signature TEXT NOT NULL,"
    "  key_id TEXT NOT NULL REFERENCES keys(key_id),"
    "  probe_cc TEXT NOT NULL,"
    "  probe_asn TEXT NOT NULL,"
    "  test_name TEXT NOT NULL,"
    "  input TEXT NOT NULL,"
    "  domain TEXT NOT NULL,"
    "  measurement_start_time INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL);"
    "CREATE INDEX measurements_time ON measurements(measurement_start_time, id);"
    "CREATE INDEX measurements_cc ON measurements(probe_cc, measurement_start_time, id);"
    "CREATE INDEX measurements_asn ON measurements(probe_asn, measurement_start_time, id);"
    "CREATE INDEX measurements_domain ON measurements(domain, measurement_start_time, id);"
    "CREATE INDEX measurements_key ON measurements(key_id, measurement_start_time, id);",
    /* 2: what the comparison reads, one summary per analysed measurement
     * (collector/analysis/analysis.c), and how far the analysis has got. */
    "CREATE TABLE summaries ("
    "  measurement_id INTEGER PRIMARY KEY REFERENCES measurements(id),"
    "  uid TEXT NOT NULL,"
    "  key_id TEXT NOT NULL,"
    "  probe_cc TEXT NOT NULL,"
    "  probe_asn TEXT NOT NULL,"
    "  domain TEXT NOT NULL,"
    "  measurement_start_time INTEGER NOT NULL,"
    "  summary TEXT NOT NULL);"
    "CREATE INDEX summaries_domain ON summaries(domain, measurement_start_time);"
    "CREATE TABLE analysis_state (id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL);"
    "INSERT INTO analysis_state VALUES (1, 0);",
    /* 3: submissions whose claimed country is not where the upload came
     * from are kept and flagged; uploader_cc is that country, set only on
     * a mismatch. Never an address. */
    "ALTER TABLE measurements ADD COLUMN geo_mismatch INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE measurements ADD COLUMN uploader_cc TEXT;",
    /* 4: key rotation: a rotated key signs only what started before this
     * time (NULL: still current). */
    "ALTER TABLE keys ADD COLUMN valid_before INTEGER;",
    /* 5: the analysis's own findings: whether an agent's certificate
     * fields differ from the DER's, measurements it could not analyse
     * (quarantined, never retried: a poison row must not stop it), and
     * the analysis version the summaries were made by (a newer one
     * summarises everything again). */
    "ALTER TABLE summaries ADD COLUMN claims_mismatch INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE quarantine ("
    "  measurement_id INTEGER PRIMARY KEY REFERENCES measurements(id),"
    "  uid TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  quarantined_at INTEGER NOT NULL);"
    "CREATE TABLE analysis_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);"
    "INSERT INTO analysis_version VALUES (1, 1);",
    /* 6: chain completion (collector/analysis/summary.h): the intermediates seen
     * in stored chains that chain to the trust store, and the
     * measurements to summarise again when that pool grows (their chain
     * lacked an issuer). */
    "ALTER TABLE summaries ADD COLUMN awaiting_issuer INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE intermediate_pool ("
    "  sha256 BLOB PRIMARY KEY,"
    "  der BLOB NOT NULL,"
    "  added_at INTEGER NOT NULL);"
    "CREATE TABLE analysis_recheck (measurement_id INTEGER PRIMARY KEY);",
    /* 7: a digest of each summary, so a window's repeated summaries (a
     * vantage measuring every hour sees the same thing) are read once. */
    "ALTER TABLE summaries ADD COLUMN digest TEXT;",
    /* 8: the window's listing reads every row's key, digest and uid but
     * only a few texts (collector/store/summary_rows.h): an index that holds
     * all of it but the text, so the scan never touches the table. It
     * begins like summaries_domain, which it replaces. */
    "CREATE INDEX summaries_window ON summaries(domain, measurement_start_time, key_id, digest, "
    "uid, probe_cc, probe_asn);"
    "DROP INDEX summaries_domain;",
    /* 9: the measurement log (store_sqlite_log.c); what is stored already
     * is added at the next start, in the order it was stored. */
    "CREATE TABLE log_leaves (leaf_index INTEGER PRIMARY KEY, "
    "measurement_uid TEXT NOT NULL UNIQUE, content_sha256 BLOB NOT NULL UNIQUE, "
    "received_at INTEGER NOT NULL);"
    "CREATE TABLE log_nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
    "PRIMARY KEY (level, idx)) WITHOUT ROWID;",
    /* 10: the signed tree heads, the first of each size
     * (collector/log/sth.c). */
    "CREATE TABLE log_heads (tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL, "
    "signed_at INTEGER NOT NULL, key_id TEXT NOT NULL, public_key TEXT NOT NULL, "
    "signature TEXT NOT NULL);",
    NULL,
};

static int px__exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -EIO;
  }
  return 0;
}

static int px__migrate(sqlite3 *db, char *err, size_t errlen) {
  int rc = px__exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
                    err, errlen);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st;
  int version = 0;
  if (sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW)
      version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
  }
  int known = 0;
  while (px__migrations[known] != NULL)
    known++;
  if (version > known) {
    snprintf(err, errlen, "the database has schema version %d, newer than this collector (%d)",
             version, known);
    return -EINVAL;
  }
  for (int v = version; v < known; v++) {
    char bump[96];
    snprintf(bump, sizeof(bump), "INSERT INTO schema_version VALUES (%d);", v + 1);
    if ((rc = px__exec(db, "BEGIN IMMEDIATE;", err, errlen)) != 0)
      return rc;
    if ((rc = px__exec(db, px__migrations[v], err, errlen)) != 0 ||
        (rc = px__exec(db, bump, err, errlen)) != 0) {
      px__exec(db, "ROLLBACK;", err + strlen(err), 0);
      return rc;
    }
    if ((rc = px__exec(db, "COMMIT;", err, errlen)) != 0)
      return rc;
  }
  return 0;
}

static int px__open_conn(const char *path, bool readonly, sqlite3 **db, char *err, size_t errlen) {
  int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
              SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path, *db ? sqlite3_errmsg(*db) : "out of memory");
    sqlite3_close(*db);
    *db = NULL;
    return -EIO;
  }
  sqlite3_busy_timeout(*db, 10000);
  return 0;
}

/* Writes one submission inside the open transaction. */
static int px__write_submission(px__sqlite_t *s, px__job_t *j) {
  px_submission_t *sub = j->sub;
  sqlite3_stmt *k = s->ins_key, *m = s->ins_m, *f = s->find;

  /* Content already stored (a retry, or the same bytes signed by another
   * key): nothing changes, not even the key list. The writer is the only
   * writer, so this check cannot race. */
  sqlite3_reset(f);
  sqlite3_bind_blob(f, 1, sub->sha256, 32, SQLITE_STATIC);
  int step = sqlite3_step(f);
  if (step == SQLITE_ROW) {
    snprintf(sub->stored_key_id, sizeof(sub->stored_key_id), "%s",
             (const char *)sqlite3_column_text(f, 0));
    sqlite3_reset(f);
    j->duplicate = true;
    return px__sq_log_index_of(s, sub->sha256, &sub->leaf_index);
  }
  sqlite3_reset(f);
  if (step != SQLITE_DONE)
    return -EIO;
  /* A key rotated away signs nothing that started at or after the
   * rotation; what it signed before (spooled, uploaded late) is fine.
   * Checked here, by the only writer, so no rotation slips in between. */
  sqlite3_stmt *vb = s->key_vb;
  sqlite3_reset(vb);
  sqlite3_bind_text(vb, 1, sub->key->key_id, -1, SQLITE_STATIC);
  step = sqlite3_step(vb);
  if (step == SQLITE_ROW && sqlite3_column_type(vb, 0) != SQLITE_NULL &&
      sub->meta.measurement_start_time >= (time_t)sqlite3_column_int64(vb, 0)) {
    sub->key_valid_before = (time_t)sqlite3_column_int64(vb, 0);
    sqlite3_reset(vb);
    return -EKEYREVOKED;
  }
  sqlite3_reset(vb);
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    return -EIO;
  snprintf(sub->stored_key_id, sizeof(sub->stored_key_id), "%s", sub->key->key_id);
  char *line = px_ssh_pubkey_line(sub->key);
  if (line == NULL)
    return -ENOMEM;
  sqlite3_reset(k);
  sqlite3_bind_text(k, 1, sub->key->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(k, 2, line, -1, SQLITE_STATIC);
  sqlite3_bind_int64(k, 3, sub->received_at);
  int rc = sqlite3_step(k);
  free(line);
  if (rc != SQLITE_DONE)
    return -EIO;
  sqlite3_reset(m);
  sqlite3_bind_text(m, 1, sub->uid, -1, SQLITE_STATIC);
  sqlite3_bind_blob(m, 2, sub->sha256, 32, SQLITE_STATIC);
  sqlite3_bind_blob(m, 3, sub->content, (int)sub->content_len, SQLITE_STATIC);
  sqlite3_bind_text(m, 4, sub->signature, -1, SQLITE_STATIC);
  sqlite3_bind_text(m, 5, sub->key->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(m, 6, sub->meta.probe_cc, -1, SQLITE_STATIC);
  sqlite3_bind_text(m, 7, sub->meta.probe_asn, -1, SQLITE_STATIC);
  sqlite3_bind_text(m, 8, sub->meta.test_name, -1, SQLITE_STATIC);
  sqlite3_bind_text(m, 9, sub->meta.input, -1, SQLITE_STATIC);
  sqlite3_bind_text(m, 10, sub->meta.domain, -1, SQLITE_STATIC);
  sqlite3_bind_int64(m, 11, sub->meta.measurement_start_time);
  sqlite3_bind_int64(m, 12, sub->received_at);
  sqlite3_bind_int(m, 13, sub->geo_mismatch ? 1 : 0);
  if (sub->geo_mismatch)
    sqlite3_bind_text(m, 14, sub->uploader_cc, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(m, 14);
  rc = sqlite3_step(m);
  if (rc != SQLITE_DONE)
    return -EIO;
  j->duplicate = false;
  return px__sq_log_append(s, sub);
}

static void *px__writer_main(void *arg) {
  px__sqlite_t *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (s->head == NULL && !s->stopping)
      pthread_cond_wait(&s->work_cv, &s->mu);
    if (s->head == NULL && s->stopping) {
      pthread_mutex_unlock(&s->mu);
      break;
    }
    px__job_t *batch = s->head, *last = batch;
    int n = 1;
    while (last->next != NULL && n < PX__BATCH_MAX) {
      last = last->next;
      n++;
    }
    s->head = last->next;
    if (s->head == NULL)
      s->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&s->mu);

    char err[256];
    bool ok = px__exec(s->writer, "BEGIN IMMEDIATE;", err, sizeof(err)) == 0;
    for (px__job_t *j = batch; j != NULL; j = j->next) {
      if (!ok) {
        j->rc = -EIO;
        continue;
      }
      /* A savepoint per job: one bad row must not sink the batch (nor
       * leave its leaf in the working tree). */
      px_merkle_frontier_t before = s->log_work;
      px__exec(s->writer, "SAVEPOINT job;", err, sizeof(err));
      j->rc = j->write(s, j);
      px__exec(s->writer, j->rc == 0 ? "RELEASE job;" : "ROLLBACK TO job; RELEASE job;", err,
               sizeof(err));
      if (j->rc != 0)
        s->log_work = before;
    }
    bool committed = ok;
    if (ok && px__exec(s->writer, "COMMIT;", err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax-collector: commit failed: %s\n", err);
      px__exec(s->writer, "ROLLBACK;", err, sizeof(err));
      for (px__job_t *j = batch; j != NULL; j = j->next)
        j->rc = -EIO;
      committed = false;
    }
    px__sq_log_committed(s, committed);
    if (ok && s->on_commit != NULL)
      s->on_commit(s->on_commit_data);
    pthread_mutex_lock(&s->mu);
    for (px__job_t *j = batch, *next; j != NULL; j = next) {
      next = j->next; /* j lives on its waiter's stack: read before waking it */
      j->done = true;
      pthread_cond_signal(&j->cv);
    }
    pthread_mutex_unlock(&s->mu);
  }
  return NULL;
}

static const px_store_ops_t px__sqlite_ops;

int px_store_sqlite_open(const char *path, px_store_t **out, char *err, size_t errlen) {
  px__sqlite_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return -ENOMEM;
  s->base.ops = &px__sqlite_ops;
  snprintf(s->path, sizeof(s->path), "%s", path);
  int rc = px__open_conn(s->path, false, &s->writer, err, errlen);
  if (rc == 0)
    rc = px__exec(s->writer,
                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                  err, errlen);
  if (rc == 0)
    rc = px__migrate(s->writer, err, errlen);
  if (rc == 0 &&
      (sqlite3_prepare_v3(s->writer,
                          "INSERT INTO keys (key_id, public_key, first_seen, last_seen) "
                          "VALUES (?1, ?2, ?3, ?3) ON CONFLICT(key_id) DO UPDATE SET "
                          "last_seen = max(last_seen, excluded.last_seen)",
                          -1, SQLITE_PREPARE_PERSISTENT, &s->ins_key, NULL) != SQLITE_OK ||
       sqlite3_prepare_v3(s->writer,
                          "INSERT INTO measurements (uid, content_sha256, content, signature, "
                          "key_id, probe_cc, probe_asn, test_name, input, domain, "
                          "measurement_start_time, received_at, geo_mismatch, uploader_cc) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                          "ON CONFLICT(content_sha256) DO NOTHING",
                          -1, SQLITE_PREPARE_PERSISTENT, &s->ins_m, NULL) != SQLITE_OK ||
       sqlite3_prepare_v3(s->writer, "SELECT key_id FROM measurements WHERE content_sha256 = ?1",
                          -1, SQLITE_PREPARE_PERSISTENT, &s->find, NULL) != SQLITE_OK ||
       sqlite3_prepare_v3(s->writer, "SELECT valid_before FROM keys WHERE key_id = ?1", -1,
                          SQLITE_PREPARE_PERSISTENT, &s->key_vb, NULL) != SQLITE_OK ||
       sqlite3_prepare_v3(s->writer,
                          "INSERT OR REPLACE INTO summaries (measurement_id, uid, key_id, probe_cc, "
                          "probe_asn, domain, measurement_start_time, summary, claims_mismatch, "
                          "awaiting_issuer, digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                          "?11)",
                          -1, SQLITE_PREPARE_PERSISTENT, &s->ins_summary, NULL) != SQLITE_OK ||
       sqlite3_prepare_v3(s->writer,
                          "UPDATE analysis_state SET last_id = max(last_id, ?1) WHERE id = 1", -1,
                          SQLITE_PREPARE_PERSISTENT, &s->set_analyzed, NULL) != SQLITE_OK)) {
    snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(s->writer));
    rc = -EIO;
  }
  for (int i = 0; rc == 0 && i < PX__READERS; i++)
    rc = px__open_conn(s->path, true, &s->readers[i], err, errlen);
  bool log_opened = rc == 0;
  if (rc == 0)
    rc = px__sq_log_open(s, err, errlen);
  if (rc != 0) {
    if (log_opened)
      px__sq_log_close(s);
    sqlite3_finalize(s->ins_key);
    sqlite3_finalize(s->ins_m);
    sqlite3_finalize(s->find);
    sqlite3_finalize(s->key_vb);
    sqlite3_finalize(s->ins_summary);
    sqlite3_finalize(s->set_analyzed);
    for (int i = 0; i < PX__READERS; i++)
      sqlite3_close(s->readers[i]);
    sqlite3_close(s->writer);
    free(s);
    return rc;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work_cv, NULL);
  pthread_mutex_init(&s->rmu, NULL);
  pthread_cond_init(&s->rcv, NULL);
  pthread_create(&s->thread, NULL, px__writer_main, s);
  *out = &s->base;
  return 0;
}

/* Reader connections only, each opened read-only: SQLite itself refuses
 * any write, and nothing here creates the file or migrates its schema.
 * The schema must be the one this collector writes (an older database is
 * brought up to date by running the collector on it once). */
int px_store_sqlite_open_readonly(const char *path, px_store_t **out, char *err, size_t errlen) {
  if (access(path, F_OK) != 0) {
    int e = errno;
    char why[128];
    snprintf(err, errlen, "cannot open %s: %s", path, strerror_r(e, why, sizeof(why)));
    return -e;
  }
  px__sqlite_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return -ENOMEM;
  s->base.ops = &px__sqlite_ops;
  s->readonly = true;
  snprintf(s->path, sizeof(s->path), "%s", path);
  int rc = 0;
  for (int i = 0; rc == 0 && i < PX__READERS; i++)
    rc = px__open_conn(s->path, true, &s->readers[i], err, errlen);
  int known = 0;
  while (px__migrations[known] != NULL)
    known++;
  if (rc == 0) {
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(s->readers[0], "SELECT max(version) FROM schema_version", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0) {
      snprintf(err, errlen, "%s is not a parallax-collector database: %s", path,
               sqlite3_errmsg(s->readers[0]));
      rc = -EINVAL;
    } else if (version != known) {
      snprintf(err, errlen,
               "%s has schema version %d, this collector's is %d (run this version of "
               "parallax-collector on it once, or use the matching one)",
               path, version, known);
      rc = -EINVAL;
    }
  }
  if (rc == 0 && (rc = px__sq_log_open(s, err, errlen)) != 0)
    px__sq_log_close(s);
  if (rc != 0) {
    for (int i = 0; i < PX__READERS; i++)
      sqlite3_close(s->readers[i]);
    free(s);
    return rc;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work_cv, NULL);
  pthread_mutex_init(&s->rmu, NULL);
  pthread_cond_init(&s->rcv, NULL);
  *out = &s->base;
  return 0;
}

static void px__sq_close(px_store_t *base) {
  px__sqlite_t *s = px__sq(base);
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_cond_broadcast(&s->work_cv);
  pthread_mutex_unlock(&s->mu);
  if (!s->readonly)
    pthread_join(s->thread, NULL);
  sqlite3_finalize(s->ins_key);
  sqlite3_finalize(s->ins_m);
  sqlite3_finalize(s->find);
  sqlite3_finalize(s->key_vb);
  sqlite3_finalize(s->ins_summary);
  sqlite3_finalize(s->set_analyzed);
  px__sq_log_close(s);
  for (int i = 0; i < PX__READERS; i++)
    sqlite3_close(s->readers[i]);
  sqlite3_close(s->writer);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->work_cv);
  pthread_mutex_destroy(&s->rmu);
  pthread_cond_destroy(&s->rcv);
  free(s);
}

int px__store_run(px__sqlite_t *s, px__job_t *job) {
  if (s->readonly)
    return -EROFS;
  pthread_cond_init(&job->cv, NULL);
  job->done = false;
  job->next = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->stopping) {
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&job->cv);
    return -ESHUTDOWN;
  }
  if (s->tail != NULL)
    s->tail->next = job;
  else
    s->head = job;
  s->tail = job;
  pthread_cond_signal(&s->work_cv);
  while (!job->done)
    pthread_cond_wait(&job->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  pthread_cond_destroy(&job->cv);
  return job->rc;
}

static int px__sq_put(px_store_t *base, px_submission_t *sub, bool *duplicate) {
  px__sqlite_t *s = px__sq(base);
  px__job_t job = {.write = px__write_submission, .sub = sub};
  int rc = px__store_run(s, &job);
  *duplicate = job.duplicate;
  return rc;
}

typedef struct {
  const px_ssh_pubkey_t *old_key, *new_key;
  time_t valid_before, now, stored;
} px__rotation_t;

/* Runs one statement of the rotation: binds key_id (?1), then the public
 * key line (?2) and a time (?3) when given. */
static int px__rotation_step(sqlite3 *db, const char *sql, const px_ssh_pubkey_t *key,
                             bool with_line, int64_t t) {
  sqlite3_stmt *st;
  char *line = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return -EIO;
  sqlite3_bind_text(st, 1, key->key_id, -1, SQLITE_STATIC);
  if (with_line) {
    line = px_ssh_pubkey_line(key);
    if (line == NULL) {
      sqlite3_finalize(st);
      return -ENOMEM;
    }
    sqlite3_bind_text(st, 2, line, -1, SQLITE_STATIC);
  }
  sqlite3_bind_int64(st, 3, t);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  free(line);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

/* valid_before of key_id into *out (0 when NULL or unknown). */
static int px__valid_before(sqlite3 *db, const char *key_id, time_t *out) {
  sqlite3_stmt *st;
  *out = 0;
  if (sqlite3_prepare_v2(db, "SELECT coalesce(valid_before, 0) FROM keys WHERE key_id = ?1", -1,
                         &st, NULL) != SQLITE_OK)
    return -EIO;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW)
    *out = (time_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -EIO;
}

static int px__write_rotation(px__sqlite_t *s, px__job_t *j) {
  px__rotation_t *rot = j->arg;
  time_t old_vb, new_vb;
  int rc;
  /* The earliest rotation of old_key counts: a statement sent again (a
   * retry, or clamped to a later "now") moves nothing. */
  if ((rc = px__valid_before(s->writer, rot->old_key->key_id, &old_vb)) != 0 ||
      (rc = px__valid_before(s->writer, rot->new_key->key_id, &new_vb)) != 0)
    return rc;
  time_t effective = old_vb != 0 && old_vb < rot->valid_before ? old_vb : rot->valid_before;
  if (new_vb != 0 && new_vb <= effective)
    return -ESTALE;
  static const char *const add_key =
      "INSERT INTO keys (key_id, public_key, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3) "
      "ON CONFLICT(key_id) DO NOTHING";
  if ((rc = px__rotation_step(s->writer, add_key, rot->old_key, true, rot->now)) != 0 ||
      (rc = px__rotation_step(s->writer,
                              "UPDATE keys SET valid_before = ?3 WHERE key_id = ?1", rot->old_key,
                              false, effective)) != 0 ||
      (rc = px__rotation_step(s->writer, add_key, rot->new_key, true, rot->now)) != 0)
    return rc;
  rot->stored = effective;
  return 0;
}

static int px__sq_rotate_key(px_store_t *base, const px_ssh_pubkey_t *old_key,
                             const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                             time_t *stored) {
  px__sqlite_t *s = px__sq(base);
  px__rotation_t rot = {old_key, new_key, valid_before, now, 0};
  px__job_t job = {.write = px__write_rotation, .arg = &rot};
  int rc = px__store_run(s, &job);
  if (rc == 0)
    *stored = rot.stored;
  return rc;
}

static void px__sq_set_commit_hook(px_store_t *base, void (*fn)(void *data), void *data) {
  px__sqlite_t *s = px__sq(base);
  pthread_mutex_lock(&s->mu);
  s->on_commit = fn;
  s->on_commit_data = data;
  pthread_mutex_unlock(&s->mu);
}

sqlite3 *px__store_reader(px__sqlite_t *s, int *slot) {
  pthread_mutex_lock(&s->rmu);
  for (;;) {
    for (int i = 0; i < PX__READERS; i++)
      if (!s->reader_busy[i]) {
        s->reader_busy[i] = true;
        *slot = i;
        pthread_mutex_unlock(&s->rmu);
        return s->readers[i];
      }
    pthread_cond_wait(&s->rcv, &s->rmu);
  }
}

void px__store_reader_done(px__sqlite_t *s, int slot) {
  pthread_mutex_lock(&s->rmu);
  s->reader_busy[slot] = false;
  pthread_cond_signal(&s->rcv);
  pthread_mutex_unlock(&s->rmu);
}

static char *px__dup_col(sqlite3_stmt *st, int col, size_t *len) {
  int n = sqlite3_column_bytes(st, col);
  const void *p = sqlite3_column_blob(st, col);
  char *out = malloc((size_t)n + 1);
  if (out == NULL)
    return NULL;
  if (n > 0)
    memcpy(out, p, (size_t)n);
  out[n] = '\0';
  if (len != NULL)
    *len = (size_t)n;
  return out;
}

static int px__sq_get(px_store_t *base, const char *uid, char **content, size_t *content_len,
                      char **signature, char **key_id) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int rc = -EIO;
  if (sqlite3_prepare_v2(db, "SELECT content, signature, key_id FROM measurements WHERE uid = ?1",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, uid, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
      *content = px__dup_col(st, 0, content_len);
      *signature = px__dup_col(st, 1, NULL);
      *key_id = px__dup_col(st, 2, NULL);
      rc = (*content && *signature && *key_id) ? 0 : -ENOMEM;
    } else {
      rc = step == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(st);
  }
  px__store_reader_done(s, slot);
  return rc;
}

/* WHERE clause and bindings shared by list and export. */
typedef struct {
  char sql[1024];
  const char *text[5];
  int ntext;
  int64_t ints[4];
  int nints;
} px__where_t;

static void px__where(const px_filter_t *f, px__where_t *w) {
  static const char *const cols[] = {"probe_cc", "probe_asn", "domain", "test_name", "key_id"};
  const char *vals[] = {f->probe_cc, f->probe_asn, f->domain, f->test_name, f->key_id};
  memset(w, 0, sizeof(*w));
  strcpy(w->sql, " WHERE 1");
  for (int i = 0; i < 5; i++) {
    if (vals[i] == NULL)
      continue;
    snprintf(w->sql + strlen(w->sql), sizeof(w->sql) - strlen(w->sql), " AND %s = ?%d", cols[i],
             w->ntext + 1);
    w->text[w->ntext++] = vals[i];
  }
  if (f->has_since) {
    snprintf(w->sql + strlen(w->sql), sizeof(w->sql) - strlen(w->sql),
             " AND measurement_start_time >= ?%d", 10 + w->nints);
    w->ints[w->nints++] = f->since;
  }
  if (f->has_until) {
    snprintf(w->sql + strlen(w->sql), sizeof(w->sql) - strlen(w->sql),
             " AND measurement_start_time < ?%d", 10 + w->nints);
    w->ints[w->nints++] = f->until;
  }
}

static void px__bind_where(sqlite3_stmt *st, const px__where_t *w) {
  for (int i = 0; i < w->ntext; i++)
    sqlite3_bind_text(st, i + 1, w->text[i], -1, SQLITE_STATIC);
  for (int i = 0; i < w->nints; i++)
    sqlite3_bind_int64(st, 10 + i, w->ints[i]);
}

static int px__sq_list(px_store_t *base, const px_filter_t *f, json_t **results,
                       char *next_cursor, size_t cursor_len) {
  px__sqlite_t *s = px__sq(base);
  px__where_t w;
  char sql[2048];
  unsigned limit = f->limit ? f->limit : 100;
  px__where(f, &w);
  snprintf(sql, sizeof(sql),
           "SELECT id, uid, input, probe_cc, probe_asn, test_name, measurement_start_time, key_id, "
           "geo_mismatch, "
           "(SELECT claims_mismatch FROM summaries WHERE measurement_id = measurements.id), "
           "EXISTS (SELECT 1 FROM quarantine WHERE measurement_id = measurements.id), "
           "id <= (SELECT last_id FROM analysis_state WHERE id = 1) "
           "FROM measurements%s%s ORDER BY measurement_start_time DESC, id DESC LIMIT ?20",
           w.sql, f->has_cursor ? " AND (measurement_start_time, id) < (?18, ?19)" : "");
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int rc = 0;
  next_cursor[0] = '\0';
  *results = json_array();
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    px__store_reader_done(s, slot);
    return -EIO;
  }
  px__bind_where(st, &w);
  if (f->has_cursor) {
    sqlite3_bind_int64(st, 18, f->cursor_time);
    sqlite3_bind_int64(st, 19, f->cursor_id);
  }
  /* One extra row says whether there is a next page. */
  sqlite3_bind_int64(st, 20, (sqlite3_int64)limit + 1);
  unsigned n = 0;
  int64_t last_t = 0, last_id = 0;
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == limit) {
      px_cursor_encode(last_t, last_id, next_cursor, cursor_len);
      break;
    }
    char mst[PX_TIME_OONI_LEN];
    last_id = sqlite3_column_int64(st, 0);
    last_t = sqlite3_column_int64(st, 6);
    px_time_format_ooni((time_t)last_t, mst);
    json_t *r = json_object();
    json_object_set_new(r, "measurement_uid", json_string((const char *)sqlite3_column_text(st, 1)));
    json_object_set_new(r, "input", json_string((const char *)sqlite3_column_text(st, 2)));
    json_object_set_new(r, "probe_cc", json_string((const char *)sqlite3_column_text(st, 3)));
    json_object_set_new(r, "probe_asn", json_string((const char *)sqlite3_column_text(st, 4)));
    json_object_set_new(r, "test_name", json_string((const char *)sqlite3_column_text(st, 5)));
    json_object_set_new(r, "measurement_start_time", json_string(mst));
    json_object_set_new(r, "key_id", json_string((const char *)sqlite3_column_text(st, 7)));
    json_object_set_new(r, "geo_mismatch", json_boolean(sqlite3_column_int(st, 8) != 0));
    json_object_set_new(r, "analysis",
                        json_string(sqlite3_column_int(st, 10) ? "quarantined"
                                    : sqlite3_column_int(st, 11) ? "analysed" : "pending"));
    json_object_set_new(r, "claims_mismatch", json_boolean(sqlite3_column_int(st, 9) != 0));
    json_array_append_new(*results, r);
    n++;
  }
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    rc = -EIO;
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

static int px__sq_keys(px_store_t *base,
                       int (*cb)(void *data, const char *key_id, const char *pubkey,
                                 time_t first_seen, time_t last_seen, time_t valid_before),
                       void *data) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int rc = 0, step = SQLITE_DONE;
  if (sqlite3_prepare_v2(db, "SELECT key_id, public_key, first_seen, last_seen, "
                             "coalesce(valid_before, 0) FROM keys ORDER BY first_seen, key_id",
                         -1, &st, NULL) != SQLITE_OK) {
    px__store_reader_done(s, slot);
    return -EIO;
  }
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
    rc = cb(data, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (time_t)sqlite3_column_int64(st, 2), (time_t)sqlite3_column_int64(st, 3),
            (time_t)sqlite3_column_int64(st, 4));
  /* A failed step (I/O error, busy) ends the loop like the last row;
   * the caller must not take a partial scan for a complete one. */
  if (rc == 0 && step != SQLITE_DONE)
    rc = -EIO;
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

typedef struct {
  px_store_export_t base;
  px_filter_t f; /* its own copies of the strings */
  int64_t after_id;
} px__sq_export_t;

static int px__sq_export_open(px_store_t *base, const px_filter_t *f, px_store_export_t **out) {
  px__sq_export_t *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return -ENOMEM;
  e->base.store = base;
  e->after_id = f->after_id;
  if (px_filter_dup(&e->f, f) != 0) {
    free(e);
    return -ENOMEM;
  }
  *out = &e->base;
  return 0;
}

/* Pages on id: the writer thread commits ids in order, so a row committed
 * before the export opened has an id below every later one and is never
 * passed over. */
static int px__sq_export_next(px_store_export_t *base, unsigned max,
                              int (*cb)(void *data, const px_stored_row_t *row), void *data) {
  px__sq_export_t *e = (px__sq_export_t *)base;
  px__sqlite_t *s = px__sq(base->store);
  px__where_t w;
  char sql[2048];
  px__where(&e->f, &w);
  snprintf(sql, sizeof(sql),
           "SELECT id, uid, key_id, content, signature, received_at, measurement_start_time, "
           "geo_mismatch, uploader_cc, content_sha256 FROM measurements%s AND id > ?18 "
           "ORDER BY id LIMIT ?19",
           w.sql);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    px__store_reader_done(s, slot);
    return -EIO;
  }
  px__bind_where(st, &w);
  sqlite3_bind_int64(st, 18, e->after_id);
  sqlite3_bind_int64(st, 19, max);
  int n = 0, step = SQLITE_DONE, rc = 0;
  size_t bytes = 0;
  /* Row by row off the statement: stopping at the byte bound leaves the
   * rest unread, for the next batch to start after e->after_id. */
  while (rc == 0 && bytes < PX_STORE_EXPORT_BATCH_BYTES &&
         (step = sqlite3_step(st)) == SQLITE_ROW) {
    bool flagged = sqlite3_column_int(st, 7) != 0;
    px_stored_row_t row = {
        .id = sqlite3_column_int64(st, 0),
        .uid = (const char *)sqlite3_column_text(st, 1),
        .key_id = (const char *)sqlite3_column_text(st, 2),
        .content = sqlite3_column_blob(st, 3),
        .content_len = (size_t)sqlite3_column_bytes(st, 3),
        .signature = (const char *)sqlite3_column_text(st, 4),
        .received_at = (time_t)sqlite3_column_int64(st, 5),
        .measurement_start_time = (time_t)sqlite3_column_int64(st, 6),
        .geo_mismatch = flagged,
        .uploader_cc = flagged ? (const char *)sqlite3_column_text(st, 8) : NULL,
    };
    /* A hash of another length is a damaged row: the migration says so. */
    static const uint8_t none[32];
    row.content_sha256 = sqlite3_column_bytes(st, 9) == 32 ? sqlite3_column_blob(st, 9) : none;
    e->after_id = row.id;
    bytes += row.content_len;
    rc = cb(data, &row);
    n++;
  }
  /* A failed step (I/O error, busy) ends the loop like the last row;
   * the caller must not take a partial scan for a complete one. */
  if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW)
    rc = -EIO;
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc != 0 ? rc : n;
}

static void px__sq_export_close(px_store_export_t *base) {
  px__sq_export_t *e = (px__sq_export_t *)base;
  px_filter_free(&e->f);
  free(e);
}

static int px__sq_count(px_store_t *base, int64_t *measurements, int64_t *keys) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st;
  int rc = -EIO;
  if (sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM measurements), "
                             "(SELECT count(*) FROM keys)",
                         -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) {
      *measurements = sqlite3_column_int64(st, 0);
      *keys = sqlite3_column_int64(st, 1);
      rc = 0;
    }
    sqlite3_finalize(st);
  }
  px__store_reader_done(s, slot);
  return rc;
}

typedef struct {
  const char *key_id, *pubkey;
  time_t first_seen, last_seen, valid_before;
} px__import_key_t;

static int px__write_import_key(px__sqlite_t *s, px__job_t *j) {
  px__import_key_t *k = j->arg;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->writer,
                         "INSERT INTO keys (key_id, public_key, first_seen, last_seen, "
                         "valid_before) VALUES (?1, ?2, ?3, ?4, nullif(?5, 0)) "
                         "ON CONFLICT(key_id) DO UPDATE SET "
                         "first_seen = min(first_seen, excluded.first_seen), "
                         "last_seen = max(last_seen, excluded.last_seen), "
                         "valid_before = CASE WHEN valid_before IS NULL THEN excluded.valid_before "
                         "WHEN excluded.valid_before IS NULL THEN valid_before "
                         "ELSE min(valid_before, excluded.valid_before) END",
                         -1, &st, NULL) != SQLITE_OK)
    return -EIO;
  sqlite3_bind_text(st, 1, k->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, k->pubkey, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, k->first_seen);
  sqlite3_bind_int64(st, 4, k->last_seen);
  sqlite3_bind_int64(st, 5, k->valid_before);
  int step = sqlite3_step(st);
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? 0 : -EIO;
}

static int px__sq_import_key(px_store_t *base, const char *key_id, const char *pubkey,
                             time_t first_seen, time_t last_seen, time_t valid_before) {
  px__import_key_t k = {key_id, pubkey, first_seen, last_seen, valid_before};
  px__job_t job = {.write = px__write_import_key, .arg = &k};
  return px__store_run(px__sq(base), &job);
}

static int px__sq_ping(px_store_t *base) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  char err[128];
  int rc = px__exec(db, "SELECT 1 FROM schema_version LIMIT 1;", err, sizeof(err));
  px__store_reader_done(s, slot);
  return rc;
}

/* A SQLite store is counted and read as a migration's source, never a
 * destination. */
static const struct px_store_migrate_ops px__sq_migrate_ops = {
    .count = px__sq_count,
    .import_key = px__sq_import_key,
};

static const px_store_ops_t px__sqlite_ops = {
    .name = "sqlite",
    .close = px__sq_close,
    .put = px__sq_put,
    .get = px__sq_get,
    .list = px__sq_list,
    .keys = px__sq_keys,
    .rotate_key = px__sq_rotate_key,
    .export_open = px__sq_export_open,
    .export_next = px__sq_export_next,
    .export_close = px__sq_export_close,
    .analyze = px__sq_analyze,
    .analysis_version = px__sq_analysis_version,
    .pool = px__sq_pool,
    .pool_add = px__sq_pool_add,
    .quarantined = px__sq_quarantined,
    .analysis_mark = px__sq_analysis_mark,
    .analysis_reached = px__sq_analysis_reached,
    .summaries = px__sq_summaries,
    .set_commit_hook = px__sq_set_commit_hook,
    .ping = px__sq_ping,
    .log_head = px__sq_log_head,
    .log_node = px__sq_log_node,
    .log_leaf = px__sq_log_leaf,
    .log_head_put = px__sq_log_head_put,
    .log_head_get = px__sq_log_head_get,
    .log_heads = px__sq_log_heads,
    .migrate = &px__sq_migrate_ops,
};
