#ifndef PX_X509_FIELDS_H
#define PX_X509_FIELDS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

/* One peer_certificates item: OONI's {"format":"base64","data":DER} plus our
 * additions (sha256, spki_sha256, subject, issuer, san, not_before,
 * not_after, self_signed). Every string from the certificate is made valid
 * UTF-8, so a hostile certificate cannot break the JSON. NULL only when out
 * of memory or when cert cannot be DER-encoded. */
json_t *px_x509_cert_json(X509 *cert);

/* The bounds of schemas/measurement.schema.json, applied here so that the
 * agent's record of a hostile certificate stays within them and the
 * collector, deriving the same fields from the DER with this same code,
 * gets exactly what an honest agent claimed: subject and issuer keep at
 * most PX_X509_NAME_MAX bytes, san the first PX_X509_SAN_MAX names of at
 * most PX_X509_SAN_LEN_MAX bytes each (cut on a character boundary). */
#define PX_X509_NAME_MAX 4096
#define PX_X509_SAN_MAX 2048
#define PX_X509_SAN_LEN_MAX 1024

/* The same item from raw DER (the collector and the fuzzers start here).
 * NULL when der is not a certificate OpenSSL can parse. */
json_t *px_x509_der_json(const uint8_t *der, size_t n);

/* The RFC 4514 string of a name; NULL when out of memory. Caller frees. */
char *px_x509_name_rfc4514(const X509_NAME *name);

/* SHA-256, fetched from the default provider once per process: the
 * implicit fetch behind EVP_sha256() looks the algorithm up again (a
 * locked store search) on every digest, and a TLS probe takes five.
 * Thread-safe; falls back to EVP_sha256() if the fetch failed. */
const EVP_MD *px_sha256_md(void);

/* SHA-256 of the certificate DER as lower-case hex (65 bytes with NUL). */
int px_x509_sha256_hex(X509 *cert, char out[65]);

#endif
