/* The PostgreSQL store's submissions, in group commits: the submissions
 * that arrive while one transaction is being written go into the next,
 * and each is answered only after the COMMIT that stored it. A batch is
 * three round trips in libpq's pipeline mode (the content lookups; BEGIN,
 * the key rows, the inserts; COMMIT) instead of six or seven statements
 * per submission.
 *
 * A batch commits only when every submission in it was inserted. When one
 * was not (stored meanwhile by another node, or its key rotated away), the
 * transaction is rolled back, that one is answered (a duplicate, or
 * refused) and the others go again; when a statement fails, every
 * submission of the batch is tried alone, so one bad row costs nobody else
 * their answer, and each is retried as the statement-at-a-time store
 * retried it. Nodes on one database lock key rows in key_id order and
 * insert in content order, so their batches queue, never deadlock, and
 * the unique constraint keeps each content stored once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/store/store_pg_internal.h"

/* Submissions in one transaction at most. */
#define PX__PG_BATCH_MAX 64
/* Batches in flight at once in a process: while one waits for its
 * COMMIT to reach the disk, others fill and run on other backends (with
 * 2, the quick ingest bench's p50 latency was twice that with 4, at the
 * same rate). Four of the pool's ten connections by default, half a
 * smaller pool: the analysis and the readers need theirs. */
#define PX__PG_LEADERS_MAX 4
/* Tries of one submission on its own, as before batches. */
#define PX__PG_TRIES 4

struct px__pg_job {
  px_submission_t *sub;
  char *key_line;
  int rc;
  bool duplicate;
  bool answered; /* by the batch: the leader's alone */
  bool done;     /* under put_mu: the job's thread may return */
  bool alone;   /* its batch failed: tried on its own from now on */
  int tries;    /* failed tries on its own */
  pthread_cond_t cv;
  struct px__pg_job *next;
};
typedef struct px__pg_job px__pg_job_t;

/* How a try ended for one job. */
enum { PX__J_AGAIN, PX__J_DONE };

static void px__pg_answer(px__pg_job_t *j, int rc, bool duplicate) {
  j->rc = rc;
  j->duplicate = duplicate;
  j->answered = true;
}

/* ---- pipelines -------------------------------------------------------------- */

/* Sends prepared statement st; false (the connection marked broken) when
 * it could not be sent. */
bool px__pg_send(px__pgconn_t *c, px__pg_stmt_t st, const px__pg_args_t *a) {
  char name[16];
  snprintf(name, sizeof(name), "px_%d", (int)st);
  if (PQsendQueryPrepared(c->conn, name, a->n, a->v, a->len, a->fmt, 0) == 1)
    return true;
  c->broken = true;
  return false;
}

static bool px__pg_send_plain(px__pgconn_t *c, const char *sql) {
  if (PQsendQueryParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0) == 1)
    return true;
  c->broken = true;
  return false;
}

/* The next statement's result (the caller PQclear()s) with the rest of
 * its results read; NULL when the connection is gone. */
PGresult *px__pg_next(px__pgconn_t *c) {
  PGresult *r = PQgetResult(c->conn), *more;
  if (r == NULL) {
    c->broken = true;
    return NULL;
  }
  while ((more = PQgetResult(c->conn)) != NULL)
    PQclear(more);
  return r;
}

/* The sync's own result, and out of pipeline mode. */
bool px__pg_pipe_end(px__pgconn_t *c) {
  PGresult *r = PQgetResult(c->conn);
  bool ok = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
  PQclear(r);
  if (!ok || PQexitPipelineMode(c->conn) != 1)
    c->broken = true;
  return !c->broken;
}

/* ---- one try of a batch ------------------------------------------------------ */

static int px__pg_by_content(const void *a, const void *b) {
  const px_submission_t *x = (*(px__pg_job_t *const *)a)->sub,
                        *y = (*(px__pg_job_t *const *)b)->sub;
  int c = memcmp(x->sha256, y->sha256, sizeof(x->sha256));
  if (c != 0)
    return c;
  return (x->meta.measurement_start_time > y->meta.measurement_start_time) -
         (x->meta.measurement_start_time < y->meta.measurement_start_time);
}

static int px__pg_by_key(const void *a, const void *b) {
  return strcmp((*(px__pg_job_t *const *)a)->sub->key->key_id,
                (*(px__pg_job_t *const *)b)->sub->key->key_id);
}

/* A statement failed in the batch: with others, everyone goes alone;
 * alone, what the failure was says whether to try again. */
