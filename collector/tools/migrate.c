/* parallax-collector migrate: a SQLite collector database into a
 * PostgreSQL store.
 *
 * The source is opened read-only and read in its own id order. Every row
 * is checked as a submission would be (the content's SHA-256 against the
 * recorded hash, the SSHSIG against the recorded key, the measurement's
 * schema, its start time and uid against its content); a row that fails is
 * not copied but recorded in the destination with why. Each batch of rows
 * is stored in one transaction together with the source's progress (the
 * last source id it covers), so a run stopped anywhere (a signal, kill -9,
 * a lost connection) resumes after its last commit when started again with
 * the same arguments, and stores nothing twice (the store deduplicates on
 * content in any case). Keys are merged in first, with their first/last
 * seen and rotation times, so allowed_signers reads the same. At the end
 * the whole source is compared with the destination: every measurement
 * present or refused, every key present with the same public key and
 * valid-before. Migrated measurements wait in the destination's analysis
 * queue; the collectors running on it summarise them. */
#include "collector/tools/migrate.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/store/store_migrate.h"
#include "collector/ingest/validate.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/merkle.h"
#include "common/sshsig.h"

#define PX__MIG_OK 0
#define PX__MIG_RUNTIME 1
#define PX__MIG_USAGE 2
#define PX__MIG_BATCH_DEFAULT 1000
#define PX__MIG_BATCH_MAX 20000
#define PX__MIG_CHECK_CHUNK 1000 /* uids per presence query of the final check */
#define PX__MIG_REASON_LEN 200

static volatile sig_atomic_t px__mig_stop;

/* strerror for messages from either thread. */
static const char *px__mig_err(int rc) {
  static __thread char buf[128];
  return strerror_r(rc < 0 ? -rc : rc, buf, sizeof(buf));
}

static void px__mig_on_signal(int sig) {
  px__mig_stop = sig;
}

/* A key of the source, as px_store_keys gave it. */
typedef struct {
  char key_id[PX_KEY_ID_LEN];
  char *line; /* "ssh-ed25519 …" as stored */
  px_ssh_pubkey_t pk;
  bool bad; /* the line does not parse, or is not key_id's key */
  time_t first_seen, last_seen, valid_before;
  bool seen; /* the final check met it in the destination */
} px__mig_key_t;

typedef struct {
  px__mig_key_t *v;
  size_t n, cap;
} px__mig_keys_t;

/* One batch of source rows: the verified ones as submissions (content,
 * signature and uid owned here), the refused ones with why. */
typedef struct {
  const px__mig_keys_t *keys;
  size_t cap;
  px_submission_t *subs;
  px_ssh_pubkey_t *signers; /* subs[i].key points at signers[i] */
  size_t n;
  px_refusal_t *refusals;
  char (*refused_uid)[PX_UID_MAX];
  char (*refused_why)[PX__MIG_REASON_LEN];
  size_t nrefused;
  int64_t last_id;
} px__mig_batch_t;

static void px__mig_usage(FILE *out) {
  fputs("Usage: parallax-collector migrate --from sqlite:PATH --to postgresql://… [--batch N]\n"
        "Copy a SQLite collector database into a PostgreSQL store, verifying every\n"
        "measurement's signature and content hash on the way.\n\n"
        "  --from sqlite:PATH      the SQLite database (opened read-only, never changed)\n"
        "  --to postgresql://USER@HOST[:PORT]/DB[?PARAM=VALUE&...]\n"
        "                          the PostgreSQL store (as --db of the collector)\n"
        "  --batch N               rows per transaction (default 1000, at most 20000)\n"
        "  -h, --help\n"
        "\nInterrupted (Ctrl-C, SIGTERM, kill -9, a lost connection), the same command\n"
        "continues after the last committed batch. Exit status: 0 everything copied and\n"
        "the counts agree; 1 a failure, a refused measurement or counts that do not\n"
        "agree; 2 a usage error.\n",
        out);
}

/* ---- keys ---------------------------------------------------------------- */

static int px__mig_key_cmp(const void *a, const void *b) {
  return strcmp(((const px__mig_key_t *)a)->key_id, ((const px__mig_key_t *)b)->key_id);
}

