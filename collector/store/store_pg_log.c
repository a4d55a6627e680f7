/* The measurement log on PostgreSQL (collector/store/store.h,
 * common/merkle.h): the SQLite store's two tables (log_leaves, one row a
 * stored measurement; log_nodes, every perfect subtree's hash, so a proof
 * reads O(log n) rows) and log_head, one row with the committed size and
 * frontier. Every appender, a group commit on any node or a migration's
 * batch, locks that row inside the transaction that stores its
 * measurements and holds it to the COMMIT: the nodes on one database
 * append in one order, a leaf commits with its measurement or not at all,
 * and a rolled-back transaction leaves the head as it was. The lock is
 * taken after the measurements are inserted, so only the appends queue,
 * and nothing taken after it can wait on another appender: no deadlock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/store/store_pg_internal.h"
#include "common/merkle.h"

/* The frontier as stored: the subtree roots of the set bits of size,
 * lowest level first. */
static size_t px__pg_frontier_pack(const px_merkle_frontier_t *f, uint8_t *out) {
  size_t n = 0;
  for (unsigned k = 0; k < PX_MERKLE_MAX_DEPTH; k++)
    if (f->size & ((uint64_t)1 << k)) {
      memcpy(out + n, f->nodes[k], PX_MERKLE_HASH_LEN);
      n += PX_MERKLE_HASH_LEN;
    }
  return n;
}

/* The head row of r (binary results) as a frontier; -EBADMSG when it
 * does not hold one hash per set bit. */
static int px__pg_frontier_read(PGresult *r, px_merkle_frontier_t *f) {
  px_merkle_frontier_init(f);
  if (PQntuples(r) != 1)
    return -EBADMSG;
  int64_t size = px__pg_get_i64(r, 0, 0);
  const uint8_t *p = (const uint8_t *)PQgetvalue(r, 0, 1);
  size_t len = (size_t)PQgetlength(r, 0, 1), off = 0;
  if (size < 0 || len != (size_t)__builtin_popcountll((unsigned long long)size) * PX_MERKLE_HASH_LEN)
    return -EBADMSG;
  f->size = (uint64_t)size;
  for (unsigned k = 0; k < PX_MERKLE_MAX_DEPTH; k++)
    if (f->size & ((uint64_t)1 << k)) {
      memcpy(f->nodes[k], p + off, PX_MERKLE_HASH_LEN);
      off += PX_MERKLE_HASH_LEN;
    }
  return 0;
}

/* Sends one leaf's rows: the leaf and the subtrees it completes. */
static bool px__pg_send_leaf(px__pgconn_t *c, px_merkle_frontier_t *f, const px_submission_t *sub,
                             size_t *sent) {
  char leaf[PX_MERKLE_LEAF_MAX];
  uint8_t hash[PX_MERKLE_HASH_LEN];
  int len = px_merkle_log_leaf(sub->sha256, sub->uid, sub->received_at, leaf, sizeof(leaf));
  if (len < 0 || px_merkle_leaf_hash(leaf, (size_t)len, hash) != 0)
    return false;
  int64_t at = (int64_t)f->size;
  px_merkle_node_t done[PX_MERKLE_MAX_DEPTH];
  int n = px_merkle_append(f, hash, done);
  px__pg_args_t a = {0};
  px__pg_i64(&a, at);
  px__pg_text(&a, sub->uid);
  px__pg_bin(&a, sub->sha256, sizeof(sub->sha256));
  px__pg_i64(&a, sub->received_at);
  if (!px__pg_send(c, PX__PG_LOG_LEAF_ADD, &a))
    return false;
  (*sent)++;
  for (int i = 0; i < n; i++) {
    px__pg_args_t b = {0};
    px__pg_i64(&b, done[i].level);
    px__pg_i64(&b, (int64_t)done[i].index);
    px__pg_bin(&b, done[i].hash, PX_MERKLE_HASH_LEN);
    if (!px__pg_send(c, PX__PG_LOG_NODE_ADD, &b))
      return false;
    (*sent)++;
  }
  return true;
}