static void px__pg_batch_failed(px__pg_t *s, px__pg_job_t **jobs, size_t n, int why, bool lost) {
  for (size_t i = 0; i < n; i++) {
    px__pg_job_t *j = jobs[i];
    if (n > 1) {
      j->alone = true;
      continue;
    }
    if (why == PX__PG_NO_MONTH) /* someone detached the month since we made it */
      px__pg_forget_month(s, j->sub->meta.measurement_start_time);
    if ((why == PX__PG_RETRY || why == PX__PG_NO_MONTH || lost) && ++j->tries < PX__PG_TRIES)
      continue;
    px__pg_answer(j, why < 0 ? why : -EIO, false);
  }
}

/* Looks each job's content up; answers those stored already (a retry, or
 * the same bytes signed by another key: nothing changes, not even the
 * key list). false when the connection failed. */
static bool px__pg_batch_find(px__pgconn_t *c, px__pg_job_t **jobs, size_t n) {
  if (PQenterPipelineMode(c->conn) != 1)
    return false;
  size_t sent = 0;
  for (; sent < n; sent++) {
    px__pg_args_t a = {0};
    px__pg_bin(&a, jobs[sent]->sub->sha256, sizeof(jobs[sent]->sub->sha256));
    px__pg_i64(&a, jobs[sent]->sub->meta.measurement_start_time);
    if (!px__pg_send(c, PX__PG_FIND, &a))
      break;
  }
  if (PQpipelineSync(c->conn) != 1) {
    c->broken = true;
    return false;
  }
  bool ok = sent == n;
  for (size_t i = 0; i < sent; i++) {
    PGresult *r = px__pg_next(c);
    if (r == NULL)
      return false;
    if (!px__pg_ok(c, r, PGRES_TUPLES_OK, "find")) {
      ok = false;
    } else if (PQntuples(r) > 0) {
      px_submission_t *sub = jobs[i]->sub;
      snprintf(sub->stored_key_id, sizeof(sub->stored_key_id), "%s", PQgetvalue(r, 0, 0));
      sub->leaf_index = PQgetisnull(r, 0, 1) ? -1 : px__pg_get_i64(r, 0, 1);
      px__pg_answer(jobs[i], 0, true);
    }
    PQclear(r);
  }
  return px__pg_pipe_end(c) && ok;
}

/* BEGIN; each key added, moved forward and locked FOR SHARE (in key_id
 * order), so a rotation on any node either committed before and is seen
 * by the inserts, or waits for this COMMIT; each measurement inserted
 * unless its key was rotated away before it started (in content order).
 * Then COMMIT if all were inserted, else ROLLBACK and the answers that
 * are known. Returns 0 or the failure of px__pg_failed. */
