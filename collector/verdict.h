#ifndef PX_VERDICT_H
#define PX_VERDICT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The cross-vantage verdicts of DESIGN.md ("Verdicts"), from summaries
 * (collector/analysis.c). Rules and their sources: docs/analysis.md. */

/* One vantage: an agent key's latest measurement of the domain. */
typedef struct px_vantage {
  const char *key_id, *probe_cc, *probe_asn, *uid;
  time_t measurement_start_time;
  json_t *summary; /* borrowed */
} px_vantage_t;

/* Other vantage groups needed to judge one. */
#define PX_QUORUM 2

/* The comparison document: {"domain", "quorum", "vantages": [per group
 * {"probe_cc", "probe_asn", "verdict", "confidence", "vantage_count",
 * "addresses": [...] (at most 64, "addresses_left_out" counts the rest),
 * "evidence": [...], "measurements": [...]}]}, the most severe verdicts
 * first. Linear in the window's entries (hash indexes) plus sorting what
 * is shown; summaries of any shape are read safely. Caller owns it. */
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
