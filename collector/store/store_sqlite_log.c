/* The measurement log on SQLite (collector/store/store.h, common/merkle.h):
 * log_leaves holds one row a stored measurement, in commit order;
 * log_nodes every perfect subtree's hash, written as the leaf that
 * completes it is appended, so that any proof reads O(log n) rows. Both
 * are written by the writer thread inside the transaction that stores the
 * measurement: a 200 implies the leaf, and a leaf never exists without
 * its measurement. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/store/store_sqlite_internal.h"

static int px__prepare(px__sqlite_t *s, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v3(s->writer, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) ==
                 SQLITE_OK
             ? 0
             : -EIO;
}

/* One leaf, appended to the writer's working tree and recorded. */
static int px__append(px__sqlite_t *s, const char *uid, const uint8_t sha[32], time_t received,
                      int64_t *index) {
  char leaf[PX_MERKLE_LEAF_MAX];
  uint8_t hash[PX_MERKLE_HASH_LEN];
  int len = px_merkle_log_leaf(sha, uid, received, leaf, sizeof(leaf));
  if (len < 0)
    return len;
  int rc = px_merkle_leaf_hash(leaf, (size_t)len, hash);
  if (rc != 0)
    return rc;
  int64_t at = (int64_t)s->log_work.size;
  px_merkle_node_t done[PX_MERKLE_MAX_DEPTH];
  int n = px_merkle_append(&s->log_work, hash, done);
  sqlite3_stmt *l = s->ins_leaf, *d = s->ins_node;
  sqlite3_reset(l);
  sqlite3_bind_int64(l, 1, at);
  sqlite3_bind_text(l, 2, uid, -1, SQLITE_STATIC);
  sqlite3_bind_blob(l, 3, sha, 32, SQLITE_STATIC);
  sqlite3_bind_int64(l, 4, received);
  if (sqlite3_step(l) != SQLITE_DONE)
    return -EIO;
  for (int i = 0; i < n; i++) {
    sqlite3_reset(d);
    sqlite3_bind_int(d, 1, (int)done[i].level);
    sqlite3_bind_int64(d, 2, (int64_t)done[i].index);
    sqlite3_bind_blob(d, 3, done[i].hash, PX_MERKLE_HASH_LEN, SQLITE_STATIC);
    if (sqlite3_step(d) != SQLITE_DONE)
      return -EIO;
  }
  *index = at;
  return 0;
}

int px__sq_log_append(px__sqlite_t *s, px_submission_t *sub) {
  return px__append(s, sub->uid, sub->sha256, sub->received_at, &sub->leaf_index);
}

int px__sq_log_index_of(px__sqlite_t *s, const uint8_t sha[32], int64_t *index) {
  sqlite3_stmt *f = s->find_leaf;
  sqlite3_reset(f);
  sqlite3_bind_blob(f, 1, sha, 32, SQLITE_STATIC);
  int step = sqlite3_step(f);
  *index = step == SQLITE_ROW ? sqlite3_column_int64(f, 0) : -1;
  sqlite3_reset(f);
  return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -EIO;
}

/* The frontier of the committed log, from its node rows: for each set bit
 * k of the size, the subtree (k, size / 2^k - 1). */
static int px__load(sqlite3 *db, px_merkle_frontier_t *f, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  px_merkle_frontier_init(f);
  int rc = -EIO;
  if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(max(leaf_index), -1) FROM log_leaves",
                         -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
    goto out;
  uint64_t size = (uint64_t)sqlite3_column_int64(st, 0);
  if (sqlite3_column_int64(st, 1) != (int64_t)size - 1) {
    snprintf(err, errlen, "the measurement log has gaps (%llu leaves, last index %lld): "
                          "its rows were edited", (unsigned long long)size,
             (long long)sqlite3_column_int64(st, 1));
    rc = -EBADMSG;
    goto out;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT hash FROM log_nodes WHERE level = ?1 AND idx = ?2", -1, &st,
                         NULL) != SQLITE_OK)
    goto out;
  for (unsigned k = 0; k < PX_MERKLE_MAX_DEPTH; k++) {
    if ((size & ((uint64_t)1 << k)) == 0)
      continue;
    sqlite3_reset(st);
    sqlite3_bind_int(st, 1, (int)k);
    sqlite3_bind_int64(st, 2, (int64_t)((size >> k) - 1));
    if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 0) != PX_MERKLE_HASH_LEN) {
      snprintf(err, errlen, "the measurement log lacks its subtree (%u, %llu): its rows were "
                            "edited", k, (unsigned long long)((size >> k) - 1));
      rc = -EBADMSG;
      goto out;
    }
    memcpy(f->nodes[k], sqlite3_column_blob(st, 0), PX_MERKLE_HASH_LEN);
  }
  f->size = size;
  rc = 0;