static int px__mig_key_add(void *data, const char *key_id, const char *pubkey, time_t first_seen,
                           time_t last_seen, time_t valid_before) {
  px__mig_keys_t *ks = data;
  if (ks->n == ks->cap) {
    size_t cap = ks->cap ? ks->cap * 2 : 16;
    px__mig_key_t *grown = realloc(ks->v, cap * sizeof(*grown));
    if (grown == NULL)
      return -ENOMEM;
    ks->v = grown;
    ks->cap = cap;
  }
  px__mig_key_t *k = &ks->v[ks->n];
  memset(k, 0, sizeof(*k));
  snprintf(k->key_id, sizeof(k->key_id), "%s", key_id);
  if ((k->line = strdup(pubkey)) == NULL)
    return -ENOMEM;
  k->first_seen = first_seen;
  k->last_seen = last_seen;
  k->valid_before = valid_before;
  k->bad = px_ssh_pubkey_parse(pubkey, &k->pk) != 0 || strcmp(k->pk.key_id, key_id) != 0 ||
           strlen(key_id) >= sizeof(k->key_id);
  ks->n++;
  return 0;
}

static void px__mig_keys_free(px__mig_keys_t *ks) {
  for (size_t i = 0; i < ks->n; i++)
    free(ks->v[i].line);
  free(ks->v);
  memset(ks, 0, sizeof(*ks));
}

static px__mig_key_t *px__mig_key_find(const px__mig_keys_t *ks, const char *key_id) {
  px__mig_key_t probe;
  memset(&probe, 0, sizeof(probe));
  if (key_id == NULL || strlen(key_id) >= sizeof(probe.key_id))
    return NULL;
  snprintf(probe.key_id, sizeof(probe.key_id), "%s", key_id);
  return ks->n ? bsearch(&probe, ks->v, ks->n, sizeof(*ks->v), px__mig_key_cmp) : NULL;
}

/* Reads the source's keys (sorted by key_id into *ks) and merges each
 * into the destination. A key whose public key is not its id is not
 * copied; what it signed is refused row by row. */
static int px__mig_copy_keys(px_store_t *src, px_store_t *dst, px__mig_keys_t *ks) {
  int rc = px_store_keys(src, px__mig_key_add, ks);
  if (rc != 0) {
    px_log(PX_LOG_ERR, "cannot read the source's keys: %s", px__mig_err(rc));
    return rc;
  }
  qsort(ks->v, ks->n, sizeof(*ks->v), px__mig_key_cmp);
  for (size_t i = 0; i < ks->n; i++) {
    const px__mig_key_t *k = &ks->v[i];
    if (k->bad) {
      px_log(PX_LOG_WARNING, "key %s: its public key is not that key id: not copied", k->key_id);
      continue;
    }
    rc = px_store_import_key(dst, k->key_id, k->line, k->first_seen, k->last_seen,
                             k->valid_before);
    if (rc != 0) {
      px_log(PX_LOG_ERR, "cannot store key %s: %s", k->key_id, px__mig_err(rc));
      return rc;
    }
  }
  return 0;
}

static int px__mig_pool_add(void *data, const uint8_t *der, size_t n) {
  return px_blobs_push(data, der, n);
}

/* The source's intermediate pool into the destination's (the destination's
 * analysis checks each against its own trust store before using it). */
static int px__mig_copy_pool(px_store_t *src, px_store_t *dst) {
  px_blobs_t pool = {0};
  int rc = px_store_pool(src, px__mig_pool_add, &pool);
  if (rc != 0)
    px_log(PX_LOG_ERR, "cannot read the source's intermediate pool: %s", px__mig_err(rc));
  else if (pool.n > 0 && (rc = px_store_pool_add(dst, pool.v, pool.n)) != 0)
    px_log(PX_LOG_ERR, "cannot store the intermediate pool: %s", px__mig_err(rc));
  else if (pool.n > 0)
    px_log(PX_LOG_INFO, "intermediate pool: %zu certificates carried over", pool.n);
  px_blobs_free(&pool);
  return rc;
}

/* ---- one row --------------------------------------------------------------- */

/* Checks a source row as a submission is checked, and more: the content
 * is what the recorded hash says, the signature is the recorded key's, the
 * start time and uid are the content's. 0 with *sub filled (content,
 * signature and uid still the row's: the caller copies them), or -EINVAL
 * with why. */