int px__pg_log_append(px__pgconn_t *c, const px_submission_t *const *subs, size_t n,
                      int64_t *first_index) {
  *first_index = -1;
  if (n == 0)
    return 0;
  PGresult *r = px__pg_run(c, PX__PG_LOG_LOCK, NULL, true);
  if (!px__pg_ok(c, r, PGRES_TUPLES_OK, "log")) {
    int why = r != NULL ? px__pg_failed(r) : -EIO;
    PQclear(r);
    return why;
  }
  px_merkle_frontier_t *f = malloc(sizeof(*f));
  uint8_t *packed = malloc((size_t)PX_MERKLE_MAX_DEPTH * PX_MERKLE_HASH_LEN);
  int rc = f == NULL || packed == NULL ? -ENOMEM : px__pg_frontier_read(r, f);
  PQclear(r);
  if (rc == -EBADMSG)
    fprintf(stderr, "parallax-collector: postgresql: the log's head row is damaged\n");
  uint64_t first = rc == 0 ? f->size : 0;
  /* The rows of every leaf, then the new head, in one round trip. */
  size_t sent = 0;
  bool ok = rc == 0 && PQenterPipelineMode(c->conn) == 1;
  for (size_t i = 0; ok && i < n; i++)
    ok = px__pg_send_leaf(c, f, subs[i], &sent);
  if (ok) {
    px__pg_args_t a = {0};
    px__pg_i64(&a, (int64_t)f->size);
    px__pg_bin(&a, packed, px__pg_frontier_pack(f, packed));
    ok = px__pg_send(c, PX__PG_LOG_HEAD_SET, &a);
    sent += ok;
  }
  if (rc == 0) {
    if (PQpipelineSync(c->conn) != 1)
      c->broken = true;
    rc = ok ? 0 : -EIO;
    for (size_t i = 0; !c->broken && i < sent; i++) {
      PGresult *res = px__pg_next(c);
      if (res == NULL)
        break;
      if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0) {
        px__pg_ok(c, res, PGRES_COMMAND_OK, "log");
        rc = px__pg_failed(res);
      }
      PQclear(res);
    }
    if (c->broken || !px__pg_pipe_end(c))
      rc = -EIO;
  }
  if (rc == 0)
    *first_index = (int64_t)first;
  free(f);
  free(packed);
  return rc;
}

/* The leaf rows are exactly [0, size): a row deleted or added behind the
 * collector's back is refused at start, as the SQLite store does. */
static int px__pg_log_check(px__pgconn_t *c, uint64_t size, char *err, size_t errlen) {
  PGresult *r = PQexec(c->conn, "SELECT count(*), coalesce(max(leaf_index), -1) FROM log_leaves");
  int rc = -EIO;
  if (px__pg_ok(c, r, PGRES_TUPLES_OK, "log") && PQntuples(r) == 1) {
    int64_t n = px__pg_get_i64(r, 0, 0), last = px__pg_get_i64(r, 0, 1);
    rc = 0;
    if (n != (int64_t)size || last != (int64_t)size - 1) {
      snprintf(err, errlen, "the measurement log has gaps (%lld leaves, last index %lld, its "
                            "head says %llu): its rows were edited", (long long)n,
               (long long)last, (unsigned long long)size);
      rc = -EBADMSG;
    }
  }
  PQclear(r);
  return rc;
}

/* How many unlogged measurements one backfill transaction reads at a time. */
#define PX__PG_BACKFILL_BATCH 1000

int px__pg_log_backfill(px__pg_t *s, char *err, size_t errlen) {
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL) {
    snprintf(err, errlen, "postgresql: cannot connect to add the stored measurements to the log");
    return rc;
  }
  int64_t added = 0;
  px_submission_t *rows = calloc(PX__PG_BACKFILL_BATCH, sizeof(*rows));
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  const px_submission_t **ptrs = calloc(PX__PG_BACKFILL_BATCH, sizeof(*ptrs));
  rc = rows == NULL || ptrs == NULL ? -ENOMEM : 0;
  /* One transaction a batch, each under the log's lock: a node that
   * starts meanwhile finds nothing left, one that ingests appends after. */
  for (bool checked = false;; checked = true) {
    if (rc != 0 || (rc = px__pg_exec(c, "BEGIN")) != 0)
      break;
    PGresult *lock = px__pg_run(c, PX__PG_LOG_LOCK, NULL, true);
    px_merkle_frontier_t f;
    bool locked = px__pg_ok(c, lock, PGRES_TUPLES_OK, "log") && px__pg_frontier_read(lock, &f) == 0;
    PQclear(lock);
    if (locked && !checked && (rc = px__pg_log_check(c, f.size, err, errlen)) != 0) {
      px__pg_exec(c, "ROLLBACK");
      break;
    }
    px__pg_args_t a = {0};
    px__pg_i64(&a, PX__PG_BACKFILL_BATCH);
    PGresult *r = locked ? px__pg_run(c, PX__PG_LOG_UNLOGGED, &a, true) : NULL;
    int n = px__pg_ok(c, r, PGRES_TUPLES_OK, "log") ? PQntuples(r) : -1;
    for (int i = 0; i < n; i++) {
      px_submission_t *sub = &rows[i];
      memset(sub, 0, sizeof(*sub));
      snprintf(sub->uid, sizeof(sub->uid), "%s", PQgetvalue(r, i, 0));
      if (PQgetlength(r, i, 1) != (int)sizeof(sub->sha256)) {
        n = -1;
        break;
      }
      memcpy(sub->sha256, PQgetvalue(r, i, 1), sizeof(sub->sha256));
      sub->received_at = (time_t)px__pg_get_i64(r, i, 2);
      ptrs[i] = sub;
    }
    PQclear(r);
    int64_t first;
    rc = n < 0 ? -EIO : px__pg_log_append(c, ptrs, (size_t)n, &first);
    if (rc == 0 && n > 0)
      rc = px__pg_exec(c, "COMMIT");
    else
      px__pg_exec(c, "ROLLBACK");
    if (rc != 0 || n < PX__PG_BACKFILL_BATCH) {
      added += rc == 0 && n > 0 ? n : 0;
      break;
    }
    added += n;
  }
  if (rc != 0 && rc != -EBADMSG)
    snprintf(err, errlen, "postgresql: cannot add the stored measurements to the log: %s",
             PQerrorMessage(c->conn)[0] != '\0' ? PQerrorMessage(c->conn)
                                                : "a statement failed (logged above)");
  else if (added > 0)
    fprintf(stderr, "parallax-collector: %lld stored measurement(s) added to the log\n",
            (long long)added);
  free(rows);
  free((void *)ptrs);
  px__pg_release(s, c);
  return rc;
}