out:
  if (rc == -EIO)
    snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc;
}

/* Measurements stored before the log existed (or by a migration's bulk
 * import) become leaves in the order they were stored. */
static int px__backfill(px__sqlite_t *s, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  int rc = 0;
  if (sqlite3_prepare_v2(s->writer,
                         "SELECT m.uid, m.content_sha256, m.received_at FROM measurements m "
                         "WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.measurement_uid "
                         "= m.uid) ORDER BY m.id",
                         -1, &st, NULL) != SQLITE_OK)
    return -EIO;
  char *msg = NULL;
  bool began = false;
  int64_t index, added = 0;
  while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
    if (!began) {
      if (sqlite3_exec(s->writer, "BEGIN IMMEDIATE;", NULL, NULL, &msg) != SQLITE_OK) {
        rc = -EIO;
        break;
      }
      began = true;
    }
    if (sqlite3_column_bytes(st, 1) != 32) {
      rc = -EBADMSG;
      break;
    }
    rc = px__append(s, (const char *)sqlite3_column_text(st, 0), sqlite3_column_blob(st, 1),
                    (time_t)sqlite3_column_int64(st, 2), &index);
    added++;
  }
  sqlite3_finalize(st);
  if (began && sqlite3_exec(s->writer, rc == 0 ? "COMMIT;" : "ROLLBACK;", NULL, NULL, &msg) !=
                   SQLITE_OK && rc == 0)
    rc = -EIO;
  if (rc != 0) {
    char why[128];
    snprintf(err, errlen, "cannot add the stored measurements to the log: %s",
             msg != NULL     ? msg
             : rc == -EIO    ? sqlite3_errmsg(s->writer)
                             : strerror_r(-rc, why, sizeof(why)));
    s->log_work = s->log;
  } else {
    s->log = s->log_work;
    if (added > 0)
      fprintf(stderr, "parallax-collector: %lld stored measurement(s) added to the log\n",
              (long long)added);
  }
  sqlite3_free(msg);
  return rc;
}

int px__sq_log_open(px__sqlite_t *s, char *err, size_t errlen) {
  pthread_mutex_init(&s->log_mu, NULL);
  sqlite3 *db = s->readonly ? s->readers[0] : s->writer;
  int rc = px__load(db, &s->log, err, errlen);
  s->log_work = s->log;
  if (rc != 0 || s->readonly)
    return rc;
  if (px__prepare(s, "INSERT INTO log_leaves (leaf_index, measurement_uid, content_sha256, "
                     "received_at) VALUES (?1, ?2, ?3, ?4)", &s->ins_leaf) != 0 ||
      px__prepare(s, "INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
                  &s->ins_node) != 0 ||
      px__prepare(s, "SELECT leaf_index FROM log_leaves WHERE content_sha256 = ?1",
                  &s->find_leaf) != 0) {
    snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(s->writer));
    return -EIO;
  }
  return px__backfill(s, err, errlen);
}

void px__sq_log_close(px__sqlite_t *s) {
  sqlite3_finalize(s->ins_leaf);
  sqlite3_finalize(s->ins_node);
  sqlite3_finalize(s->find_leaf);
  pthread_mutex_destroy(&s->log_mu);
}

void px__sq_log_committed(px__sqlite_t *s, bool committed) {
  pthread_mutex_lock(&s->log_mu);
  if (committed)
    s->log = s->log_work;
  else
    s->log_work = s->log;
  pthread_mutex_unlock(&s->log_mu);
}

int px__sq_log_head(px_store_t *base, uint64_t *size, uint8_t root[32]) {
  px__sqlite_t *s = px__sq(base);
  pthread_mutex_lock(&s->log_mu);
  *size = s->log.size;
  px_merkle_root(&s->log, root);
  pthread_mutex_unlock(&s->log_mu);
  return 0;
}

int px__sq_log_node(px_store_t *base, unsigned level, uint64_t index, uint8_t out[32]) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st = NULL;
  int rc = -EIO;
  if (sqlite3_prepare_v2(db, "SELECT hash FROM log_nodes WHERE level = ?1 AND idx = ?2", -1, &st,
                         NULL) == SQLITE_OK) {
    sqlite3_bind_int(st, 1, (int)level);
    sqlite3_bind_int64(st, 2, (int64_t)index);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PX_MERKLE_HASH_LEN) {
      memcpy(out, sqlite3_column_blob(st, 0), PX_MERKLE_HASH_LEN);
      rc = 0;
    } else if (step == SQLITE_DONE || step == SQLITE_ROW) {
      rc = -ENOENT;
    }
  }
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

