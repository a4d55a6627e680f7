#ifndef PX_ENGINE_H
#define PX_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/measurement.h"
#include "common/target.h"
#include "probes/tls_context.h"

/* One run of measurements on one loop: for every target, A and AAAA
 * through every resolver, then a TLS flow to every address worth probing,
 * then one measurement handed to emit(). */
/* What a run did, for the run record and `parallax status`. */
typedef struct px_engine_stats {
  uint64_t bytes;          /* DNS and TLS payload sent and received */
  size_t started, done;    /* targets */
  const char *stopped_by;  /* NULL (ran out of targets), "max_runtime",
                            * "max_bytes" or "signal" */
} px_engine_stats_t;

/* What one measurement may hold, so it stays within the bounds of
 * schemas/measurement.schema.json that the collector enforces: resolvers
 * (each gives an A and an AAAA entry, and TCP retries), addresses named
 * with --address, TLS flows per target (answers, --address and control
 * addresses together; the rest are listed as skipped), skipped entries. */
#define PX_RESOLVERS_MAX 64
#define PX_ADDRESSES_MAX 64
#define PX_JOB_FLOWS_MAX 128
#define PX_JOB_SKIPPED_MAX 256
#define PX_JOB_LATE_MAX 256

typedef struct px_engine_config {
  px_tls_context_t *tls;
  const struct sockaddr_storage *resolvers; /* with ports */
  size_t nresolvers;
  const struct sockaddr_storage *addresses; /* --address: always probed */
  size_t naddresses;
  unsigned timeout_ms;
  /* After the first reply to each UDP query, listen this long for more
   * (test_keys.dns_late_replies, probes/dns_late.h); 0: not at all. The
   * window overlaps the TLS phase: a target's slot is freed when its
   * flows end, its measurement is emitted when its windows close. */
  unsigned dns_late_window_ms;
  unsigned parallel;       /* operations in flight, all targets together */
  bool allow_nonpublic;    /* connect to non-public addresses from DNS */
  bool no_tls;             /* DNS only (OONI dnscheck's shape): no flows */
  const px_run_info_t *run;

  /* The volunteer's budget, 0 for none. Once spent, no new target starts;
   * those in flight finish (their own timeouts bound how long) and are
   * emitted, so a budget never produces half a measurement. */
  uint64_t max_runtime_ms; /* from the start of px_engine_run */
  uint64_t max_bytes;
  px_engine_stats_t *stats; /* optional, filled when the run returns */

  /* Receives each finished measurement (the engine keeps its reference).
   * A non-zero return stops the run: no new targets start, the ones in
   * flight finish and are dropped, px_engine_run returns that value. */
  int (*emit)(void *data, json_t *measurement);
  void *emit_data;
  /* Optional; after each finished target. */
  void (*progress)(void *data, size_t done, size_t total, unsigned inflight);
  void *progress_data;
} px_engine_config_t;

/* Runs every target to completion on loop (which must have no other
 * handles keeping it alive), then closes everything it opened.
 * Returns 0 (also when the budget ran out), an emit error, -EINTR after
 * SIGINT/SIGTERM (targets already measured were emitted), or another
 * negative error. */
int px_engine_run(uv_loop_t *loop, const px_engine_config_t *cfg,
                  const px_target_t *targets, size_t ntargets);

#endif