static int px__mig_verify(const px__mig_keys_t *keys, const px_stored_row_t *row,
                          px_submission_t *sub, px_ssh_pubkey_t *signer, char *why,
                          size_t whylen) {
  unsigned md_len;
  memset(sub, 0, sizeof(*sub));
  if (EVP_Digest(row->content, row->content_len, sub->sha256, &md_len, EVP_sha256(), NULL) != 1)
    return -ENOMEM;
  if (row->content_sha256 == NULL || memcmp(sub->sha256, row->content_sha256, 32) != 0) {
    snprintf(why, whylen, "content hash mismatch: the content is not what was stored");
    return -EINVAL;
  }
  const px__mig_key_t *k = px__mig_key_find(keys, row->key_id);
  if (k == NULL || k->bad) {
    snprintf(why, whylen, "key %s is %s", row->key_id ? row->key_id : "(none)",
             k == NULL ? "not in the source's keys" : "not the public key stored for it");
    return -EINVAL;
  }
  const char *sig_why = NULL;
  if (px_sshsig_verify(row->signature, strlen(row->signature), PX_SSHSIG_NAMESPACE,
                       (const uint8_t *)row->content, row->content_len, signer, &sig_why) != 0) {
    snprintf(why, whylen, "bad signature: %s", sig_why ? sig_why : "does not verify");
    return -EINVAL;
  }
  if (memcmp(signer->blob, k->pk.blob, sizeof(signer->blob)) != 0) {
    snprintf(why, whylen, "bad signature: made by %s, not by the recorded key %s",
             signer->key_id, k->key_id);
    return -EINVAL;
  }
  char vwhy[160];
  if (px_validate_measurement(row->content, row->content_len, row->received_at, &sub->meta, vwhy,
                              sizeof(vwhy), NULL, 0) != 0) {
    snprintf(why, whylen, "not a valid measurement: %s", vwhy);
    return -EINVAL;
  }
  if (sub->meta.measurement_start_time != row->measurement_start_time) {
    snprintf(why, whylen, "measurement_start_time recorded is not the content's");
    return -EINVAL;
  }
  px_measurement_uid(&sub->meta, sub->sha256, sub->uid, sizeof(sub->uid));
  if (strcmp(sub->uid, row->uid) != 0) {
    snprintf(why, whylen, "uid is not the content's (%s)", sub->uid);
    return -EINVAL;
  }
  sub->key = signer;
  sub->received_at = row->received_at;
  if (row->geo_mismatch && row->uploader_cc != NULL && strlen(row->uploader_cc) == 2) {
    sub->geo_mismatch = true;
    memcpy(sub->uploader_cc, row->uploader_cc, 3);
  }
  return 0;
}

/* ---- batches ---------------------------------------------------------------- */

static void px__mig_batch_free(px__mig_batch_t *b);

/* b must be zeroed; on failure it holds nothing. */
static int px__mig_batch_init(px__mig_batch_t *b, const px__mig_keys_t *keys, size_t cap) {
  b->keys = keys;
  b->cap = cap;
  b->subs = calloc(cap, sizeof(*b->subs));
  b->signers = calloc(cap, sizeof(*b->signers));
  b->refusals = calloc(cap, sizeof(*b->refusals));
  b->refused_uid = calloc(cap, sizeof(*b->refused_uid));
  b->refused_why = calloc(cap, sizeof(*b->refused_why));
  if (b->subs == NULL || b->signers == NULL || b->refusals == NULL || b->refused_uid == NULL ||
      b->refused_why == NULL) {
    px__mig_batch_free(b);
    return -ENOMEM;
  }
  return 0;
}

static void px__mig_batch_clear(px__mig_batch_t *b) {
  for (size_t i = 0; b->subs != NULL && i < b->n; i++) {
    free((char *)b->subs[i].content);
    free((char *)b->subs[i].signature);
  }
  b->n = b->nrefused = 0;
}

static void px__mig_batch_free(px__mig_batch_t *b) {
  px__mig_batch_clear(b);
  free(b->subs);
  free(b->signers);
  free(b->refusals);
  free(b->refused_uid);
  free(b->refused_why);
}

