#include "agent/cli/progress.h"

#include <stdio.h>
#include <uv.h>

void px_progress_init(px_progress_t *p, bool enabled) {
  p->enabled = enabled;
  p->shown = false;
  p->start_ns = p->last_ns = uv_hrtime();
}

/* "1m05s", "42s", "2h03m". */
static void px__duration(double s, char *out, size_t n) {
  unsigned long t = s < 0 ? 0 : (unsigned long)(s + 0.5);
  if (t >= 3600)
    snprintf(out, n, "%luh%02lum", t / 3600, t / 60 % 60);
  else if (t >= 60)
    snprintf(out, n, "%lum%02lus", t / 60, t % 60);
  else
    snprintf(out, n, "%lus", t);
}

void px_progress_format(size_t done, size_t total, unsigned inflight, double elapsed_s,
                        char *out, size_t n) {
  char elapsed[32], eta[48] = "";
  px__duration(elapsed_s, elapsed, sizeof(elapsed));
  double rate = elapsed_s > 0 ? (double)done / elapsed_s : 0;
  if (done > 0 && done < total && rate > 0) {
    char left[32];
    px__duration((double)(total - done) / rate, left, sizeof(left));
    snprintf(eta, sizeof(eta), ", ETA %s", left);
  }
  unsigned pct = total > 0 ? (unsigned)(done * 100 / total) : 100;
  snprintf(out, n, "%zu/%zu targets (%u%%), %.1f/s, %s elapsed%s, %u operations in flight",
           done, total, pct, rate, elapsed, eta, inflight);
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
  char line[256];
  px_progress_format(done, total, inflight, (double)(now - p->start_ns) / 1e9, line,
                     sizeof(line));
  fprintf(stderr, "\rparallax: %s\033[K", line);
  fflush(stderr);
}

void px_progress_finish(px_progress_t *p) {
  if (p->shown)
    fputs("\r\033[K", stderr);
  p->shown = false;
}
