#include "collector/analysis/analysis.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector/analysis/analysis_worker.h"
#include "collector/metrics.h"
#include "collector/analysis/summary.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "common/x509_fields.h"

#define PX__BATCH 200

struct px_analysis {
  px_store_t *store;
  X509_STORE *trust;
  char trust_desc[512];
  px_x509_judge_cache_t *judged;
  px_aworker_t *worker; /* NULL: summaries made in this process (tests) */
  bool worker_broken;   /* (logged once until it works again) */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping, poked;
};

/* ---- the analysis thread -------------------------------------------------- */

/* The flags the store keeps beside a summary (for listings and rechecks). */
static void px__flags(json_t *sum, px_analysis_out_t *out) {
  out->claims_mismatch = json_array_size(json_object_get(sum, "claims_mismatch")) > 0;
  out->awaiting_issuer = json_is_true(json_object_get(sum, "awaiting_issuer"));
}

static void px__quarantine(px_analysis_t *a, const px_stored_t *m, const char *why,
                           px_analysis_out_t *out) {
  out->quarantine = strdup(why);
  fprintf(stderr, "parallax-collector: analysis: measurement %s quarantined: %s\n", m->uid, why);
  px_metrics_quarantined(1);
  (void)a;
}

/* One measurement's summary (in the worker process when there is one),
 * or its quarantine. A worker that cannot work at all abandons the batch
 * (-EAGAIN): the measurements are not to blame and stay queued. */
static int px__summarize_stored(void *data, const px_stored_t *m, px_analysis_out_t *out) {
  px_analysis_t *a = data;
  char why[256];
  if (a->worker == NULL) {
    json_t *sum = px_summarize(m->content, m->content_len, m->measurement_start_time, a->trust,
                               a->judged);
    if (sum == NULL) {
      px__quarantine(a, m, "the analysis cannot read it as a measurement", out);
      return 0;
    }
    px__flags(sum, out);
    out->summary = px_json_dump(sum);
    json_decref(sum);
    return out->summary != NULL ? 0 : -ENOMEM;
  }
  char *text = NULL;
  int rc = px_aworker_summarize(a->worker, m->content, m->content_len, m->measurement_start_time,
                                &text, &out->pool, why, sizeof(why));
  if (rc < 0) {
    if (!a->worker_broken)
      fprintf(stderr, "parallax-collector: analysis: %s; retrying\n", why);
    a->worker_broken = true;
    return -EAGAIN;
  }
  a->worker_broken = false;
  if (rc == PX_AWORKER_OK) {
    json_t *sum = json_loads(text, 0, NULL);
    px__flags(sum, out);
    json_decref(sum);
    out->summary = text;
    return 0;
  }
  px__quarantine(a, m, why, out);
  return 0;
}

/* Summarises the next batch; returns how many measurements it covered. */
static int px__batch(px_analysis_t *a) {
  return px_store_analyze(a->store, PX__BATCH, px__summarize_stored, a);
}

static void *px__main(void *arg) {
  px_analysis_t *a = arg;
  pthread_mutex_lock(&a->mu);
  while (!a->stopping) {
    a->poked = false;
    pthread_mutex_unlock(&a->mu);
    int n = px__batch(a);
    pthread_mutex_lock(&a->mu);
    if (n > 0 || a->poked || a->stopping)
      continue;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

static void px__poke(void *data) {
  px_analysis_t *a = data;
  pthread_mutex_lock(&a->mu);
  a->poked = true;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static int px__pool_load(void *data, const uint8_t *der, size_t n) {
  return px_aworker_pool_add(data, der, n);
}

int px_analysis_start(px_store_t *store, const char *ca_file, const char *worker_exe,
                      px_analysis_t **out, char *err, size_t errlen) {
  px_analysis_t *a = calloc(1, sizeof(*a));
  char sha[65];
  if (a == NULL)
    return -ENOMEM;
  int rc = px_trust_store_load(ca_file, &a->trust, a->trust_desc, sizeof(a->trust_desc), sha,
                               err, errlen);
  if (rc != 0) {
    free(a);
    return rc;
  }
  bool requeued = false;
  int64_t quarantined = 0;
  if (worker_exe != NULL && px_aworker_new(worker_exe, ca_file, 0, &a->worker) != 0)
    rc = -ENOMEM;
  if (rc == 0 && (rc = px_store_analysis_version(store, PX_SUMMARY_VERSION, &requeued)) != 0)
    snprintf(err, errlen, "cannot record the analysis version in the database");
  if (rc == 0 && px_store_quarantined(store, 0, NULL, NULL, &quarantined) == 0)
    px_metrics_quarantined_known(quarantined);
  /* Every worker completes chains with the intermediates seen so far. */
  if (rc == 0 && a->worker != NULL && (rc = px_store_pool(store, px__pool_load, a->worker)) != 0)
    snprintf(err, errlen, "cannot read the intermediate pool from the database");
  if (rc != 0) {
    px_aworker_free(a->worker);
    X509_STORE_free(a->trust);
    free(a);
    return rc;
  }
  if (requeued)
    fprintf(stderr, "parallax-collector: analysis: summaries are older than version %d: every "
                    "measurement is analysed again in the background\n",
            PX_SUMMARY_VERSION);
  a->judged = px_x509_judge_cache_new(4096);
  a->store = store;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  if (a->judged == NULL || pthread_create(&a->thread, NULL, px__main, a) != 0) {
    px_aworker_free(a->worker);
    X509_STORE_free(a->trust);
    px_x509_judge_cache_free(a->judged);
    free(a);
    snprintf(err, errlen, "cannot start the analysis thread");
    return -ENOMEM;
  }
  px_store_set_commit_hook(store, px__poke, a);
  *out = a;
  return 0;
}

void px_analysis_stop(px_analysis_t *a) {
  if (a == NULL)
    return;
  px_store_set_commit_hook(a->store, NULL, NULL);
  pthread_mutex_lock(&a->mu);
  a->stopping = true;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  pthread_join(a->thread, NULL);
  px_aworker_free(a->worker);
  X509_STORE_free(a->trust);
  px_x509_judge_cache_free(a->judged);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  free(a);
}

const char *px_analysis_trust(const px_analysis_t *a) {
  return a->trust_desc;
}

/* The store's mark covers every commit made before the call, on any node
 * sharing the database; waiting for it covers what this request's client
 * (or anyone) was acknowledged before asking. */
int px_analysis_catch_up(px_analysis_t *a, unsigned timeout_ms, int64_t *mark_out) {
  int64_t mark;
  bool reached = false;
  if (px_store_analysis_mark(a->store, &mark) != 0)
    return -EIO;
  if (mark_out != NULL)
    *mark_out = mark;
  for (unsigned waited = 0;; waited += 10) {
    if (px_store_analysis_reached(a->store, mark, &reached) != 0)
      return -EIO;
    if (reached)
      return 0;
    if (waited >= timeout_ms)
      return -ETIMEDOUT;
    px__poke(a);
    px_sleep_ms(10);
  }
}
