#ifndef PX_ANALYSIS_H
#define PX_ANALYSIS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "collector/store/store.h"
#include "collector/analysis/summary.h"
#include "common/x509_judge.h"

/* The collector's own reading of each stored measurement: which addresses
 * its DNS answered, which handshakes completed, and whether each presented
 * chain verifies against the COLLECTOR's reference trust store at the
 * measurement's time, for the name the agent asked (never trusting the
 * agent's `verification`: an agent's store may hold a state-installed
 * root). A background thread summarises measurements as they are stored,
 * so ingest never waits for chain validation. */
typedef struct px_analysis px_analysis_t;

/* ca_file NULL: the system trust store. worker_exe: the binary to run
 * `analysis-worker` from (collector/analysis/analysis_worker.h; "/proc/self/exe"
 * for the collector), NULL to summarise in this process. Records the
 * summary version in the store first. */
int px_analysis_start(px_store_t *store, const char *ca_file, const char *worker_exe,
                      px_analysis_t **out, char *err, size_t errlen);
void px_analysis_stop(px_analysis_t *a);
const char *px_analysis_trust(const px_analysis_t *a); /* "system:…" or "file:…" */

/* Waits, at most timeout_ms, until every measurement stored before the
 * call is summarised. 0, or -ETIMEDOUT. *mark (if not NULL) is the store's
 * mark it waited for: it only ever grows, and while it stays the same
 * nothing new was stored (what a cached comparison is checked by). */
int px_analysis_catch_up(px_analysis_t *a, unsigned timeout_ms, int64_t *mark);

#endif