/* Export callback: one source row into the batch, verified or refused. */
static int px__mig_collect(void *data, const px_stored_row_t *row) {
  px__mig_batch_t *b = data;
  if (b->n + b->nrefused >= b->cap)
    return -EOVERFLOW; /* the export gives at most cap rows */
  b->last_id = row->id;
  px_submission_t *sub = &b->subs[b->n];
  char why[PX__MIG_REASON_LEN];
  int rc = px__mig_verify(b->keys, row, sub, &b->signers[b->n], why, sizeof(why));
  if (rc == -EINVAL) {
    size_t i = b->nrefused++;
    snprintf(b->refused_uid[i], PX_UID_MAX, "%s", row->uid);
    snprintf(b->refused_why[i], PX__MIG_REASON_LEN, "%s", why);
    b->refusals[i].uid = b->refused_uid[i];
    b->refusals[i].reason = b->refused_why[i];
    memset(sub, 0, sizeof(*sub));
    return 0;
  }
  if (rc != 0)
    return rc;
  char *content = malloc(row->content_len + 1);
  char *signature = strdup(row->signature);
  if (content == NULL || signature == NULL) {
    free(content);
    free(signature);
    memset(sub, 0, sizeof(*sub));
    return -ENOMEM;
  }
  memcpy(content, row->content, row->content_len);
  content[row->content_len] = '\0';
  sub->content = content;
  sub->content_len = row->content_len;
  sub->signature = signature;
  b->n++;
  return 0;
}

/* ---- the run ----------------------------------------------------------------- */

typedef struct {
  const char *from, *to;
  unsigned batch;
  char source[PATH_MAX + PX_UID_MAX + 16]; /* the source's identity in the destination */
  px_store_t *src, *dst;
  px__mig_keys_t keys;
  int64_t src_measurements, src_keys;
  int64_t done_rows, copied, present, refused; /* this run */
} px__mig_t;

static int px__mig_first_uid(void *data, const px_stored_row_t *row) {
  snprintf(data, PX_UID_MAX, "%s", row->uid);
  return 0;
}

/* "sqlite:<real path>#<uid of its first row>": the same file, even moved
 * or reached through a symlink, is the same migration; another database
 * put at the same path is not. */
static int px__mig_identity(px__mig_t *m) {
  char real[PATH_MAX], first[PX_UID_MAX] = "";
  if (realpath(m->from + 7, real) == NULL)
    return -errno;
  px_filter_t f = {0};
  px_store_export_t *e = NULL;
  int rc = px_store_export_open(m->src, &f, &e);
  if (rc == 0)
    rc = px_store_export_next(e, 1, px__mig_first_uid, first);
  px_store_export_close(e);
  if (rc < 0)
    return rc;
  snprintf(m->source, sizeof(m->source), "sqlite:%s#%s", real, first);
  return 0;
}

static double px__mig_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Two batches: the reader thread reads and verifies one from the source
 * while the main thread stores the other, so signature checks and the
 * database's work overlap. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  px__mig_batch_t b[2];
  int got[2];   /* rows in a full slot; 0 empty, -1 the end, < -1 an error */
  bool quit;    /* the main thread stops taking batches */
  px_store_export_t *e;
  unsigned max;
} px__mig_pipe_t;

/* The reader thread: fills the slots in turn until the source ends, an
 * error, or quit. It owns the export while it runs. */
static void *px__mig_reader(void *arg) {
  px__mig_pipe_t *p = arg;
  for (unsigned i = 0;; i ^= 1) {
    pthread_mutex_lock(&p->mu);
    while (p->got[i] != 0 && !p->quit)
      pthread_cond_wait(&p->cv, &p->mu);
    bool quit = p->quit;
    pthread_mutex_unlock(&p->mu);
    if (quit)
      return NULL;
    px__mig_batch_clear(&p->b[i]);
    int got = px_store_export_next(p->e, p->max, px__mig_collect, &p->b[i]);
    pthread_mutex_lock(&p->mu);
    p->got[i] = got > 0 ? got : got == 0 ? -1 : got - 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (got <= 0)
      return NULL;
  }
}

/* Stores one full batch and moves the counters. */
static int px__mig_store(px__mig_t *m, px__mig_batch_t *b, int got, int64_t *cursor) {
  size_t copied = 0;
  int rc = px_store_import_batch(m->dst, m->source, *cursor, b->last_id, b->subs, b->n,
                                 b->refusals, b->nrefused, &copied);
  if (rc == -ESTALE) {
    px_log(PX_LOG_ERR, "another migration of this source is running: its progress moved");
    return rc;
  }
  if (rc != 0) {
    px_log(PX_LOG_ERR, "cannot store a batch (source ids %" PRId64 " to %" PRId64 "): %s",
           *cursor + 1, b->last_id, px__mig_err(rc));
    return rc;
  }
  *cursor = b->last_id;
  m->done_rows += got;
  m->copied += (int64_t)copied;
  m->present += (int64_t)(b->n - copied);
  m->refused += (int64_t)b->nrefused;
  for (size_t i = 0; i < b->nrefused; i++)
    px_log(PX_LOG_WARNING, "refused %s: %s", b->refused_uid[i], b->refused_why[i]);
  return 0;
}

