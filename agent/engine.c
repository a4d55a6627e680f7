#include "agent/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine_internal.h"
#include "common/log.h"

static void px__teardown(px__engine_t *eng) {
  if (eng->torn_down)
    return;
  eng->torn_down = true;
  for (size_t i = 0; i < eng->nresolvers; i++) {
    px_dns_resolver_close(eng->resolvers[i]);
    px_dns_late_close(eng->late[i]);
  }
  uv_close((uv_handle_t *)&eng->sigint, NULL);
  uv_close((uv_handle_t *)&eng->sigterm, NULL);
  uv_close((uv_handle_t *)&eng->deadline, NULL);
}

/* No new targets: a signal, an error, or a spent budget. */
static bool px__stopping(const px__engine_t *eng) {
  return eng->interrupted || eng->error != 0 || eng->spent != NULL;
}

static bool px__finished(const px__engine_t *eng) {
  bool no_more = eng->next_target >= eng->ntargets || px__stopping(eng);
  return no_more && eng->active_jobs == 0 && eng->lingering == 0;
}

/* Keeps `parallel` targets live: each holds at least one operation, so
 * more would only queue memory. */
static void px__admit(px__engine_t *eng) {
  if (eng->admitting)
    return;
  eng->admitting = true;
  while (!px__stopping(eng) && eng->next_target < eng->ntargets &&
         eng->active_jobs < eng->cfg->parallel) {
    const px_target_t *t = &eng->targets[eng->next_target++];
    eng->active_jobs++;
    int rc = px__job_start(eng, t);
    if (rc != 0) {
      eng->active_jobs--;
      eng->error = rc;
    }
  }
  eng->admitting = false;
  if (px__finished(eng))
    px__teardown(eng);
}

void px__engine_job_linger(px__engine_t *eng) {
  eng->active_jobs--;
  eng->lingering++;
  px__admit(eng);
}

void px__engine_job_done(px__engine_t *eng, bool lingered) {
  if (lingered)
    eng->lingering--;
  else
    eng->active_jobs--;
  eng->done++;
  if (eng->cfg->progress != NULL)
    eng->cfg->progress(eng->cfg->progress_data, eng->done, eng->ntargets,
                       eng->sched.inflight);
  px__admit(eng);
}

static void px__budget_spent(px__engine_t *eng, const char *which) {
  if (eng->spent != NULL || eng->interrupted)
    return;
  eng->spent = which;
  if (eng->next_target < eng->ntargets)
    px_log(PX_LOG_NOTICE, "%s reached: %zu of %zu target(s) not started, finishing %u in flight",
           which, eng->ntargets - eng->next_target, eng->ntargets, eng->active_jobs);
  px__admit(eng);
}

void px__engine_count_bytes(px__engine_t *eng, uint64_t n) {
  eng->bytes += n;
  if (eng->cfg->max_bytes > 0 && eng->bytes >= eng->cfg->max_bytes)
    px__budget_spent(eng, "max_bytes");
}

static void px__deadline_cb(uv_timer_t *t) {
  px__budget_spent(t->data, "max_runtime");
}

static void px__signal_cb(uv_signal_t *h, int signum) {
  px__engine_t *eng = h->data;
  if (eng->interrupted) {
    fprintf(stderr, "parallax: interrupted again, exiting now\n");
    exit(128 + signum);
  }
  eng->interrupted = true;
  fprintf(stderr, "\nparallax: interrupted, finishing %u measurement(s) in flight "
                  "(interrupt again to quit at once)\n", eng->active_jobs);
  px__admit(eng);
}

int px_engine_run(uv_loop_t *loop, const px_engine_config_t *cfg,
                  const px_target_t *targets, size_t ntargets) {
  px__engine_t eng;
  int rc = 0;

  memset(&eng, 0, sizeof(eng));
  eng.loop = loop;
  eng.cfg = cfg;
  eng.targets = targets;
  eng.ntargets = ntargets;
  px_sched_init(&eng.sched, cfg->parallel);

  eng.resolvers = calloc(cfg->nresolvers + 1, sizeof(px_dns_resolver_t *));
  eng.late = calloc(cfg->nresolvers + 1, sizeof(px_dns_late_t *));
  if (eng.resolvers == NULL || eng.late == NULL) {
    free(eng.resolvers);
    free(eng.late);
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->nresolvers; i++) {
    const struct sockaddr *server = (const struct sockaddr *)&cfg->resolvers[i];
    rc = px_dns_resolver_new(loop, server, cfg->timeout_ms, &eng.resolvers[i]);
    if (rc != 0)
      break;
    /* Without a socket for late replies a run still measures: the
     * measurement then simply holds none. */
    if (cfg->dns_late_window_ms > 0 && px_dns_late_new(loop, server, &eng.late[i]) != 0)
      eng.late[i] = NULL;
    eng.nresolvers++;
  }

  uv_signal_init(loop, &eng.sigint);
  uv_signal_init(loop, &eng.sigterm);
  uv_timer_init(loop, &eng.deadline);
  eng.sigint.data = eng.sigterm.data = eng.deadline.data = &eng;
  if (rc == 0) {
    uv_signal_start(&eng.sigint, px__signal_cb, SIGINT);
    uv_signal_start(&eng.sigterm, px__signal_cb, SIGTERM);
    /* Signals must not keep a finished run alive. */
    uv_unref((uv_handle_t *)&eng.sigint);
    uv_unref((uv_handle_t *)&eng.sigterm);
    if (cfg->max_runtime_ms > 0) {
      uv_timer_start(&eng.deadline, px__deadline_cb, cfg->max_runtime_ms, 0);
      uv_unref((uv_handle_t *)&eng.deadline);
    }
    px__admit(&eng);
  } else {
    px__teardown(&eng);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  if (!eng.torn_down) {
    /* Only reachable if something stopped the loop early. */
    px__teardown(&eng);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  free(eng.resolvers);
  free(eng.late);
  if (cfg->stats != NULL) {
    cfg->stats->bytes = eng.bytes;
    cfg->stats->started = eng.next_target;
    cfg->stats->done = eng.done;
    cfg->stats->stopped_by = eng.interrupted ? "signal" : eng.spent;
  }
  if (rc != 0)
    return rc;
  if (eng.error != 0)
    return eng.error;
  return eng.interrupted ? -EINTR : 0;
}
