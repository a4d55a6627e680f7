#include "agent/cli/progress.h"

#include <stdio.h>
#include <uv.h>

void px_progress_init(px_progress_t *p, bool enabled) {
  p->enabled = enabled;
  p->shown = false;
  p->start_ns = p->last_ns = uv_hrtime();
}

void px_progress_update(void *data, size_t done, size_t total, unsigned inflight) {
  px_progress_t *p = data;
  if (!p->enabled)
    return;
  uint64_t now = uv_hrtime();
  if (now - p->start_ns < 1000000000ULL || (now - p->last_ns < 200000000ULL && done != total))
    return;
  p->last_ns = now;
  p->shown = true;
  fprintf(stderr, "\rparallax: %zu/%zu targets measured, %u operations in flight\033[K",
          done, total, inflight);
  fflush(stderr);
}

void px_progress_finish(px_progress_t *p) {
  if (p->shown)
    fputs("\r\033[K", stderr);
  p->shown = false;
}