/* Copies from the recorded progress to the end of the source, a batch a
 * transaction. Returns 0 at the end, 1 when a signal stopped it after a
 * commit, or a negative error. */
static int px__mig_copy(px__mig_t *m) {
  px_migration_t prog;
  int rc = px_store_migration_get(m->dst, m->source, &prog);
  if (rc != 0) {
    px_log(PX_LOG_ERR, "cannot read the migration's progress in the destination: %s",
           px__mig_err(rc));
    return rc;
  }
  if (prog.last_id > 0)
    px_log(PX_LOG_INFO,
           "resuming after source id %" PRId64 " (%" PRId64 " copied, %" PRId64
           " already there, %" PRId64 " refused so far)",
           prog.last_id, prog.copied, prog.present, prog.refused);
  px__mig_pipe_t p;
  memset(&p, 0, sizeof(p));
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  p.max = m->batch;
  px_filter_t f = {.after_id = prog.last_id};
  int64_t cursor = prog.last_id;
  int64_t total_done = prog.copied + prog.present + prog.refused;
  double t0 = px__mig_now(), last_report = t0;
  pthread_t reader;
  bool started = false;
  if ((rc = px__mig_batch_init(&p.b[0], &m->keys, m->batch)) == 0 &&
      (rc = px__mig_batch_init(&p.b[1], &m->keys, m->batch)) == 0 &&
      (rc = px_store_export_open(m->src, &f, &p.e)) == 0)
    started = (rc = -pthread_create(&reader, NULL, px__mig_reader, &p)) == 0;
  for (unsigned i = 0; rc == 0 && !px__mig_stop; i ^= 1) {
    pthread_mutex_lock(&p.mu);
    while (p.got[i] == 0 && !px__mig_stop)
      pthread_cond_wait(&p.cv, &p.mu);
    int got = p.got[i];
    pthread_mutex_unlock(&p.mu);
    if (got == 0) /* a signal: the reader is told below */
      break;
    if (got < 0) {
      if (got < -1) {
        rc = got + 1;
        px_log(PX_LOG_ERR, "cannot read the source: %s", px__mig_err(rc));
      }
      break;
    }
    rc = px__mig_store(m, &p.b[i], got, &cursor);
    total_done += got;
    pthread_mutex_lock(&p.mu);
    p.got[i] = 0;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    double now = px__mig_now();
    if (rc == 0 && now - last_report >= 2.0) {
      px_log(PX_LOG_INFO, "%" PRId64 " of %" PRId64 " rows (%.0f rows/s), %" PRId64
             " copied, %" PRId64 " already there, %" PRId64 " refused",
             total_done, m->src_measurements, (double)m->done_rows / (now - t0), m->copied,
             m->present, m->refused);
      last_report = now;
    }
  }
  if (started) {
    pthread_mutex_lock(&p.mu);
    p.quit = true;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    pthread_join(reader, NULL);
  }
  px_store_export_close(p.e);
  px__mig_batch_free(&p.b[0]);
  px__mig_batch_free(&p.b[1]);
  pthread_mutex_destroy(&p.mu);
  pthread_cond_destroy(&p.cv);
  double secs = px__mig_now() - t0;
  px_log(PX_LOG_INFO, "this run: %" PRId64 " rows in %.1f s (%.0f rows/s): %" PRId64
         " copied, %" PRId64 " already there, %" PRId64 " refused",
         m->done_rows, secs, secs > 0 ? (double)m->done_rows / secs : 0.0, m->copied,
         m->present, m->refused);
  if (rc == 0 && px__mig_stop) {
    px_log(PX_LOG_NOTICE,
           "%s: stopped after source id %" PRId64
           "; run the same command again to continue from there",
           sigdescr_np(px__mig_stop), cursor);
    return 1;
  }
  return rc;
}

/* ---- the final check ----------------------------------------------------------- */

typedef struct {
  px_store_t *dst;
  char (*uids)[PX_UID_MAX];
  const char **ptrs;
  size_t n;
  int64_t rows, held;
} px__mig_check_t;

