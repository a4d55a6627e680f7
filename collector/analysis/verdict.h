#ifndef PX_VERDICT_H
#define PX_VERDICT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The cross-vantage verdicts of DESIGN.md ("Verdicts"), from summaries
 * (collector/analysis/analysis.c). Rules and their sources: docs/analysis.md. */

/* What one agent key saw of the domain: one summary, and the measurements
 * that had exactly that summary (a stable vantage measuring every hour
 * gives the same one again and again: it is judged once). With ntimes 0,
 * a single measurement (uid, measurement_start_time). Otherwise times and
 * uids hold ntimes measurements (any order); uid and
 * measurement_start_time are the newest of them. */
typedef struct px_vantage {
  const char *key_id, *probe_cc, *probe_asn, *uid;
  time_t measurement_start_time;
  json_t *summary; /* borrowed */
  const time_t *times;
  const char *const *uids;
  size_t ntimes;
} px_vantage_t;

/* Other vantage groups needed to judge one. */
#define PX_QUORUM 2

/* How a key's measurements in the window make its verdict. */
/* The default window of a comparison (and of check-in's control
 * addresses): the last 24 hours. */
#define PX_COMPARE_WINDOW_S ((time_t)24 * 3600)

typedef enum {
  /* Every measurement counts (docs/analysis.md, "Over the window"): the
   * most severe class its measurements support, positive evidence
   * (interception, divergence, DNS) from one measurement, blocking from
   * at least two and at least half of them. */
  PX_COMPARE_WINDOW,
  /* Only each key's newest measurement, judged alone ("is it still
   * happening right now?"). */
  PX_COMPARE_LATEST
} px_compare_mode_t;

/* The comparison document: {"domain", "quorum", "vantages": [per group
 * {"probe_cc", "probe_asn", "verdict", "confidence", "vantage_count",
 * "observed": {"measurements", "anomalous", "first_seen", "last_seen",
 * "ongoing", "clean_since"}, "addresses": [...] (at most 64,
 * "addresses_left_out" counts the rest), "evidence": [...],
 * "measurements": [...] (the newest 256, "measurements_left_out")}]},
 * the most severe verdicts first. Each summary is judged once, whatever
 * number of measurements share it: linear in the window's distinct
 * summaries (hash indexes) plus sorting what is shown; summaries of any
 * shape are read safely. Caller owns it. */
json_t *px_compare_mode(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum,
                        px_compare_mode_t mode);
/* px_compare_mode(…, PX_COMPARE_WINDOW). */
json_t *px_compare(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum);

/* Severity order of verdicts: higher is more severe. */
int px_verdict_rank(const char *verdict);

/* At most this many control addresses per target (the measurement
 * schema's bound on test_keys.control_addresses). */
#define PX_CONTROL_ADDRESSES_MAX 64

/* Addresses (ip strings) of domain that at least min_groups vantage groups
 * saw verify, from summaries (each vantage's latest); public unicast only
 * unless allow_nonpublic. The best attested first (most groups, then by
 * address), at most PX_CONTROL_ADDRESSES_MAX. Caller owns the array. */
json_t *px_control_addresses(const px_vantage_t *v, size_t n, unsigned min_groups,
                             bool allow_nonpublic);

#endif
