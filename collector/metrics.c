#include "collector/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const px__reasons[] = {"malformed_request", "bad_signature", "too_large",
                                          "invalid_measurement", "key_rotated", "storage_error",
                                          "other"};
#define PX__NREASONS (sizeof(px__reasons) / sizeof(px__reasons[0]))

static const double px__buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,   0.25,   0.5,   1,    2.5,   10};
#define PX__NBUCKETS (sizeof(px__buckets) / sizeof(px__buckets[0]))

static const char *const px__cut_reasons[PX_CUT__COUNT] = {
    "max_connections", "per_ip_limit", "request_deadline", "too_many_requests"};

static atomic_ullong px__accepted, px__duplicates, px__requests;
static atomic_ullong px__cut[PX_CUT__COUNT];
static atomic_ullong px__geo_mismatch, px__rotations;
static atomic_ullong px__rejected[PX__NREASONS];
static atomic_ullong px__hist[PX__NBUCKETS + 1];
static atomic_ullong px__latency_us_sum;
static atomic_llong px__quarantined_known;
static atomic_ullong px__compare_computed, px__compare_cached;

void px_metrics_compare(bool cached) {
  atomic_fetch_add(cached ? &px__compare_cached : &px__compare_computed, 1);
}
static atomic_ullong px__quarantined_total;

void px_metrics_quarantined(unsigned n) {
  atomic_fetch_add(&px__quarantined_total, n);
  atomic_fetch_add(&px__quarantined_known, (long long)n);
}

void px_metrics_quarantined_known(long long n) {
  atomic_store(&px__quarantined_known, n);
}

void px_metrics_accepted(void) { atomic_fetch_add(&px__accepted, 1); }
void px_metrics_duplicate(void) { atomic_fetch_add(&px__duplicates, 1); }
void px_metrics_request(void) { atomic_fetch_add(&px__requests, 1); }
void px_metrics_connection_refused(px_cut_reason_t reason) {
  atomic_fetch_add(&px__cut[reason < PX_CUT__COUNT ? reason : PX_CUT_MAX_CONNECTIONS], 1);
}
void px_metrics_geo_mismatch(void) { atomic_fetch_add(&px__geo_mismatch, 1); }
void px_metrics_key_rotation(void) { atomic_fetch_add(&px__rotations, 1); }

void px_metrics_rejected(const char *reason) {
  size_t i = 0;
  while (i + 1 < PX__NREASONS && strcmp(px__reasons[i], reason) != 0)
    i++;
  atomic_fetch_add(&px__rejected[i], 1);
}

void px_metrics_submit_latency(double seconds) {
  size_t i = 0;
  while (i < PX__NBUCKETS && seconds > px__buckets[i])
    i++;
  atomic_fetch_add(&px__hist[i], 1);
  atomic_fetch_add(&px__latency_us_sum, (unsigned long long)(seconds * 1e6));
}