static int px__mig_check_flush(px__mig_check_t *c) {
  size_t present = 0;
  if (c->n == 0)
    return 0;
  int rc = px_store_count_uids(c->dst, c->ptrs, c->n, &present);
  c->held += (int64_t)present;
  c->n = 0;
  return rc;
}

static int px__mig_check_row(void *data, const px_stored_row_t *row) {
  px__mig_check_t *c = data;
  c->rows++;
  if (strchr(row->uid, '\n') != NULL || strlen(row->uid) >= PX_UID_MAX)
    return 0; /* no uid of ours: cannot be in the destination */
  snprintf(c->uids[c->n], PX_UID_MAX, "%s", row->uid);
  c->ptrs[c->n] = c->uids[c->n];
  c->n++;
  return c->n == PX__MIG_CHECK_CHUNK ? px__mig_check_flush(c) : 0;
}

/* How many of the source's measurements the destination holds (by uid,
 * which is a function of the content), reading the whole source again. */
static int px__mig_held(px__mig_t *m, int64_t *rows, int64_t *held) {
  px__mig_check_t c = {.dst = m->dst};
  c.uids = calloc(PX__MIG_CHECK_CHUNK, sizeof(*c.uids));
  c.ptrs = calloc(PX__MIG_CHECK_CHUNK, sizeof(*c.ptrs));
  px_filter_t f = {0};
  px_store_export_t *e = NULL;
  int rc = c.uids && c.ptrs ? px_store_export_open(m->src, &f, &e) : -ENOMEM;
  while (rc == 0) {
    int got = px_store_export_next(e, 5000, px__mig_check_row, &c);
    if (got <= 0) {
      rc = got;
      break;
    }
  }
  if (rc == 0)
    rc = px__mig_check_flush(&c);
  px_store_export_close(e);
  free(c.uids);
  free(c.ptrs);
  *rows = c.rows;
  *held = c.held;
  return rc;
}

typedef struct {
  px__mig_keys_t *keys;
  int64_t same;
} px__mig_keycheck_t;

static int px__mig_check_key(void *data, const char *key_id, const char *pubkey, time_t first,
                             time_t last, time_t valid_before) {
  px__mig_keycheck_t *kc = data;
  (void)first;
  (void)last;
  px__mig_key_t *k = px__mig_key_find(kc->keys, key_id);
  if (k == NULL || k->seen)
    return 0;
  k->seen = true;
  if (strcmp(k->line, pubkey) == 0 && k->valid_before == valid_before)
    kc->same++;
  else
    printf("key %s: not the same in the destination (public key or valid-before differ)\n",
           key_id);
  return 0;
}

static int px__mig_print_refusal(void *data, const char *uid, const char *reason) {
  int64_t *n = data;
  (*n)++;
  printf("  refused %s: %s\n", uid, reason);
  return 0;
}

static int px__mig_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]) {
  return px_store_log_node(ctx, level, index, out);
}

typedef struct {
  px_store_t *dst;
  uint64_t carried, skipped;
} px__mig_heads_t;

/* One head the source signed, kept by the destination when its log has
 * the same root at that size (it does, once the order is carried). */
static int px__mig_head(void *data, const px_log_head_t *h) {
  px__mig_heads_t *mh = data;
  uint8_t at[32];
  int rc = h->tree_size == 0 ? 0 : px_merkle_subtree_hash(px__mig_node, mh->dst, 0, h->tree_size, at);
  if (rc == -ENOENT || (rc == 0 && h->tree_size > 0 && memcmp(at, h->root, sizeof(at)) != 0)) {
    mh->skipped++;
    return 0;
  }
  if (rc == 0)
    rc = px_store_log_head_put(mh->dst, h);
  mh->carried += rc == 0;
  return rc;
}

/* The source's measurement log carried in its order: the destination's
 * first n leaves (n the source's size) make the source's root, so every
 * tree head the source signed still holds. Prints the result; 0, 1 when
 * they differ, or a negative error. */