static int px__pg_batch_write(px__pg_t *s, px__pgconn_t *c, px__pg_job_t **jobs, size_t n) {
  px__pg_job_t *bykey[PX__PG_BATCH_MAX];
  memcpy(bykey, jobs, n * sizeof(px__pg_job_t *));
  qsort(bykey, n, sizeof(px__pg_job_t *), px__pg_by_key);
  if (PQenterPipelineMode(c->conn) != 1)
    return -EIO;
  /* What each statement sent answers when it succeeds. */
  ExecStatusType want[1 + 4 * PX__PG_BATCH_MAX];
  size_t sent = 0, first_insert;
  bool ok = px__pg_send_plain(c, "BEGIN");
  if (ok)
    want[sent++] = PGRES_COMMAND_OK;
  for (size_t i = 0; ok && i < n; i++) {
    const px_submission_t *sub = bykey[i]->sub;
    if (i > 0 && strcmp(sub->key->key_id, bykey[i - 1]->sub->key->key_id) == 0)
      continue;
    px__pg_args_t a = {0}, b = {0}, k = {0};
    px__pg_text(&a, sub->key->key_id);
    px__pg_text(&a, bykey[i]->key_line);
    px__pg_i64(&a, sub->received_at);
    px__pg_text(&b, sub->key->key_id);
    px__pg_i64(&b, sub->received_at);
    px__pg_text(&k, sub->key->key_id);
    ok = px__pg_send(c, PX__PG_KEY_ADD, &a) && px__pg_send(c, PX__PG_KEY_SEEN, &b) &&
         px__pg_send(c, PX__PG_KEY_SHARE, &k);
    if (ok) {
      want[sent++] = PGRES_COMMAND_OK;
      want[sent++] = PGRES_TUPLES_OK;
      want[sent++] = PGRES_TUPLES_OK;
    }
  }
  first_insert = sent;
  for (size_t i = 0; ok && i < n; i++) {
    px__pg_args_t a = {0};
    px__pg_insert_args(&a, jobs[i]->sub);
    ok = px__pg_send(c, PX__PG_INSERT_CHECKED, &a);
    if (ok)
      want[sent++] = PGRES_TUPLES_OK;
  }
  if (PQpipelineSync(c->conn) != 1)
    c->broken = true;
  int rc = ok ? 0 : -EIO;
  bool inserted[PX__PG_BATCH_MAX] = {false};
  int64_t valid_before[PX__PG_BATCH_MAX] = {0};
  for (size_t i = 0; !c->broken && i < sent; i++) {
    PGresult *r = px__pg_next(c);
    if (r == NULL)
      break;
    ExecStatusType st = PQresultStatus(r);
    bool is_insert = i >= first_insert;
    if (st != want[i] && rc == 0) {
      /* The first failure; everything after it was skipped (aborted). */
      px__pg_ok(c, r, want[i], is_insert ? "insert" : "key");
      rc = px__pg_failed(r);
    } else if (st == want[i] && is_insert) {
      size_t j = i - first_insert;
      inserted[j] = !PQgetisnull(r, 0, 0);
      valid_before[j] = px__pg_get_i64(r, 0, 1);
    }
    PQclear(r);
  }
  if (c->broken || !px__pg_pipe_end(c))
    return -EIO;

  bool all = rc == 0;
  for (size_t i = 0; all && i < n; i++)
    all = inserted[i];
  if (!all) {
    px__pg_exec(c, "ROLLBACK");
    if (rc != 0)
      return rc;
    for (size_t i = 0; i < n; i++) {
      px_submission_t *sub = jobs[i]->sub;
      /* A key rotated away signs nothing that started at or after the
       * rotation; what it signed before (spooled, uploaded late) is fine. */
      if (!inserted[i] && valid_before[i] != 0 &&
          sub->meta.measurement_start_time >= valid_before[i]) {
        sub->key_valid_before = (time_t)valid_before[i];
        px__pg_answer(jobs[i], -EKEYREVOKED, false);
      } else if (!inserted[i] && ++jobs[i]->tries >= PX__PG_TRIES) {
        /* Stored by another transaction meanwhile (the insert waited for
         * its commit): the next lookup finds it; tried again, bounded. */
        px__pg_answer(jobs[i], -EIO, false);
      }
    }
    return 0;
  }
  /* The leaves, last: the log's lock is held from here to the COMMIT. */
  const px_submission_t *subs[PX__PG_BATCH_MAX];
  int64_t first;
  for (size_t i = 0; i < n; i++)
    subs[i] = jobs[i]->sub;
  if ((rc = px__pg_log_append(c, subs, n, &first)) != 0) {
    px__pg_exec(c, "ROLLBACK");
    return rc;
  }
  PGresult *r = PQexec(c->conn, "COMMIT");
  /* Sent: from here on the outcome may be unknown, never retried (the
   * client's retry, idempotent, settles it). */
  bool committed = px__pg_ok(c, r, PGRES_COMMAND_OK, "commit");
  PQclear(r);
  for (size_t i = 0; i < n; i++) {
    px_submission_t *sub = jobs[i]->sub;
    if (committed) {
      snprintf(sub->stored_key_id, sizeof(sub->stored_key_id), "%s", sub->key->key_id);
      sub->leaf_index = first + (int64_t)i;
    }
    px__pg_answer(jobs[i], committed ? 0 : -EIO, false);
  }
  if (committed) {
    pthread_mutex_lock(&s->mu);
    void (*hook)(void *) = s->on_commit;
    void *hook_data = s->on_commit_data;
    pthread_mutex_unlock(&s->mu);
    if (hook != NULL)
      hook(hook_data);
  }
  return 0;
}

/* One try of jobs (not answered yet) on one connection: those it answers
 * are done; the others go again. */
