#include "agent/drain.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/timeutil.h"

#define PX__TRIES 3
#define PX__SENT_KEEP 1000

/* base * 2^k seconds, capped, times a random factor in [0.5, 1.5). */
static double px__backoff(double base, unsigned k, double cap) {
  double d = base;
  for (unsigned i = 0; i < k && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  unsigned char r = 128;
  RAND_bytes(&r, 1);
  return d * (0.5 + (double)r / 256.0);
}

int px_drain(px_uploader_t *u, px_spool_t *sp, bool respect_backoff, px_drain_report_t *rep) {
  px_upload_state_t st;
  px_spool_list_t l;
  memset(rep, 0, sizeof(*rep));
  px_spool_state_load(sp, &st);
  int rc = px_spool_pending(sp, &l);
  if (rc != 0)
    return rc;
  rep->pending = l.n;
  if (respect_backoff && l.n > 0 && px_time_now() < st.next_attempt) {
    rep->deferred = true;
    snprintf(rep->last_error, sizeof(rep->last_error), "%s", st.last_error);
    px_spool_list_free(&l);
    return 0;
  }
  bool gave_up = false;
  for (size_t i = 0; i < l.n && !gave_up; i++) {
    char *content = NULL, *sig = NULL;
    size_t n;
    if (px_spool_read(sp, l.names[i], &content, &n, &sig) != 0)
      continue; /* moved meanwhile by a concurrent upload */
    px_upload_outcome_t o;
    for (unsigned attempt = 0;; attempt++) {
      px_upload_one(u, content, n, sig, &o);
      if (o.result != PX_UPLOAD_RETRY || attempt + 1 >= PX__TRIES)
        break;
      px_sleep_ms((unsigned)(px__backoff(0.5, attempt, 4.0) * 1e3));
    }
    free(content);
    free(sig);
    if (o.result == PX_UPLOAD_ACCEPTED) {
      int mrc = px_spool_mark_sent_logged(sp, l.names[i], o.uid, o.leaf_index);
      if (mrc == 0) {
        rep->accepted++;
        rep->pending--;
      } else {
        /* Stored by the collector, but not marked here (a full disk): it
         * stays pending and is sent again; the collector answers that
         * with the same uid and stores nothing twice. */
        snprintf(rep->last_error, sizeof(rep->last_error),
                 "accepted, but the receipt cannot be written (%s): it stays pending and is "
                 "sent again later", strerror(-mrc));
      }
      st.failures = 0;
      st.next_attempt = 0;
      st.last_success = px_time_now();
      /* What went wrong before is resolved: status must not keep showing
       * it (a later failure in this drain records its own). */
      st.last_error[0] = '\0';
      st.last_error_at = 0;
    } else if (o.result == PX_UPLOAD_REJECTED) {
      if (px_spool_mark_rejected(sp, l.names[i], o.http_status, o.error) == 0) {
        rep->rejected++;
        rep->pending--;
      }
      st.last_error_at = px_time_now();
      snprintf(st.last_error, sizeof(st.last_error), "rejected: %.490s", o.error);
      snprintf(rep->last_error, sizeof(rep->last_error), "%s", o.error);
    } else {
      gave_up = true;
      st.failures++;
      st.last_error_at = px_time_now();
      st.next_attempt = st.last_error_at + (time_t)px__backoff(60, st.failures - 1, 6 * 3600);
      snprintf(st.last_error, sizeof(st.last_error), "%s", o.error);
      snprintf(rep->last_error, sizeof(rep->last_error), "%s", o.error);
    }
  }
  px_spool_list_free(&l);
  px_spool_prune_sent(sp, PX__SENT_KEEP);
  /* The drain itself is done whether or not its bookkeeping can be
   * written (a full disk): the report says both. */
  rep->state_error = px_spool_state_save(sp, &st);
  return 0;
}
