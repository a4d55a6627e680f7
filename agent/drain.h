#ifndef PX_DRAIN_H
#define PX_DRAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/spool.h"
#include "collector-client/upload.h"

/* The agent's upload policy over its spool: which measurement goes when,
 * how often a failing one is tried, when to give up and for how long
 * (the backoff persisted in spool/upload-state.json). The client library
 * (collector-client/) only sends one measurement and says what came of
 * it; this file decides what that means for the spool. */
typedef struct px_drain_report {
  size_t accepted, rejected, pending;
  bool deferred;         /* skipped: backoff after earlier failures */
  int state_error;       /* 0, or why spool/upload-state.json was not saved */
  char last_error[512];
} px_drain_report_t;

/* Sends every pending measurement, oldest first. A measurement that meets
 * a retryable error is tried again with jittered exponential backoff
 * (a few times, seconds apart); if it still fails, draining stops (the
 * collector is down: no point hammering it with the rest), the failure is
 * recorded and the next automatic attempt is pushed back exponentially
 * (1 min doubling to 6 h, jittered). When respect_backoff is set (timer
 * runs) a drain before that time does nothing. Returns 0 when the spool
 * could be read (the outcome, and a failure to save the upload state, are
 * in *rep), else a negative errno. */
int px_drain(px_uploader_t *u, px_spool_t *sp, bool respect_backoff, px_drain_report_t *rep);

#endif
