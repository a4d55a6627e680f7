#include "agent/outbox.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/held.h"
#include "agent/signer.h"
#include "agent/spool.h"

/* The worker gathers lines into batches: woken by the first line of one,
 * it waits up to PX__GATHER_NS for more (or until PX__BATCH_LINES are
 * queued) before it signs, syncs and writes them. One wake-up and one
 * fsync per batch instead of per line: at thousands of DNS-only
 * measurements a second, a wake-up per line cost more than the lines.
 * The loop never waits for this; a line is kept at most this much later. */
#define PX__BATCH_LINES 256
#define PX__GATHER_NS ((uint64_t)5 * 1000 * 1000)

typedef struct px__item {
  struct px__item *next;
  char *line;
  size_t n;
  char *held_why; /* NULL: sign and spool */
  bool kept;
} px__item_t;

struct px_outbox {
  px_signer_t *signer;
  px_spool_t *spool;
  const char *held_dir;
  FILE *out;
  uv_thread_t thread;
  uv_mutex_t lock;
  uv_cond_t work;  /* the worker waits here for lines (or the end) */
  uv_cond_t room;  /* put waits here when the queue is full; finish, for the end */
  /* Under lock: */
  px__item_t *head, **tail;
  size_t queued_bytes, queued_lines;
  bool closing;
  px_outbox_report_t rep;
};

static void px__item_free(px__item_t *it) {
  free(it->line);
  free(it->held_why);
  free(it);
}

/* The first failure wins; everything after it is lost (counted). */
static void px__fail_with(px_outbox_t *ob, int code, const char *err) {
  uv_mutex_lock(&ob->lock);
  if (ob->rep.error == 0) {
    ob->rep.error = code;
    snprintf(ob->rep.err, sizeof(ob->rep.err), "%s", err);
  }
  uv_mutex_unlock(&ob->lock);
}

static void px__fail(px_outbox_t *ob, const char *err) {
  px__fail_with(ob, -ENOSPC, err);
}

static bool px__failed_output(px_outbox_t *ob) {
  uv_mutex_lock(&ob->lock);
  bool failed = ob->rep.error == -EIO;
  uv_mutex_unlock(&ob->lock);
  return failed;
}

static bool px__failed(px_outbox_t *ob) {
  uv_mutex_lock(&ob->lock);
  bool failed = ob->rep.error != 0;
  uv_mutex_unlock(&ob->lock);
  return failed;
}

/* One batch, off the lock. Held lines are durable one by one (each is
 * its own file pair); spooled ones become durable together at the sync,
 * and only then are they counted. */
static void px__keep_batch(px_outbox_t *ob, px__item_t *batch) {
  char err[512], (*names)[128] = NULL;
  size_t nspool = 0, nheld = 0, nlost = 0, cap = 0;
  for (px__item_t *it = batch; it != NULL; it = it->next)
    if (it->held_why == NULL)
      cap++;
  if (cap > 0 && (names = malloc(cap * sizeof(*names))) == NULL)
    px__fail(ob, "out of memory while spooling");
  for (px__item_t *it = batch; it != NULL; it = it->next) {
    if (px__failed(ob)) {
      nlost++;
      continue;
    }
    if (ob->signer == NULL) {
      it->kept = true; /* nothing to keep but the output */
      continue;
    }
    if (it->held_why != NULL) {
      int rc = px_held_add(ob->held_dir, it->line, it->n, it->held_why);
      if (rc != 0) {
        snprintf(err, sizeof(err), "cannot keep a measurement in %.300s: %s", ob->held_dir,
                 strerror(-rc));
        px__fail(ob, err);
        nlost++;
      } else {
        nheld++;
        it->kept = true;
      }
      continue;
    }
    char *sig = NULL;
    int rc = px_signer_sign(ob->signer, it->line, it->n, &sig, err, sizeof(err));
    if (rc == 0) {
      rc = px_spool_write(ob->spool, it->line, it->n, sig, names[nspool], sizeof(names[0]));
      if (rc != 0)
        snprintf(err, sizeof(err),
                 "cannot spool the measurement in %.300s: %s (measurements already spooled are "
                 "kept)",
                 ob->spool->root, strerror(-rc));
    }
    free(sig);
    if (rc != 0) {
      px__fail(ob, err);
      nlost++;
    } else {
      nspool++;
      it->kept = true;
    }
  }
  if (nspool > 0) {
    int rc = px_spool_sync(ob->spool);
    if (rc != 0) {
      /* Written but maybe not durable: not reported as kept, so not left
       * to be uploaded behind the volunteer's back either. */
      for (size_t i = 0; i < nspool; i++)
        px_spool_discard(ob->spool, names[i]);
      for (px__item_t *it = batch; it != NULL; it = it->next)
        if (it->held_why == NULL)
          it->kept = false;
      snprintf(err, sizeof(err), "cannot sync the spool in %.300s: %s", ob->spool->root,
               strerror(-rc));
      px__fail(ob, err);
      nlost += nspool;
      nspool = 0;
    }
  }
  free(names);
  /* The output shows what is kept, and only that: a line there is one
   * the spool holds (or held/ does). */
  if (ob->out != NULL && !px__failed_output(ob)) {
    int e = 0;
    for (px__item_t *it = batch; it != NULL && e == 0; it = it->next) {
      if (!it->kept)
        continue;
      it->line[it->n] = '\n'; /* replaces the NUL: n + 1 bytes, no C string */
      if (fwrite(it->line, 1, it->n + 1, ob->out) != it->n + 1)
        e = errno != 0 ? errno : EIO;
      it->line[it->n] = '\0';
    }
    if (e == 0 && fflush(ob->out) != 0)
      e = errno != 0 ? errno : EIO;
    if (e != 0) {
      uv_mutex_lock(&ob->lock);
      ob->rep.write_errno = e;
      uv_mutex_unlock(&ob->lock);
      px__fail_with(ob, -EIO, strerror(e));
    }
  }
  uv_mutex_lock(&ob->lock);
  ob->rep.spooled += nspool;
  ob->rep.held += nheld;
  ob->rep.lost += nlost;
  uv_mutex_unlock(&ob->lock);
}

