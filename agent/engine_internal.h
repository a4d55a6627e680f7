#ifndef PX_ENGINE_INTERNAL_H
#define PX_ENGINE_INTERNAL_H

#include "agent/engine.h"
#include "agent/sched.h"
#include "probes/dns.h"

typedef struct px__engine {
  uv_loop_t *loop;
  const px_engine_config_t *cfg;
  px_dns_resolver_t **resolvers;
  size_t nresolvers;
  px_sched_t sched;
  const px_target_t *targets;
  size_t ntargets, next_target, done;
  unsigned active_jobs;
  int error;
  bool interrupted;   /* by a signal */
  const char *spent;  /* the budget that ran out, or NULL */
  uint64_t bytes;
  bool admitting;
  bool torn_down;
  uv_signal_t sigint, sigterm;
  uv_timer_t deadline;
} px__engine_t;

/* Starts the measurement of one target; calls px__engine_job_done when
 * its measurement has been emitted (or dropped). */
int px__job_start(px__engine_t *eng, const px_target_t *target);
void px__engine_job_done(px__engine_t *eng);
/* Counts traffic against the byte budget. */
void px__engine_count_bytes(px__engine_t *eng, uint64_t n);

#endif