static int px__mig_check_log(px__mig_t *m) {
  uint64_t n = 0, dn = 0;
  uint8_t root[32], at[32];
  int rc = px_store_log_head(m->src, &n, root);
  if (rc == 0)
    rc = px_store_log_head(m->dst, &dn, at); /* its size; the root at n is computed below */
  if (rc != 0) {
    px_log(PX_LOG_ERR, "cannot read the measurement logs: %s", px__mig_err(rc));
    return rc;
  }
  char hex[65];
  px_hex_encode(root, sizeof(root), hex);
  if (n == 0) {
    printf("log: the source has none%s\n",
           m->src_measurements > 0 ? " (written by an older collector, or loaded in bulk): "
                                     "the destination logs what it stores, in the source's order"
                                   : "");
    return 0;
  }
  rc = dn < n ? 1 : px_merkle_subtree_hash(px__mig_node, m->dst, 0, n, at);
  if (rc < 0) {
    px_log(PX_LOG_ERR, "cannot read the destination's log: %s", px__mig_err(rc));
    return rc;
  }
  if (rc == 0 && memcmp(at, root, sizeof(root)) == 0) {
    printf("log: carried in order: the destination's first %" PRIu64 " leaves make the "
           "source's root %.16s… (%" PRIu64 " leaves in all)\n", n, hex, dn);
    px__mig_heads_t mh = {m->dst, 0, 0};
    rc = px_store_log_heads(m->src, px__mig_head, &mh);
    if (rc != 0) {
      px_log(PX_LOG_ERR, "cannot copy the signed tree heads: %s", px__mig_err(rc));
      return rc;
    }
    printf("log: %" PRIu64 " signed tree head(s) kept by the destination too\n", mh.carried);
    return 0;
  }
  if (dn < n)
    printf("log: NOT CARRIED: the destination's log has %" PRIu64 " leaves, the source's %" PRIu64
           " (root %.16s…); a refused measurement is a leaf that was not copied\n", dn, n, hex);
  else
    printf("log: NOT CARRIED: the destination's first %" PRIu64 " leaves (of %" PRIu64 ") do "
           "not make the source's root %.16s…; a measurement stored in the destination before "
           "or during the migration changed the order\n", n, dn, hex);
  return 1;
}

/* Compares the source with the destination and prints the result on
 * stdout. 0 when they agree and nothing was refused, 1 when not, or a
 * negative error. */
static int px__mig_check(px__mig_t *m) {
  int64_t rows = 0, held = 0, refused = 0, dst_m = 0, dst_k = 0;
  px__mig_keycheck_t kc = {&m->keys, 0};
  int rc = px_store_count(m->src, &m->src_measurements, &m->src_keys);
  if (rc == 0)
    rc = px__mig_held(m, &rows, &held);
  if (rc == 0)
    rc = px_store_keys(m->dst, px__mig_check_key, &kc);
  if (rc == 0)
    rc = px_store_count(m->dst, &dst_m, &dst_k);
  if (rc != 0) {
    px_log(PX_LOG_ERR, "cannot compare the source with the destination: %s", px__mig_err(rc));
    return rc;
  }
  char shown[1024];
  px_store_url_redact(m->to, shown, sizeof(shown));
  printf("source %s: %" PRId64 " measurements, %" PRId64 " keys\n", m->from, rows, m->src_keys);
  printf("destination %s: holds %" PRId64 " of these measurements and %" PRId64
         " of these keys unchanged (%" PRId64 " measurements, %" PRId64 " keys in all)\n",
         shown, held, kc.same, dst_m, dst_k);
  rc = px_store_migration_refused(m->dst, m->source, px__mig_print_refusal, &refused);
  if (rc != 0)
    return rc;
  printf("refused: %" PRId64 "%s\n", refused, refused ? " (listed above; not copied)" : "");
  bool agree = held + refused == rows && rows == m->src_measurements && kc.same == m->src_keys;
  printf("counts: %s\n", agree ? "agree" : "DO NOT AGREE");
  int log = px__mig_check_log(m);
  fflush(stdout);
  if (log < 0)
    return log;
  return agree && refused == 0 && log == 0 ? 0 : 1;
}

/* ---- the command ------------------------------------------------------------- */

/* Parses the command line into m. PX__MIG_OK to go on, or the exit status
 * (-1 for a --help that was answered). */
