#include "probes/tls_context.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>


/* Chains are judged once, after the handshake, by px_x509_judge against the
 * measurement's trust store; verifying during the handshake too would only
 * double the cost. SSL_VERIFY_NONE alone still runs the verification. */
static int px__skip_verify(X509_STORE_CTX *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  return 1;
}

int px_tls_context_init(px_tls_context_t *ctx, const char *ca_file,
                        char *err, size_t errlen) {
  static const unsigned char alpn[] = "\x02h2\x08http/1.1";

  memset(ctx, 0, sizeof(ctx[0]));
  int rc = px_trust_store_load(ca_file, &ctx->trust, ctx->trust_store, sizeof(ctx->trust_store),
                               ctx->trust_sha256, err, errlen);
  if (rc != 0) {
    px_tls_context_free(ctx);
    return rc;
  }
  SSL_CTX *s = SSL_CTX_new(TLS_client_method());
  if (s == NULL) {
    snprintf(err, errlen, "cannot create a TLS context");
    px_tls_context_free(ctx);
    return -ENOMEM;
  }
  ctx->ssl_ctx = s;
  /* Complete the handshake with anything from TLS 1.0 up, including
   * servers without RFC 5746 and with SHA-1 or short keys: the goal is to
   * record what the peer presents, not to protect a session. */
  SSL_CTX_set_min_proto_version(s, TLS1_VERSION);
  SSL_CTX_set_security_level(s, 0);
  if (SSL_CTX_set_cipher_list(s, "ALL:!aNULL:!eNULL:@SECLEVEL=0") != 1) {
    snprintf(err, errlen, "the TLS library refused the legacy cipher list");
    px_tls_context_free(ctx);
    return -EINVAL;
  }
  SSL_CTX_set_options(s, SSL_OP_LEGACY_SERVER_CONNECT | SSL_OP_NO_TICKET |
                             SSL_OP_NO_COMPRESSION);
  /* Every handshake is a full one: resumption would hide the chain. */
  SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_protos(s, alpn, sizeof(alpn) - 1);
  SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_cert_verify_callback(s, px__skip_verify, NULL);
  /* CDNs and multi-address services present the same chain many times in
   * one run; verifying it once is enough. */
  ctx->judged = px_x509_judge_cache_new(1024);
  if (ctx->judged == NULL) {
    snprintf(err, errlen, "out of memory");
    px_tls_context_free(ctx);
    return -ENOMEM;
  }
  return 0;
}

void px_tls_context_free(px_tls_context_t *ctx) {
  SSL_CTX_free(ctx->ssl_ctx);
  X509_STORE_free(ctx->trust);
  px_x509_judge_cache_free(ctx->judged);
  ctx->ssl_ctx = NULL;
  ctx->trust = NULL;
  ctx->judged = NULL;
}
