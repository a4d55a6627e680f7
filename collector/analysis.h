#ifndef PX_ANALYSIS_H
#define PX_ANALYSIS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "collector/store.h"
#include "common/x509_judge.h"

/* The collector's own reading of each stored measurement: which addresses
 * its DNS answered, which handshakes completed, and whether each presented
 * chain verifies against the COLLECTOR's reference trust store at the
 * measurement's time, for the name the agent asked (never trusting the
 * agent's `verification`: an agent's store may hold a state-installed
 * root). A background thread summarises measurements as they are stored,
 * so ingest never waits for chain validation. */
typedef struct px_analysis px_analysis_t;

/* ca_file NULL: the system trust store. */
int px_analysis_start(px_store_t *store, const char *ca_file, px_analysis_t **out, char *err,
                      size_t errlen);
void px_analysis_stop(px_analysis_t *a);
const char *px_analysis_trust(const px_analysis_t *a); /* "system:…" or "file:…" */

/* Waits, at most timeout_ms, until every measurement stored before the
 * call is summarised. 0, or -ETIMEDOUT. */
int px_analysis_catch_up(px_analysis_t *a, unsigned timeout_ms);

/* The summary of one measurement (a JSON object, caller owns), judged at
 * time at. NULL when content is not a measurement. Exposed for tests. */
json_t *px_summarize(const char *content, size_t n, time_t at, X509_STORE *trust,
                     px_x509_judge_cache_t *cache);

#endif
