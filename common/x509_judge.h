#ifndef PX_X509_JUDGE_H
#define PX_X509_JUDGE_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <time.h>

#define PX_X509_MAX_ERRORS 32

typedef struct px_x509_error {
  int code;  /* X509_V_ERR_* */
  int depth; /* position in the chain OpenSSL built, 0 = leaf */
} px_x509_error_t;

/* The security judgement of one presented chain, made after the handshake
 * (the probe completes handshakes without verifying, so the certificates of
 * a failing peer are still recorded). */
typedef struct px_x509_verdict {
  bool judged;         /* false: no certificate was presented */
  bool hostname_match; /* X509_check_host on the leaf, independent of chain */
  int nerrors;
  px_x509_error_t errors[PX_X509_MAX_ERRORS]; /* every distinct error met */
  /* The chain errors stay the same for any judgement time in
   * [stable_from, stable_until): no notBefore/notAfter of a certificate
   * involved lies in between. */
  time_t stable_from, stable_until;
  /* The certificate that signed the leaf in the chain OpenSSL built (the
   * next one up, even when the chain fails further up): its SPKI's
   * SHA-256. Absent for a lone self-signed leaf. */
  bool has_issuer;
  uint8_t issuer_spki[32];
  /* The chain verified only with a certificate of the extra pool (not
   * presented by the peer): a server that omits its intermediate. */
  bool completed_from_pool;
} px_x509_verdict_t;

/* Verifies presented (leaf first, as the peer sent it; the rest are used as
 * untrusted intermediates) against store for TLS server use, at time at
 * (0 = now), recording every error OpenSSL meets instead of stopping at the
 * first. Returns 0, or -ENOMEM. */
int px_x509_judge(X509_STORE *store, STACK_OF(X509) *presented,
                  const char *hostname, time_t at, px_x509_verdict_t *out);
/* The same with pool (may be NULL): more untrusted intermediates, tried
 * after the presented ones, never trusted as roots (the collector's
 * intermediates seen in other chains, as browsers complete chains). */
int px_x509_judge_with(X509_STORE *store, STACK_OF(X509) *presented, STACK_OF(X509) *pool,
                       const char *hostname, time_t at, px_x509_verdict_t *out);

/* Remembers chain judgements (keyed by the SHA-256 of the presented DER,
 * for one trust store) so a chain seen again, on another address or for
 * another name, is not verified again. Bounded: a direct-mapped table. */
typedef struct px_x509_judge_cache px_x509_judge_cache_t;

px_x509_judge_cache_t *px_x509_judge_cache_new(unsigned slots);
void px_x509_judge_cache_free(px_x509_judge_cache_t *cache);

/* px_x509_judge through cache (which must always be used with the same
 * store). The host name is checked every time; only chain errors are
 * reused, and only within the interval in which they cannot change. */
int px_x509_judge_cached(px_x509_judge_cache_t *cache, X509_STORE *store,
                         STACK_OF(X509) *presented, const char *hostname,
                         time_t at, px_x509_verdict_t *out);
/* With a pool (px_x509_judge_with): the cache must be cleared whenever the
 * pool changes. */
int px_x509_judge_cached_with(px_x509_judge_cache_t *cache, X509_STORE *store,
                              STACK_OF(X509) *presented, STACK_OF(X509) *pool,
                              const char *hostname, time_t at, px_x509_verdict_t *out);
void px_x509_judge_cache_clear(px_x509_judge_cache_t *cache);

/* The trust store chains are judged against: ca_file, or (NULL) the
 * system's (OpenSSL's default file, which honours SSL_CERT_FILE). desc gets
 * "system:<file>" or "file:<path>", sha256 the hex digest of the file's
 * bytes (so a measurement can say exactly which roots judged it). Returns
 * 0 or -EINVAL with a one-line reason. */
int px_trust_store_load(const char *ca_file, X509_STORE **out, char *desc, size_t desclen,
                        char sha256[65], char *err, size_t errlen);

/* ok == the chain reaches a trusted root with no error AND the host name
 * matches. */
bool px_x509_verdict_ok(const px_x509_verdict_t *v);

/* The df-007 failure the verdict stands for, or NULL when ok. Chain errors
 * first (ssl_unknown_authority), then the rest (ssl_invalid_certificate),
 * then the host name (ssl_invalid_hostname). */
const char *px_x509_verdict_failure(const px_x509_verdict_t *v);

/* {"ok":…, "errors":[{"code","name","message","depth"}], "hostname_match":…} */
json_t *px_x509_verdict_json(const px_x509_verdict_t *v);

/* "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT" for 18; buf is used for codes
 * this build does not know. */
const char *px_x509_error_name(int code, char *buf, unsigned buflen);

#endif
