#ifndef PX_SUMMARY_H
#define PX_SUMMARY_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/x509_judge.h"

/* The collector's own reading of one stored measurement (the analysis
 * worker's work, collector/analysis/analysis_worker.c): which addresses its DNS
 * answered (and what arrived late for the same query), which handshakes
 * completed, and whether each presented chain verifies against the
 * COLLECTOR's trust store at the measurement's time, for the name the
 * agent asked, completing chains from the intermediate pool when the
 * peer left an intermediate out. Every certificate field comes from the
 * DER; the agent's copies are only compared with it. */

/* The version of the summaries px_summarize makes: raised whenever they
 * change, so that a collector upgraded over an existing database
 * summarises everything again (px_store_analysis_version). */
#define PX_SUMMARY_VERSION 4

/* Certificates the pool keeps at most (it grows only with CA certificates
 * that chain to the trust store, so only real intermediates get in). */
#define PX_POOL_MAX 10000

typedef struct px_summarize_ctx {
  X509_STORE *trust;
  px_x509_judge_cache_t *cache; /* may be NULL */
  STACK_OF(X509) *pool;         /* intermediates seen before; may be NULL */
  /* If not NULL: CA certificates of the chains read that chain to the
   * trust store and are not in the pool yet (is_pooled says which are),
   * pushed here with a reference each for the caller. */
  STACK_OF(X509) *found;
  bool (*is_pooled)(void *data, X509 *cert);
  void *data;
} px_summarize_ctx_t;

/* The summary (a JSON object, caller owns):
 * {"v", "dns": {"answered", "addresses", "failures", "late": [per query
 *  whose late replies brought other addresses {"query_type",
 *  "resolver_address", "first": [...], "late": [...], "delay"}]},
 *  "tls": [per address:port {"ip", "port", "resolved", "control",
 *  "connect_failure", "completed", "failure", "leaf_sha256",
 *  "leaf_spki_sha256", "issuer_spki_sha256", "subject", "issuer",
 *  "not_before", "not_after", "self_signed", "claims_mismatch",
 *  "agent_verified", "verified", "completed_from_pool", "hostname_match",
 *  "errors", "judged_failure"}],
 *  "claims_mismatch": [paths of agent certificate fields the DER
 *  contradicts], "awaiting_issuer": a chain failed for want of an issuer
 *  the pool may yet supply}.
 * Linear in the size of the measurement. NULL when content is not a
 * measurement. */
json_t *px_summarize_with(const char *content, size_t n, time_t at, const px_summarize_ctx_t *ctx);

/* Without a pool (tests and fuzzers). */
json_t *px_summarize(const char *content, size_t n, time_t at, X509_STORE *trust,
                     px_x509_judge_cache_t *cache);

/* Whether cert may join the pool: a CA certificate, not self-signed, that
 * chains to trust at time at (0: at any time) through untrusted (may be NULL). */
bool px_pool_admits(X509 *cert, X509_STORE *trust, STACK_OF(X509) *untrusted, time_t at);

#endif