static void px__worker(void *arg) {
  px_outbox_t *ob = arg;
  uv_mutex_lock(&ob->lock);
  for (;;) {
    while (!ob->closing && ob->queued_lines < PX__BATCH_LINES &&
           ob->queued_bytes < PX_OUTBOX_MAX_QUEUED / 2) {
      if (ob->head == NULL)
        uv_cond_wait(&ob->work, &ob->lock);
      else if (uv_cond_timedwait(&ob->work, &ob->lock, PX__GATHER_NS) == UV_ETIMEDOUT)
        break;
    }
    if (ob->head == NULL)
      break; /* closing, and nothing left */
    px__item_t *batch = ob->head;
    size_t bytes = ob->queued_bytes;
    ob->head = NULL;
    ob->tail = &ob->head;
    ob->queued_lines = 0;
    uv_mutex_unlock(&ob->lock);

    px__keep_batch(ob, batch);
    while (batch != NULL) {
      px__item_t *next = batch->next;
      px__item_free(batch);
      batch = next;
    }

    uv_mutex_lock(&ob->lock);
    ob->queued_bytes -= bytes;
    uv_cond_broadcast(&ob->room);
  }
  uv_mutex_unlock(&ob->lock);
}

int px_outbox_start(px_outbox_t **out, FILE *output, px_signer_t *signer, px_spool_t *spool,
                    const char *held_dir) {
  px_outbox_t *ob = calloc(1, sizeof(*ob));
  if (ob == NULL)
    return -ENOMEM;
  ob->signer = signer;
  ob->spool = spool;
  ob->held_dir = held_dir;
  ob->out = output;
  ob->tail = &ob->head;
  int rc = uv_mutex_init(&ob->lock);
  if (rc != 0) {
    free(ob);
    return rc;
  }
  if ((rc = uv_cond_init(&ob->work)) != 0)
    goto no_work;
  if ((rc = uv_cond_init(&ob->room)) != 0)
    goto no_room;
  if ((rc = uv_thread_create(&ob->thread, px__worker, ob)) != 0)
    goto no_thread;
  *out = ob;
  return 0;
no_thread:
  uv_cond_destroy(&ob->room);
no_room:
  uv_cond_destroy(&ob->work);
no_work:
  uv_mutex_destroy(&ob->lock);
  free(ob);
  return rc;
}

int px_outbox_put(px_outbox_t *ob, char *line, size_t n, const char *held_why) {
  px__item_t *it = calloc(1, sizeof(*it));
  if (it == NULL || (held_why != NULL && (it->held_why = strdup(held_why)) == NULL)) {
    free(it);
    free(line);
    return -ENOMEM;
  }
  it->line = line;
  it->n = n;
  uv_mutex_lock(&ob->lock);
  /* One line always fits, however large: the bound is on what waits. */
  while (ob->rep.error == 0 && ob->queued_bytes > 0 &&
         ob->queued_bytes + n > PX_OUTBOX_MAX_QUEUED)
    uv_cond_wait(&ob->room, &ob->lock);
  int rc = ob->rep.error;
  if (rc == 0) {
    *ob->tail = it;
    ob->tail = &it->next;
    ob->queued_bytes += n;
    /* The first line starts the worker's gathering; a full batch (or a
     * queue half full) ends it early. Lines in between wake no one. */
    if (++ob->queued_lines == 1 || ob->queued_lines == PX__BATCH_LINES ||
        ob->queued_bytes >= PX_OUTBOX_MAX_QUEUED / 2)
      uv_cond_signal(&ob->work);
  } else {
    ob->rep.lost++;
  }
  uv_mutex_unlock(&ob->lock);
  if (rc != 0)
    px__item_free(it);
  return rc;
}

size_t px_outbox_kept(px_outbox_t *ob) {
  uv_mutex_lock(&ob->lock);
  size_t kept = ob->rep.spooled + ob->rep.held;
  uv_mutex_unlock(&ob->lock);
  return kept;
}

int px_outbox_finish(px_outbox_t *ob, px_outbox_report_t *rep) {
  uv_mutex_lock(&ob->lock);
  ob->closing = true;
  uv_cond_signal(&ob->work);
  uv_mutex_unlock(&ob->lock);
  uv_thread_join(&ob->thread);
  *rep = ob->rep;
  uv_cond_destroy(&ob->room);
  uv_cond_destroy(&ob->work);
  uv_mutex_destroy(&ob->lock);
  free(ob);
  return rep->error;
}

int px_sign_and_spool(px_signer_t *signer, px_spool_t *spool, const char *content, size_t n,
                      char *err, size_t errlen) {
  char *sig = NULL, name[128];
  int rc = px_signer_sign(signer, content, n, &sig, err, errlen);
  if (rc != 0)
    return rc;
  rc = px_spool_add(spool, content, n, sig, name, sizeof(name));
  free(sig);
  if (rc != 0)
    snprintf(err, errlen, "cannot spool the measurement in %s: %s (measurements "
                          "already spooled are kept)", spool->root, strerror(-rc));
  return rc;
}