static int px__mig_args(int argc, char **argv, px__mig_t *m) {
  enum { O_FROM = 256, O_TO, O_BATCH };
  static const struct option opts[] = {
      {"from", required_argument, NULL, O_FROM}, {"to", required_argument, NULL, O_TO},
      {"batch", required_argument, NULL, O_BATCH}, {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  unsigned long v;
  int opt;
  m->batch = PX__MIG_BATCH_DEFAULT;
  opterr = 0;
  optind = 1;
  /* Before any thread starts: getopt's static state is ours alone. */
  /* NOLINTNEXTLINE(concurrency-mt-unsafe) */
  while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (opt) {
    case 'h':
      px__mig_usage(stdout);
      return -1;
    case O_FROM:
      m->from = optarg;
      break;
    case O_TO:
      m->to = optarg;
      break;
    case O_BATCH:
      if (px_parse_ulong(optarg, 1, PX__MIG_BATCH_MAX, &v) != 0) {
        px_log(PX_LOG_ERR, "--batch: 1 to %d rows", PX__MIG_BATCH_MAX);
        return PX__MIG_USAGE;
      }
      m->batch = (unsigned)v;
      break;
    default:
      px_log(PX_LOG_ERR, "%s '%s' (see migrate --help)",
             opt == ':' ? "missing value for" : "unknown option", argv[optind - 1]);
      return PX__MIG_USAGE;
    }
  }
  if (optind < argc) {
    px_log(PX_LOG_ERR, "unexpected argument '%s' (see migrate --help)", argv[optind]);
    return PX__MIG_USAGE;
  }
  if (m->from == NULL || m->to == NULL) {
    px_log(PX_LOG_ERR, "--from sqlite:PATH and --to postgresql://… are both needed");
    return PX__MIG_USAGE;
  }
  if (strncmp(m->from, "sqlite:", 7) != 0 || m->from[7] == '\0') {
    px_log(PX_LOG_ERR, "--from: '%s' is not sqlite:PATH", m->from);
    return PX__MIG_USAGE;
  }
  if (strncmp(m->to, "postgresql://", 13) != 0 && strncmp(m->to, "postgres://", 11) != 0) {
    char shown[512];
    px_store_url_redact(m->to, shown, sizeof(shown));
    px_log(PX_LOG_ERR, "--to: '%s' is not a postgresql:// URL", shown);
    return PX__MIG_USAGE;
  }
  return PX__MIG_OK;
}

static int px__mig_run(px__mig_t *m) {
  char err[512];
  int rc = px_store_open_source(m->from, &m->src, err, sizeof(err));
  if (rc != 0) {
    px_log(PX_LOG_ERR, "--from: %s", err);
    return rc == -ENOENT || rc == -EPROTONOSUPPORT ? PX__MIG_USAGE : PX__MIG_RUNTIME;
  }
  rc = px_store_open(m->to, &m->dst, err, sizeof(err));
  if (rc != 0) {
    px_log(PX_LOG_ERR, "--to: %s", err);
    return rc == -EPROTONOSUPPORT ? PX__MIG_USAGE : PX__MIG_RUNTIME;
  }
  if ((rc = px_store_count(m->src, &m->src_measurements, &m->src_keys)) != 0 ||
      (rc = px__mig_identity(m)) != 0) {
    px_log(PX_LOG_ERR, "cannot read %s: %s", m->from, px__mig_err(rc));
    return PX__MIG_RUNTIME;
  }
  char shown[1024];
  px_store_url_redact(m->to, shown, sizeof(shown));
  px_log(PX_LOG_INFO, "%s (%" PRId64 " measurements, %" PRId64 " keys) to %s", m->from,
         m->src_measurements, m->src_keys, shown);
  if (px__mig_copy_keys(m->src, m->dst, &m->keys) != 0 ||
      px__mig_copy_pool(m->src, m->dst) != 0)
    return PX__MIG_RUNTIME;
  rc = px__mig_copy(m);
  if (rc != 0)
    return PX__MIG_RUNTIME;
  rc = px__mig_check(m);
  if (rc < 0)
    return PX__MIG_RUNTIME;
  if (m->copied > 0)
    px_log(PX_LOG_INFO, "%" PRId64 " measurements wait for the analysis: the collectors on the "
           "destination summarise them as they run (compare and check-in include them then)",
           m->copied);
  return rc == 0 ? PX__MIG_OK : PX__MIG_RUNTIME;
}

int px_migrate_main(int argc, char **argv) {
  px_log_setup("parallax-collector migrate", PX_LOG_INFO);
  px__mig_t m;
  memset(&m, 0, sizeof(m));
  int code = px__mig_args(argc, argv, &m);
  if (code != PX__MIG_OK)
    return code < 0 ? PX__MIG_OK : code;
  /* A signal ends the run after the batch in flight commits. */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = px__mig_on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  code = px__mig_run(&m);
  px_store_close(m.src);
  px_store_close(m.dst);
  px__mig_keys_free(&m.keys);
  return code;
}
