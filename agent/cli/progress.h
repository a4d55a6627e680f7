#ifndef PX_PROGRESS_H
#define PX_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A one-line progress report on stderr, redrawn in place, only when stderr
 * is a terminal and only once a run has lasted a second: short runs and
 * logs stay clean. */
typedef struct px_progress {
  bool enabled;
  bool shown;
  uint64_t start_ns, last_ns;
} px_progress_t;

void px_progress_init(px_progress_t *p, bool enabled);
/* Signature of px_engine_config_t.progress; data is the px_progress_t. */
void px_progress_update(void *data, size_t done, size_t total, unsigned inflight);
/* The line's text: done/total with the percentage, the rate, elapsed
 * time and an estimate of what is left, and operations in flight. */
void px_progress_format(size_t done, size_t total, unsigned inflight, double elapsed_s,
                        char *out, size_t n);
/* Erases the line if one was drawn. */
void px_progress_finish(px_progress_t *p);

#endif