char *px_metrics_render(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL)
    return NULL;
  fprintf(f, "# HELP parallax_collector_requests_total HTTP requests received.\n"
             "# TYPE parallax_collector_requests_total counter\n"
             "parallax_collector_requests_total %llu\n",
          atomic_load(&px__requests));
  /* The total is the sum of the reasons, read once each: the two
   * families agree within one scrape. */
  unsigned long long cut[PX_CUT__COUNT], cut_total = 0;
  for (size_t i = 0; i < PX_CUT__COUNT; i++)
    cut_total += cut[i] = atomic_load(&px__cut[i]);
  fprintf(f, "# HELP parallax_collector_connections_cut_total Connections refused or cut, and requests refused with 429: at --max-connections, over a client's allowance, or too slow to send a request.\n"
             "# TYPE parallax_collector_connections_cut_total counter\n"
             "parallax_collector_connections_cut_total %llu\n",
          cut_total);
  fprintf(f, "# HELP parallax_collector_connections_cut_by_reason_total parallax_collector_connections_cut_total by reason.\n"
             "# TYPE parallax_collector_connections_cut_by_reason_total counter\n");
  for (size_t i = 0; i < PX_CUT__COUNT; i++)
    fprintf(f, "parallax_collector_connections_cut_by_reason_total{reason=\"%s\"} %llu\n",
            px__cut_reasons[i], cut[i]);
  fprintf(f, "# HELP parallax_collector_measurements_accepted_total Measurements stored.\n"
             "# TYPE parallax_collector_measurements_accepted_total counter\n"
             "parallax_collector_measurements_accepted_total %llu\n",
          atomic_load(&px__accepted));
  fprintf(f, "# HELP parallax_collector_measurements_duplicate_total Submissions of content already stored.\n"
             "# TYPE parallax_collector_measurements_duplicate_total counter\n"
             "parallax_collector_measurements_duplicate_total %llu\n",
          atomic_load(&px__duplicates));
  fprintf(f, "# HELP parallax_collector_measurements_geo_mismatch_total Measurements stored with geo_mismatch: uploaded from another country than their probe_cc.\n"
             "# TYPE parallax_collector_measurements_geo_mismatch_total counter\n"
             "parallax_collector_measurements_geo_mismatch_total %llu\n",
          atomic_load(&px__geo_mismatch));
  fprintf(f, "# HELP parallax_collector_key_rotations_total Key rotation statements accepted.\n"
             "# TYPE parallax_collector_key_rotations_total counter\n"
             "parallax_collector_key_rotations_total %llu\n",
          atomic_load(&px__rotations));
  fprintf(f, "# HELP parallax_collector_measurements_rejected_total Submissions refused, by reason.\n"
             "# TYPE parallax_collector_measurements_rejected_total counter\n");
  for (size_t i = 0; i < PX__NREASONS; i++)
    fprintf(f, "parallax_collector_measurements_rejected_total{reason=\"%s\"} %llu\n",
            px__reasons[i], atomic_load(&px__rejected[i]));
  fprintf(f, "# HELP parallax_collector_submit_duration_seconds Time to answer a submission.\n"
             "# TYPE parallax_collector_submit_duration_seconds histogram\n");
  unsigned long long cum = 0;
  for (size_t i = 0; i < PX__NBUCKETS; i++) {
    cum += atomic_load(&px__hist[i]);
    fprintf(f, "parallax_collector_submit_duration_seconds_bucket{le=\"%g\"} %llu\n",
            px__buckets[i], cum);
  }
  cum += atomic_load(&px__hist[PX__NBUCKETS]);
  fprintf(f, "parallax_collector_submit_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
  fprintf(f, "parallax_collector_submit_duration_seconds_sum %.6f\n",
          (double)atomic_load(&px__latency_us_sum) / 1e6);
  fprintf(f, "parallax_collector_submit_duration_seconds_count %llu\n", cum);
  fprintf(f, "# HELP parallax_collector_analysis_quarantined_total Measurements this process quarantined: their analysis crashed, stalled or could not read them.\n"
             "# TYPE parallax_collector_analysis_quarantined_total counter\n"
             "parallax_collector_analysis_quarantined_total %llu\n",
          atomic_load(&px__quarantined_total));
  fprintf(f, "# HELP parallax_collector_analysis_quarantined Quarantined measurements in the database (GET /api/v1/quarantine lists them).\n"
             "# TYPE parallax_collector_analysis_quarantined gauge\n"
             "parallax_collector_analysis_quarantined %lld\n",
          atomic_load(&px__quarantined_known));
  fprintf(f, "# HELP parallax_collector_compare_total Comparisons answered: computed, or reused (the same query within 5 s, nothing stored since).\n"
             "# TYPE parallax_collector_compare_total counter\n"
             "parallax_collector_compare_total{source=\"computed\"} %llu\n"
             "parallax_collector_compare_total{source=\"cache\"} %llu\n",
          atomic_load(&px__compare_computed), atomic_load(&px__compare_cached));
  fclose(f);
  return buf;
}
