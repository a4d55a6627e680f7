#ifndef PX_ENGINE_INTERNAL_H
#define PX_ENGINE_INTERNAL_H

#include "agent/engine.h"
#include "agent/sched.h"
#include "probes/dns.h"
#include "probes/dns_late.h"

typedef struct px__engine {
  uv_loop_t *loop;
  const px_engine_config_t *cfg;
  px_dns_resolver_t **resolvers;
  px_dns_late_t **late; /* per resolver; NULL entries when windows are off */
  size_t nresolvers;
  px_sched_t sched;
  const px_target_t *targets;
  size_t ntargets, next_target, done;
  unsigned active_jobs;
  unsigned lingering; /* measured, waiting for their late-reply windows */
  int error;
  bool interrupted;   /* by a signal */
  const char *spent;  /* the budget that ran out, or NULL */
  uint64_t bytes;
  bool admitting;
  bool torn_down;
  uv_signal_t sigint, sigterm;
  uv_timer_t deadline;
} px__engine_t;

/* Starts the measurement of one target; calls px__engine_job_linger when
 * its operations are over but late-reply windows are still open (the
 * target's slot goes to the next one), then px__engine_job_done when its
 * measurement has been emitted (or dropped), lingered saying whether it
 * lingered. */
int px__job_start(px__engine_t *eng, const px_target_t *target);
void px__engine_job_linger(px__engine_t *eng);
void px__engine_job_done(px__engine_t *eng, bool lingered);
/* Counts traffic against the byte budget. */
void px__engine_count_bytes(px__engine_t *eng, uint64_t n);

#endif
