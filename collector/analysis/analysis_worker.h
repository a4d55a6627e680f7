#ifndef PX_ANALYSIS_WORKER_H
#define PX_ANALYSIS_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "collector/store/store.h"

/* The analysis of stored measurements runs in a child process of its own
 * (`parallax-collector analysis-worker`, re-executed from the collector's
 * own binary), the way OpenSSH keeps the code that parses what the
 * network sends apart from the process that holds what matters: DER,
 * chains and JSON written by anyone with a key go through OpenSSL,
 * Jansson and our readers there. If one measurement crashes the worker,
 * runs it out of memory or stalls it, the collector loses nothing but that
 * measurement's analysis: it kills the worker, quarantines the measurement
 * with the reason, and starts a new worker for the next one. */
typedef struct px_aworker px_aworker_t;

/* Longest one measurement may take in the worker before it counts as a
 * stall (default; the worker is killed). */
#define PX_AWORKER_TIMEOUT_MS 10000

/* exe: the collector binary (NULL: /proc/self/exe); ca_file: the trust
 * store (NULL: the system's). Nothing is started yet. 0 or -ENOMEM. */
int px_aworker_new(const char *exe, const char *ca_file, unsigned timeout_ms, px_aworker_t **out);
void px_aworker_free(px_aworker_t *w); /* kills the worker, if any */

/* Outcomes of px_aworker_summarize. */
enum {
  PX_AWORKER_OK = 0,     /* *summary holds the summary (malloc'ed JSON) */
  PX_AWORKER_UNREADABLE, /* the worker read no measurement in it: why says so */
  PX_AWORKER_FAILED      /* the worker died or stalled on it: why says how */
};

/* Summarises content (judged at time at) in the worker, starting one if
 * none runs. Returns a PX_AWORKER_* outcome, or a negative error when the
 * worker cannot be started at all or fails on a known-good measurement
 * too (then the fault is not this measurement's: nothing to quarantine). */
int px_aworker_summarize(px_aworker_t *w, const char *content, size_t n, time_t at,
                         char **summary, px_blobs_t *found, char *why, size_t whylen);
/* *found receives the DER of every intermediate the measurement's chains
 * added to the pool (the worker uses them from now on; the caller stores
 * them). */

/* An intermediate of the pool (the store's, at start-up): every worker
 * from now on completes chains with it. 0 or -ENOMEM. */
int px_aworker_pool_add(px_aworker_t *w, const uint8_t *der, size_t n);

/* The worker process's main (argv after "analysis-worker"): --ca-file
 * FILE. Reads requests on stdin, answers on stdout, until end of file. */
int px_aworker_main(int argc, char **argv);

#endif
