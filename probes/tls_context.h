#ifndef PX_TLS_CONTEXT_H
#define PX_TLS_CONTEXT_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

#include "common/x509_judge.h"

/* Shared by every TLS probe of a run: an SSL_CTX that completes handshakes
 * with whatever old servers and middleboxes speak, and, separately, the
 * trust store the chains are judged against afterwards. */
typedef struct px_tls_context {
  SSL_CTX *ssl_ctx;
  X509_STORE *trust;
  char trust_store[512];   /* "system:<file>" or "file:<path>" */
  char trust_sha256[65];   /* of the trust file's bytes, "" if unknown */
  long clock_offset;       /* seconds to add to the local clock when judging */
  px_x509_judge_cache_t *judged; /* chains already judged against trust */
} px_tls_context_t;

/* ca_file NULL: the system store (OpenSSL's default file, which honours
 * SSL_CERT_FILE). On error returns a negative code and writes a one-line
 * reason into err. */
int px_tls_context_init(px_tls_context_t *ctx, const char *ca_file,
                        char *err, size_t errlen);
void px_tls_context_free(px_tls_context_t *ctx);

#endif
