/* The PostgreSQL store's writes: submissions, key rotations, imported
 * keys. Each is one transaction on a pooled connection; any number of
 * them run at once, in this process and on other nodes, and the database
 * decides who wins: a duplicate is found by the unique constraint, a
 * rotation by the key row's lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/store/store_pg_internal.h"

/* How a try ended, beyond 0 and the errors put() returns. */
#define PX__PG_RETRY 1      /* a deadlock, a serialization failure: try again */
#define PX__PG_NO_MONTH 2   /* the month's partition is missing */
#define PX__PG_CONFLICT 3   /* another transaction stored the same content first */

static int px__pg_failed(PGresult *r) {
  const char *state = px__pg_state(r);
  if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
    return PX__PG_RETRY;
  if (strcmp(state, "23514") == 0) /* no partition of relation found for row */
    return PX__PG_NO_MONTH;
  return -EIO;
}

/* Runs st expecting want; on failure returns what px__pg_failed says. */
static int px__pg_step(px__pgconn_t *c, px__pg_stmt_t st, const px__pg_args_t *a,
                       ExecStatusType want, PGresult **out, const char *what) {
  PGresult *r = px__pg_run(c, st, a, false);
  if (!px__pg_ok(c, r, want, what)) {
    int rc = px__pg_failed(r);
    PQclear(r);
    return rc;
  }
  if (out != NULL)
    *out = r;
  else
    PQclear(r);
  return 0;
}

/* The stored copy of sub's content, if any: its signer into
 * sub->stored_key_id. 1 found, 0 not, or -EIO. */