static void px__pg_batch_try(px__pg_t *s, px__pg_job_t **jobs, size_t n) {
  int rc;
  px__pgconn_t *c = px__pg_checkout(s, &rc);
  if (c == NULL) {
    for (size_t i = 0; i < n; i++)
      px__pg_answer(jobs[i], rc, false);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    rc = px__pg_ensure_month(s, c, jobs[i]->sub->meta.measurement_start_time);
    if (rc != 0)
      break;
  }
  if (rc != 0) {
    px__pg_batch_failed(s, jobs, n, rc, c->broken);
  } else if (!px__pg_batch_find(c, jobs, n)) {
    px__pg_batch_failed(s, jobs, n, -EIO, true);
  } else {
    /* The ones still to write, in content order; the same content twice
     * in one batch waits for the next (which finds the first). */
    px__pg_job_t *w[PX__PG_BATCH_MAX] = {NULL};
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
      if (!jobs[i]->answered)
        w[m++] = jobs[i];
    qsort(w, m, sizeof(px__pg_job_t *), px__pg_by_content);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
      if (k == 0 || px__pg_by_content(&w[k - 1], &w[i]) != 0)
        w[k++] = w[i];
    if (k > 0) {
      rc = px__pg_batch_write(s, c, w, k);
      if (rc != 0)
        px__pg_batch_failed(s, w, k, rc, c->broken);
    }
  }
  px__pg_release(s, c);
}

/* Until every job of the batch is answered: together while they can be,
 * then each alone. */
static void px__pg_batch(px__pg_t *s, px__pg_job_t **jobs, size_t n) {
  for (;;) {
    px__pg_job_t *group[PX__PG_BATCH_MAX];
    size_t m = 0;
    bool left = false;
    for (size_t i = 0; i < n; i++) {
      if (jobs[i]->answered)
        continue;
      left = true;
      if (!jobs[i]->alone)
        group[m++] = jobs[i];
    }
    if (!left)
      return;
    if (m > 0) {
      px__pg_batch_try(s, group, m);
      continue;
    }
    for (size_t i = 0; i < n; i++)
      if (!jobs[i]->answered)
        px__pg_batch_try(s, &jobs[i], 1);
  }
}

/* ---- the queue ---------------------------------------------------------------- */

/* Called with put_mu held, by a thread whose job is queued: writes
 * batches from the head of the queue until its own job is answered,
 * waking each answered job's thread. Returns with put_mu held. */
static void px__pg_lead(px__pg_t *s, px__pg_job_t *own) {
  while (!own->done && s->put_head != NULL) {
    px__pg_job_t *jobs[PX__PG_BATCH_MAX];
    size_t n = 0;
    while (s->put_head != NULL && n < PX__PG_BATCH_MAX) {
      jobs[n++] = s->put_head;
      s->put_head = s->put_head->next;
    }
    if (s->put_head == NULL)
      s->put_tail = NULL;
    pthread_mutex_unlock(&s->put_mu);
    /* Answers are written into the jobs unlocked; their threads read
     * them only once done is set below, under the lock. */
    for (size_t i = 0; i < n; i++)
      jobs[i]->answered = false;
    px__pg_batch(s, jobs, n);
    pthread_mutex_lock(&s->put_mu);
    for (size_t i = 0; i < n; i++) {
      jobs[i]->done = true; /* from here the job's thread may return: no more touching */
      if (jobs[i] != own)
        pthread_cond_signal(&jobs[i]->cv);
    }
  }
}

int px__pg_put(px_store_t *base, px_submission_t *sub, bool *duplicate) {
  px__pg_t *s = px__pgs(base);
  *duplicate = false;
  px__pg_job_t job = {.sub = sub, .key_line = px_ssh_pubkey_line(sub->key), .rc = -EIO};
  if (job.key_line == NULL)
    return -ENOMEM;
  unsigned leaders = s->pool_size / 2;
  if (leaders > PX__PG_LEADERS_MAX)
    leaders = PX__PG_LEADERS_MAX;
  if (leaders < 1)
    leaders = 1;
  pthread_cond_init(&job.cv, NULL);
  pthread_mutex_lock(&s->put_mu);
  if (s->put_tail != NULL)
    s->put_tail->next = &job;
  else
    s->put_head = &job;
  s->put_tail = &job;
  while (!job.done) {
    /* Lead while the job is still queued; once another leader has taken
     * it, wait for that one's answer. */
    if (s->put_leaders < leaders && s->put_head != NULL) {
      s->put_leaders++;
      px__pg_lead(s, &job);
      s->put_leaders--;
      /* Whoever is first in the queue now leads in this one's place. */
      if (s->put_head != NULL)
        pthread_cond_signal(&s->put_head->cv);
    } else {
      pthread_cond_wait(&job.cv, &s->put_mu);
    }
  }
  pthread_mutex_unlock(&s->put_mu);
  pthread_cond_destroy(&job.cv);
  free(job.key_line);
  *duplicate = job.duplicate;
  return job.rc;
}
