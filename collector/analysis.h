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

/* The version of the summaries px_summarize makes: raised whenever they
 * change, so that a collector upgraded over an existing database
 * summarises everything again (px_store_analysis_version). */
#define PX_SUMMARY_VERSION 2

/* ca_file NULL: the system trust store. worker_exe: the binary to run
 * `analysis-worker` from (collector/analysis_worker.h; "/proc/self/exe"
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

/* The summary of one measurement (a JSON object, caller owns), judged at
 * time at: {"v", "dns": {"answered", "addresses", "failures"}, "tls": [per
 * address:port {"ip", "port", "resolved", "control", "connect_failure",
 * "completed", "failure", "leaf_sha256", "leaf_spki_sha256", "subject",
 * "issuer", "not_before", "not_after", "self_signed" (all derived from the
 * DER by the collector), "claims_mismatch", "agent_verified", "verified",
 * "hostname_match", "errors", "judged_failure"}], "claims_mismatch":
 * [paths of agent certificate fields that differ from the DER's]}. Linear
 * in the size of the measurement. NULL when content is not a
 * measurement. The analysis worker's work; exposed for tests. */
json_t *px_summarize(const char *content, size_t n, time_t at, X509_STORE *trust,
                     px_x509_judge_cache_t *cache);

#endif