int px__sq_log_leaf(px_store_t *base, int64_t index, const char *uid, px_log_leaf_t *out) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st = NULL;
  int rc = -EIO;
  const char *sql = uid != NULL ? "SELECT leaf_index, measurement_uid, content_sha256, "
                                  "received_at FROM log_leaves WHERE measurement_uid = ?1"
                                : "SELECT leaf_index, measurement_uid, content_sha256, "
                                  "received_at FROM log_leaves WHERE leaf_index = ?1";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (uid != NULL)
      sqlite3_bind_text(st, 1, uid, -1, SQLITE_STATIC);
    else
      sqlite3_bind_int64(st, 1, index);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_bytes(st, 2) == 32) {
      out->index = sqlite3_column_int64(st, 0);
      snprintf(out->uid, sizeof(out->uid), "%s", (const char *)sqlite3_column_text(st, 1));
      memcpy(out->content_sha256, sqlite3_column_blob(st, 2), 32);
      out->received_at = (time_t)sqlite3_column_int64(st, 3);
      rc = 0;
    } else if (step == SQLITE_DONE || step == SQLITE_ROW) {
      rc = -ENOENT;
    }
  }
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

/* ---- signed tree heads ------------------------------------------------------ */

static int px__write_head(px__sqlite_t *s, px__job_t *j) {
  const px_log_head_t *h = j->arg;
  sqlite3_stmt *st = NULL;
  int rc = -EIO;
  if (sqlite3_prepare_v2(s->writer,
                         "INSERT OR IGNORE INTO log_heads (tree_size, root_hash, signed_at, key_id, "
                         "public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, (int64_t)h->tree_size);
    sqlite3_bind_blob(st, 2, h->root, sizeof(h->root), SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, h->timestamp);
    sqlite3_bind_text(st, 4, h->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, h->public_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, h->signature, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

int px__sq_log_head_put(px_store_t *base, const px_log_head_t *h) {
  px__sqlite_t *s = px__sq(base);
  if (s->readonly)
    return -EROFS;
  px__job_t job = {.write = px__write_head, .arg = (void *)h};
  return px__store_run(s, &job);
}

#define PX__HEAD_COLS "SELECT tree_size, root_hash, signed_at, key_id, public_key, signature "

/* The row st is on as a head (its strings the row's own, valid until the
 * next step); -EBADMSG for a damaged row. */
static int px__head_row(sqlite3_stmt *st, px_log_head_t *h) {
  if (sqlite3_column_bytes(st, 1) != 32)
    return -EBADMSG;
  h->tree_size = (uint64_t)sqlite3_column_int64(st, 0);
  memcpy(h->root, sqlite3_column_blob(st, 1), 32);
  h->timestamp = (time_t)sqlite3_column_int64(st, 2);
  snprintf(h->key_id, sizeof(h->key_id), "%s", (const char *)sqlite3_column_text(st, 3));
  h->public_key = (char *)sqlite3_column_text(st, 4);
  h->signature = (char *)sqlite3_column_text(st, 5);
  return h->public_key != NULL && h->signature != NULL ? 0 : -EBADMSG;
}

int px__sq_log_head_get(px_store_t *base, int64_t tree_size, px_log_head_t *out) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st = NULL;
  int rc = -EIO;
  const char *sql = tree_size >= 0 ? PX__HEAD_COLS "FROM log_heads WHERE tree_size = ?1"
                                   : PX__HEAD_COLS "FROM log_heads ORDER BY tree_size DESC LIMIT 1";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (tree_size >= 0)
      sqlite3_bind_int64(st, 1, tree_size);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && (rc = px__head_row(st, out)) == 0) {
      out->public_key = strdup(out->public_key);
      out->signature = strdup(out->signature);
      if (out->public_key == NULL || out->signature == NULL) {
        px_log_head_free(out);
        rc = -ENOMEM;
      }
    } else if (step == SQLITE_DONE) {
      rc = -ENOENT;
    }
  }
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}

int px__sq_log_heads(px_store_t *base, int (*cb)(void *data, const px_log_head_t *h),
                     void *data) {
  px__sqlite_t *s = px__sq(base);
  int slot;
  sqlite3 *db = px__store_reader(s, &slot);
  sqlite3_stmt *st = NULL;
  int rc = -EIO;
  if (sqlite3_prepare_v2(db, PX__HEAD_COLS "FROM log_heads ORDER BY tree_size", -1, &st, NULL) ==
      SQLITE_OK) {
    int step;
    rc = 0;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
      px_log_head_t h;
      rc = px__head_row(st, &h);
      if (rc == 0)
        rc = cb(data, &h);
    }
    if (rc == 0 && step != SQLITE_DONE)
      rc = -EIO;
  }
  sqlite3_finalize(st);
  px__store_reader_done(s, slot);
  return rc;
}