static int px__pg_find(px__pgconn_t *c, px_submission_t *sub) {
  px__pg_args_t a = {0};
  px__pg_bin(&a, sub->sha256, sizeof(sub->sha256));
  px__pg_i64(&a, sub->meta.measurement_start_time);
  PGresult *r = px__pg_run(c, PX__PG_FIND, &a, false);
  if (!px__pg_ok(c, r, PGRES_TUPLES_OK, "find")) {
    PQclear(r);
    return -EIO;
  }
  int found = PQntuples(r) > 0;
  if (found)
    snprintf(sub->stored_key_id, sizeof(sub->stored_key_id), "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  return found;
}

/* One try at storing sub, inside BEGIN … COMMIT. The key row is locked
 * (FOR SHARE, or by moving last_seen) before valid_before is read, so a
 * rotation on another node either commits first (and is seen) or waits
 * for this commit. last_seen moves at most once a second per key, so
 * concurrent submissions of one key do not queue behind each other. */
/* The parameters of PX__PG_INSERT for sub, in its column order (the
 * statement-by-statement put and migrate's pipelined batches share it). */
void px__pg_insert_args(px__pg_args_t *a, const px_submission_t *sub) {
  px__pg_text(a, sub->uid);
  px__pg_bin(a, sub->sha256, sizeof(sub->sha256));
  px__pg_bin(a, sub->content, sub->content_len);
  px__pg_text(a, sub->signature);
  px__pg_text(a, sub->key->key_id);
  px__pg_text(a, sub->meta.probe_cc);
  px__pg_text(a, sub->meta.probe_asn);
  px__pg_text(a, sub->meta.test_name);
  px__pg_text(a, sub->meta.input);
  px__pg_text(a, sub->meta.domain);
  px__pg_i64(a, sub->meta.measurement_start_time);
  px__pg_i64(a, sub->received_at);
  px__pg_text(a, sub->geo_mismatch ? "t" : "f");
  if (sub->geo_mismatch)
    px__pg_text(a, sub->uploader_cc);
  else
    px__pg_null(a);
}

static int px__pg_put_try(px__pgconn_t *c, px_submission_t *sub, const char *key_line,
                          bool *committed) {
  px__pg_args_t a = {0};
  PGresult *r = NULL;
  int rc;
  *committed = false;
  if (px__pg_exec(c, "BEGIN") != 0)
    return -EIO;
  px__pg_text(&a, sub->key->key_id);
  px__pg_text(&a, key_line);
  px__pg_i64(&a, sub->received_at);
  if ((rc = px__pg_step(c, PX__PG_KEY_ADD, &a, PGRES_COMMAND_OK, NULL, "key")) != 0)
    goto rollback;
  memset(&a, 0, sizeof(a));
  px__pg_text(&a, sub->key->key_id);
  px__pg_i64(&a, sub->received_at);
  if ((rc = px__pg_step(c, PX__PG_KEY_SEEN, &a, PGRES_TUPLES_OK, &r, "key")) != 0)
    goto rollback;
  if (PQntuples(r) == 0) {
    PQclear(r);
    r = NULL;
    a.n = 1;
    if ((rc = px__pg_step(c, PX__PG_KEY_SHARE, &a, PGRES_TUPLES_OK, &r, "key")) != 0)
      goto rollback;
  }
  int64_t valid_before = PQntuples(r) > 0 ? px__pg_get_i64(r, 0, 0) : 0;
  PQclear(r);
  r = NULL;
  /* A key rotated away signs nothing that started at or after the
   * rotation; what it signed before (spooled, uploaded late) is fine. */
  if (valid_before != 0 && sub->meta.measurement_start_time >= valid_before) {
    sub->key_valid_before = (time_t)valid_before;
    rc = -EKEYREVOKED;
    goto rollback;
  }
  memset(&a, 0, sizeof(a));
  px__pg_insert_args(&a, sub);
  if ((rc = px__pg_step(c, PX__PG_INSERT, &a, PGRES_TUPLES_OK, &r, "insert")) != 0)
    goto rollback;
  bool inserted = PQntuples(r) > 0;
  PQclear(r);
  r = NULL;
  if (!inserted) {
    /* Stored by someone else meanwhile (ON CONFLICT waited for their
     * commit): undo the key changes, the duplicate changes nothing. */
    rc = PX__PG_CONFLICT;
    goto rollback;
  }
  snprintf(sub->stored_key_id, sizeof(sub->stored_key_id), "%s", sub->key->key_id);
  r = PQexec(c->conn, "COMMIT");
  /* Sent: from here on the outcome may be unknown, never retried. */
  *committed = true;
  if (!px__pg_ok(c, r, PGRES_COMMAND_OK, "commit")) {
    PQclear(r);
    return -EIO;
  }
  PQclear(r);
  return 0;

rollback:
  PQclear(r);
  if (PQstatus(c->conn) == CONNECTION_OK)
    px__pg_exec(c, "ROLLBACK");
  return rc;
}

int px__pg_put(px_store_t *base, px_submission_t *sub, bool *duplicate) {
  px__pg_t *s = px__pgs(base);
  *duplicate = false;
  char *line = px_ssh_pubkey_line(sub->key);
  if (line == NULL)
    return -ENOMEM;
  int rc = -EIO;
  for (int attempt = 0; attempt < 4; attempt++) {
    px__pgconn_t *c = px__pg_checkout(s, &rc);
    if (c == NULL)
      break;
    bool committed = false;
    /* Content already stored (a retry, or the same bytes signed by
     * another key): nothing changes, not even the key list. */
    rc = px__pg_find(c, sub);
    if (rc == 0)
      rc = px__pg_ensure_month(s, c, sub->meta.measurement_start_time);
    if (rc == 0)
      rc = px__pg_put_try(c, sub, line, &committed);
    if (rc == PX__PG_CONFLICT) {
      rc = px__pg_find(c, sub) == 1 ? 1 : -EIO;
    } else if (rc == PX__PG_NO_MONTH) {
      /* Someone detached the month since we made it: make it again. */
      px__pg_forget_month(s, sub->meta.measurement_start_time);
    }
    bool lost = c->broken;
    px__pg_release(s, c);
    if (rc == 1) {
      *duplicate = true;
      rc = 0;
      break;
    }
    if (rc == 0) {
      void (*hook)(void *) = NULL;
      void *hook_data = NULL;
      pthread_mutex_lock(&s->mu);
      hook = s->on_commit;
      hook_data = s->on_commit_data;
      pthread_mutex_unlock(&s->mu);
      if (hook != NULL)
        hook(hook_data);
      break;
    }
    /* Retried: conflicts the database resolved by failing us, a lost
     * connection before COMMIT was sent. After that the outcome is
     * unknown: the client's retry (idempotent) settles it. */
    if (!(rc == PX__PG_RETRY || rc == PX__PG_NO_MONTH || (lost && !committed))) {
      if (rc > 0)
        rc = -EIO;
      break;
    }
    rc = -EIO;
  }
  free(line);
  return rc;
}

/* ---- keys ---------------------------------------------------------------- */

static int px__pg_key_add(px__pgconn_t *c, const px_ssh_pubkey_t *key, time_t now) {
  char *line = px_ssh_pubkey_line(key);
  if (line == NULL)
    return -ENOMEM;
  px__pg_args_t a = {0};
  px__pg_text(&a, key->key_id);
  px__pg_text(&a, line);
  px__pg_i64(&a, now);
  int rc = px__pg_step(c, PX__PG_KEY_ADD, &a, PGRES_COMMAND_OK, NULL, "key");
  free(line);
  return rc;
}

/* One try at a rotation: both keys added if unknown, both rows locked
 * (in key_id order, as every rotation locks them), then the SQLite
 * store's rules. */
static int px__pg_rotate_try(px__pgconn_t *c, const px_ssh_pubkey_t *old_key,
                             const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                             time_t *stored) {
  PGresult *r = NULL;
  int rc;
  if (px__pg_exec(c, "BEGIN") != 0)
    return -EIO;
  if ((rc = px__pg_key_add(c, old_key, now)) != 0 || (rc = px__pg_key_add(c, new_key, now)) != 0)
    goto rollback;
  px__pg_args_t a = {0};
  px__pg_text(&a, old_key->key_id);
  px__pg_text(&a, new_key->key_id);
  if ((rc = px__pg_step(c, PX__PG_KEYS_LOCK, &a, PGRES_TUPLES_OK, &r, "rotation")) != 0)
    goto rollback;
  time_t old_vb = 0, new_vb = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    time_t vb = (time_t)px__pg_get_i64(r, i, 1);
    if (strcmp(PQgetvalue(r, i, 0), old_key->key_id) == 0)
      old_vb = vb;
    else
      new_vb = vb;
  }
  PQclear(r);
  r = NULL;
  /* The earliest rotation of old_key counts: a statement sent again (a
   * retry, or clamped to a later "now") moves nothing. */
  time_t effective = old_vb != 0 && old_vb < valid_before ? old_vb : valid_before;
  if (new_vb != 0 && new_vb <= effective) {
    rc = -ESTALE;
    goto rollback;
  }
  memset(&a, 0, sizeof(a));
  px__pg_text(&a, old_key->key_id);
  px__pg_i64(&a, effective);
  if ((rc = px__pg_step(c, PX__PG_KEY_ROTATE, &a, PGRES_COMMAND_OK, NULL, "rotation")) != 0)
    goto rollback;
  r = PQexec(c->conn, "COMMIT");
  if (!px__pg_ok(c, r, PGRES_COMMAND_OK, "commit")) {
    rc = px__pg_failed(r);
    PQclear(r);
    return rc;
  }
  PQclear(r);
  *stored = effective;
  return 0;

rollback:
  PQclear(r);
  if (PQstatus(c->conn) == CONNECTION_OK)
    px__pg_exec(c, "ROLLBACK");
  return rc;
}

