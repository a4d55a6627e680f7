#ifndef PX_METRICS_H
#define PX_METRICS_H

#include <stdbool.h>

/* Process-wide counters for /metrics (Prometheus text format 0.0.4).
 * Lock-free: every function may be called from any request thread. */
void px_metrics_accepted(void);
void px_metrics_duplicate(void);
/* reason: one of the error codes of the API (bad_signature, too_large…). */
void px_metrics_rejected(const char *reason);
/* Seconds from the first byte of a submission to its answer. */
void px_metrics_submit_latency(double seconds);
void px_metrics_request(void);
/* Why a connection was refused or cut, or a request refused with 429:
 * the reason label of parallax_collector_connections_cut_by_reason_total. */
typedef enum {
  PX_CUT_MAX_CONNECTIONS,   /* --max-connections reached (ours or MHD's) */
  PX_CUT_PER_IP_LIMIT,      /* a direct client over its --per-ip-limit */
  PX_CUT_REQUEST_DEADLINE,  /* a request not in within --timeout */
  PX_CUT_TOO_MANY_REQUESTS, /* 429: a proxied client over its allowance */
  PX_CUT__COUNT
} px_cut_reason_t;
void px_metrics_connection_refused(px_cut_reason_t reason);
/* A new measurement stored with its geo_mismatch flag set. */
void px_metrics_geo_mismatch(void);
/* A key rotation statement accepted (repeats included). */
void px_metrics_key_rotation(void);

/* n measurements quarantined by the analysis; _known sets how many the
 * database holds in all (at start-up). */
void px_metrics_quarantined(unsigned n);
void px_metrics_quarantined_known(long long n);

/* A comparison answered, from the cache or computed. */
void px_metrics_compare(bool cached);

/* The exposition text (caller frees). */
char *px_metrics_render(void);

#endif
