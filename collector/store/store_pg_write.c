/* The PostgreSQL store's writes besides submissions (store_pg_put.c):
 * key rotations, imported keys. Each is one transaction on a pooled
 * connection; any number of them run at once, in this process and on
 * other nodes, and the database decides who wins: a rotation by the key
 * row's lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/store/store_pg_internal.h"

int px__pg_failed(PGresult *r) {
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