int px__pg_rotate_key(px_store_t *base, const px_ssh_pubkey_t *old_key,
                      const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                      time_t *stored) {
  px__pg_t *s = px__pgs(base);
  int rc = -EIO;
  for (int attempt = 0; attempt < 4; attempt++) {
    px__pgconn_t *c = px__pg_checkout(s, &rc);
    if (c == NULL)
      return rc;
    rc = px__pg_rotate_try(c, old_key, new_key, valid_before, now, stored);
    px__pg_release(s, c);
    if (rc != PX__PG_RETRY)
      break;
    rc = -EIO;
  }
  return rc > 0 ? -EIO : rc;
}

int px__pg_import_key(px_store_t *base, const char *key_id, const char *pubkey,
                      time_t first_seen, time_t last_seen, time_t valid_before) {
  px__pg_t *s = px__pgs(base);
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL)
    return rc;
  px__pg_args_t a = {0};
  px__pg_text(&a, key_id);
  px__pg_text(&a, pubkey);
  px__pg_i64(&a, first_seen);
  px__pg_i64(&a, last_seen);
  px__pg_i64(&a, valid_before);
  rc = px__pg_step(c, PX__PG_KEY_IMPORT, &a, PGRES_COMMAND_OK, NULL, "key import");
  px__pg_release(s, c);
  return rc > 0 ? -EIO : rc;
}