int px__pg_log_head(px_store_t *base, uint64_t *size, uint8_t root[32]) {
  PGresult *r = NULL;
  px_merkle_frontier_t f;
  int rc = px__pg_one_row(px__pgs(base), true, PX__PG_LOG_HEAD, NULL, "log", &r);
  if (rc == 0)
    rc = px__pg_frontier_read(r, &f);
  PQclear(r);
  if (rc == 0) {
    *size = f.size;
    px_merkle_root(&f, root);
  }
  return rc == -ENOENT ? -EBADMSG : rc; /* the head row is always there */
}

int px__pg_log_node(px_store_t *base, unsigned level, uint64_t index, uint8_t out[32]) {
  px__pg_args_t a = {0};
  px__pg_i64(&a, level);
  px__pg_i64(&a, (int64_t)index);
  PGresult *r = NULL;
  int rc = px__pg_one_row(px__pgs(base), true, PX__PG_LOG_NODE, &a, "log", &r);
  if (rc == 0 && PQgetlength(r, 0, 0) != PX_MERKLE_HASH_LEN)
    rc = -ENOENT; /* a damaged row: as good as missing */
  if (rc == 0)
    memcpy(out, PQgetvalue(r, 0, 0), PX_MERKLE_HASH_LEN);
  PQclear(r);
  return rc;
}

int px__pg_log_leaf(px_store_t *base, int64_t index, const char *uid, px_log_leaf_t *out) {
  px__pg_args_t a = {0};
  if (uid != NULL)
    px__pg_text(&a, uid);
  else
    px__pg_i64(&a, index);
  PGresult *r = NULL;
  int rc = px__pg_one_row(px__pgs(base), true,
                          uid != NULL ? PX__PG_LOG_LEAF_OF : PX__PG_LOG_LEAF_AT, &a, "log", &r);
  if (rc == 0 && PQgetlength(r, 0, 2) != 32)
    rc = -ENOENT;
  if (rc == 0) {
    out->index = px__pg_get_i64(r, 0, 0);
    snprintf(out->uid, sizeof(out->uid), "%s", PQgetvalue(r, 0, 1));
    memcpy(out->content_sha256, PQgetvalue(r, 0, 2), 32);
    out->received_at = (time_t)px__pg_get_i64(r, 0, 3);
  }
  PQclear(r);
  return rc;
}

/* ---- signed tree heads ------------------------------------------------------ */

int px__pg_log_head_put(px_store_t *base, const px_log_head_t *h) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  px__pg_args_t a = {0};
  px__pg_i64(&a, (int64_t)h->tree_size);
  px__pg_bin(&a, h->root, sizeof(h->root));
  px__pg_i64(&a, h->timestamp);
  px__pg_text(&a, h->key_id);
  px__pg_text(&a, h->public_key);
  px__pg_text(&a, h->signature);
  PGresult *r = px__pg_run(c, PX__PG_LOG_HEAD_PUT, &a, false);
  rc = px__pg_ok(c, r, PGRES_COMMAND_OK, "log") ? 0 : -EIO;
  PQclear(r);
  px__pg_release(s, c);
  return rc;
}

int px__pg_log_head_get(px_store_t *base, int64_t tree_size, px_log_head_t *out) {
  px__pg_args_t a = {0};
  px__pg_i64(&a, tree_size);
  PGresult *r = NULL;
  int rc = tree_size >= 0
               ? px__pg_one_row(px__pgs(base), true, PX__PG_LOG_HEAD_GET, &a, "log", &r)
               : px__pg_one_row(px__pgs(base), true, PX__PG_LOG_HEAD_TOP, NULL, "log", &r);
  if (rc == 0 && PQgetlength(r, 0, 1) != 32)
    rc = -ENOENT;
  if (rc == 0) {
    out->tree_size = (uint64_t)px__pg_get_i64(r, 0, 0);
    memcpy(out->root, PQgetvalue(r, 0, 1), 32);
    out->timestamp = (time_t)px__pg_get_i64(r, 0, 2);
    snprintf(out->key_id, sizeof(out->key_id), "%s", PQgetvalue(r, 0, 3));
    out->public_key = strdup(PQgetvalue(r, 0, 4));
    out->signature = strdup(PQgetvalue(r, 0, 5));
    if (out->public_key == NULL || out->signature == NULL) {
      px_log_head_free(out);
      rc = -ENOMEM;
    }
  }
  PQclear(r);
  return rc;
}
