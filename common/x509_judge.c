#include "common/x509_judge.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/failure.h"
#include "common/x509_fields.h"

/* Called by OpenSSL for every certificate and every problem; returning 1
 * makes it carry on, so one pass sees all errors (expired AND untrusted,
 * say), not just the first. */
static int px__collect_cb(int ok, X509_STORE_CTX *ctx) {
  px_x509_verdict_t *v = X509_STORE_CTX_get_app_data(ctx);
  if (ok)
    return 1;
  int code = X509_STORE_CTX_get_error(ctx);
  int depth = X509_STORE_CTX_get_error_depth(ctx);
  for (int i = 0; i < v->nerrors; i++)
    if (v->errors[i].code == code && v->errors[i].depth == depth)
      return 1;
  if (v->nerrors < PX_X509_MAX_ERRORS) {
    v->errors[v->nerrors].code = code;
    v->errors[v->nerrors].depth = depth;
    v->nerrors++;
  }
  return 1;
}

/* time_t is 32 bits on some volunteers' boards (Debian armhf). */
#define PX__TIME_MAX ((time_t)(sizeof(time_t) == 8 ? INT64_MAX : INT32_MAX))
#define PX__TIME_MIN ((time_t)(sizeof(time_t) == 8 ? INT64_MIN : INT32_MIN))

/* Narrows [v->stable_from, v->stable_until) around at by the validity
 * bounds of every certificate in chain. */
static void px__narrow(px_x509_verdict_t *v, STACK_OF(X509) *chain, time_t at) {
  for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
    X509 *c = sk_X509_value(chain, i);
    const ASN1_TIME *bounds[2] = {X509_get0_notBefore(c), X509_get0_notAfter(c)};
    for (int k = 0; k < 2; k++) {
      struct tm tm;
      if (bounds[k] == NULL || ASN1_TIME_to_tm(bounds[k], &tm) != 1) {
        v->stable_from = v->stable_until = at; /* unknown: never reuse */
        continue;
      }
      time_t t = timegm(&tm);
      /* notAfter is inclusive in OpenSSL's check: the verdict can change
       * one second after it. */
      if (k == 1)
        t += 1;
      if (t <= at && t > v->stable_from)
        v->stable_from = t;
      if (t > at && t < v->stable_until)
        v->stable_until = t;
    }
  }
}

/* Where the built chain came from: the certificate above the leaf, and
 * whether any certificate of it is neither presented nor a root of the
 * store (then it came from the pool). */
static void px__provenance(px_x509_verdict_t *v, X509_STORE_CTX *ctx, STACK_OF(X509) *presented,
                           STACK_OF(X509) *pool) {
  STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
  int n = chain != NULL ? sk_X509_num(chain) : 0;
  if (n >= 2) {
    unsigned char *spki = NULL;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(sk_X509_value(chain, 1)), &spki);
    unsigned md_len = 0;
    v->has_issuer = len > 0 && EVP_Digest(spki, (size_t)len, v->issuer_spki, &md_len,
                                          px_sha256_md(), NULL) == 1;
    OPENSSL_free(spki);
  }
  for (int i = 1; pool != NULL && v->nerrors == 0 && i < n; i++) {
    X509 *c = sk_X509_value(chain, i);
    bool presented_here = false;
    for (int k = 0; k < sk_X509_num(presented) && !presented_here; k++)
      presented_here = X509_cmp(c, sk_X509_value(presented, k)) == 0;
    /* Only an incomplete chain gets here: the pool is searched then. */
    for (int k = 0; !presented_here && !v->completed_from_pool && k < sk_X509_num(pool); k++)
      if (X509_cmp(c, sk_X509_value(pool, k)) == 0)
        v->completed_from_pool = true;
  }
}

int px_x509_judge(X509_STORE *store, STACK_OF(X509) *presented,
                  const char *hostname, time_t at, px_x509_verdict_t *out) {
  return px_x509_judge_with(store, presented, NULL, hostname, at, out);
}

int px_x509_judge_with(X509_STORE *store, STACK_OF(X509) *presented, STACK_OF(X509) *pool,
                       const char *hostname, time_t at, px_x509_verdict_t *out) {
  memset(out, 0, sizeof(*out));
  if (at == 0)
    at = time(NULL);
  out->stable_from = PX__TIME_MIN;
  out->stable_until = PX__TIME_MAX;
  if (presented == NULL || sk_X509_num(presented) == 0)
    return 0;

  X509 *leaf = sk_X509_value(presented, 0);
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  if (untrusted == NULL || ctx == NULL) {
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx);
    return -ENOMEM;
  }
  for (int i = 1; i < sk_X509_num(presented); i++)
    sk_X509_push(untrusted, sk_X509_value(presented, i));
  for (int i = 0; pool != NULL && i < sk_X509_num(pool); i++)
    sk_X509_push(untrusted, sk_X509_value(pool, i));
  /* OpenSSL reads a certificate's extensions into a cache on first use,
   * and X509_verify_cert checks the critical flag before it has always
   * done so: a malformed certificate judged for the first time could miss
   * X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION that a second judgement
   * reports (found by tests/fuzz/fuzz_x509). Filling the cache first
   * makes the verdict a function of the certificates alone. */
  for (int i = 0; i < sk_X509_num(presented); i++)
    X509_check_purpose(sk_X509_value(presented, i), -1, 0);

  int rc = 0;
  if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
    rc = -ENOMEM;
  } else {
    X509_STORE_CTX_set_default(ctx, "ssl_server");
    X509_STORE_CTX_set_time(ctx, 0, at);
    X509_STORE_CTX_set_app_data(ctx, out);
    X509_STORE_CTX_set_verify_cb(ctx, px__collect_cb);
    if (X509_verify_cert(ctx) <= 0 && out->nerrors == 0) {
      /* A failure the callback never saw (internal error): still record
       * it, a chain must not pass because OpenSSL gave up early. */
      out->errors[0].code = X509_STORE_CTX_get_error(ctx);
      out->errors[0].depth = X509_STORE_CTX_get_error_depth(ctx);
      if (out->errors[0].code == X509_V_OK)
        out->errors[0].code = X509_V_ERR_UNSPECIFIED;
      out->nerrors = 1;
    }
    out->judged = true;
    px__provenance(out, ctx, presented, pool);
    px__narrow(out, presented, at);
    px__narrow(out, X509_STORE_CTX_get0_chain(ctx), at);
    out->hostname_match =
        hostname != NULL &&
        X509_check_host(leaf, hostname, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                        NULL) == 1;
  }
  X509_STORE_CTX_free(ctx);
  sk_X509_free(untrusted);
  ERR_clear_error();
  return rc;
}

struct px_x509_judge_cache {
  unsigned slots;
  struct px__judged {
    bool used;
    uint8_t key[32];
    px_x509_verdict_t verdict;
  } entries[];
};

px_x509_judge_cache_t *px_x509_judge_cache_new(unsigned slots) {
  if (slots == 0)
    slots = 1;
  px_x509_judge_cache_t *c = calloc(1, sizeof(*c) + slots * sizeof(c->entries[0]));
  if (c != NULL)
    c->slots = slots;
  return c;
}

void px_x509_judge_cache_free(px_x509_judge_cache_t *cache) {
  free(cache);
}

void px_x509_judge_cache_clear(px_x509_judge_cache_t *cache) {
  for (unsigned i = 0; cache != NULL && i < cache->slots; i++)
    cache->entries[i].used = false;
}

static int px__chain_key(STACK_OF(X509) *chain, uint8_t key[32]) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned len = 0;
  int ok = md != NULL && EVP_DigestInit_ex(md, px_sha256_md(), NULL);
  for (int i = 0; ok && i < sk_X509_num(chain); i++) {
    unsigned char *der = NULL;
    int n = i2d_X509(sk_X509_value(chain, i), &der);
    /* Length-prefixed, so (A,B) and (AB) cannot collide. */
    uint8_t prefix[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    ok = n > 0 && EVP_DigestUpdate(md, prefix, 4) && EVP_DigestUpdate(md, der, (size_t)n);
    OPENSSL_free(der);
  }
  ok = ok && EVP_DigestFinal_ex(md, key, &len) && len == 32;
  EVP_MD_CTX_free(md);
  return ok ? 0 : -ENOMEM;
}

int px_x509_judge_cached(px_x509_judge_cache_t *cache, X509_STORE *store,
                         STACK_OF(X509) *presented, const char *hostname,
                         time_t at, px_x509_verdict_t *out) {
  return px_x509_judge_cached_with(cache, store, presented, NULL, hostname, at, out);
}

int px_x509_judge_cached_with(px_x509_judge_cache_t *cache, X509_STORE *store,
                              STACK_OF(X509) *presented, STACK_OF(X509) *pool,
                              const char *hostname, time_t at, px_x509_verdict_t *out) {
  uint8_t key[32];
  if (at == 0)
    at = time(NULL);
  if (cache == NULL || presented == NULL || sk_X509_num(presented) == 0 ||
      px__chain_key(presented, key) != 0)
    return px_x509_judge_with(store, presented, pool, hostname, at, out);

  struct px__judged *e = &cache->entries[(((unsigned)key[0] << 8) | key[1]) % cache->slots];
  if (e->used && memcmp(e->key, key, sizeof(key)) == 0 &&
      at >= e->verdict.stable_from && at < e->verdict.stable_until) {
    *out = e->verdict;
    X509 *leaf = sk_X509_value(presented, 0);
    out->hostname_match =
        hostname != NULL &&
        X509_check_host(leaf, hostname, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
    ERR_clear_error();
    return 0;
  }
  int rc = px_x509_judge_with(store, presented, pool, hostname, at, out);
  if (rc == 0 && out->judged) {
    e->used = true;
    memcpy(e->key, key, sizeof(key));
    e->verdict = *out;
  }
  return rc;
}

bool px_x509_verdict_ok(const px_x509_verdict_t *v) {
  return v->judged && v->nerrors == 0 && v->hostname_match;
}

const char *px_x509_verdict_failure(const px_x509_verdict_t *v) {
  if (!v->judged)
    return PX_FAILURE_SSL_INVALID_CERT;
  for (int i = 0; i < v->nerrors; i++)
    if (strcmp(px_failure_from_x509(v->errors[i].code),
               PX_FAILURE_SSL_UNKNOWN_AUTHORITY) == 0)
      return PX_FAILURE_SSL_UNKNOWN_AUTHORITY;
  if (v->nerrors > 0)
    return PX_FAILURE_SSL_INVALID_CERT;
  if (!v->hostname_match)
    return PX_FAILURE_SSL_INVALID_HOSTNAME;
  return NULL;
}

json_t *px_x509_verdict_json(const px_x509_verdict_t *v) {
  json_t *obj = json_object();
  json_t *errors = json_array();
  char buf[32];

  for (int i = 0; i < v->nerrors; i++) {
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(v->errors[i].code));
    json_object_set_new(e, "name", json_string(px_x509_error_name(v->errors[i].code, buf, sizeof(buf))));
    json_object_set_new(e, "message", json_string(X509_verify_cert_error_string(v->errors[i].code)));
    json_object_set_new(e, "depth", json_integer(v->errors[i].depth));
    json_array_append_new(errors, e);
  }
  json_object_set_new(obj, "ok", json_boolean(px_x509_verdict_ok(v)));
  json_object_set_new(obj, "errors", errors);
  json_object_set_new(obj, "hostname_match", json_boolean(v->hostname_match));
  return obj;
}

static void px__file_sha256(const char *path, char out[65]) {
  unsigned char buf[16384], md[32];
  unsigned int md_len;
  size_t n;
  FILE *f = fopen(path, "rb");
  EVP_MD_CTX *md_ctx = EVP_MD_CTX_new();

  out[0] = '\0';
  if (f == NULL || md_ctx == NULL || !EVP_DigestInit_ex(md_ctx, px_sha256_md(), NULL))
    goto done;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    EVP_DigestUpdate(md_ctx, buf, n);
  if (!ferror(f) && EVP_DigestFinal_ex(md_ctx, md, &md_len))
    px_hex_encode(md, 32, out);
done:
  if (f != NULL)
    fclose(f);
  EVP_MD_CTX_free(md_ctx);
}

int px_trust_store_load(const char *ca_file, X509_STORE **out, char *desc, size_t desclen,
                        char sha256[65], char *err, size_t errlen) {
  const char *path = ca_file;
  const char *kind = "file";

  if (path == NULL) {
    kind = "system";
    path = getenv(X509_get_default_cert_file_env());
    if (path == NULL)
      path = X509_get_default_cert_file();
  }
  X509_STORE *store = X509_STORE_new();
  if (store == NULL)
    return -ENOMEM;
  if (X509_STORE_load_file(store, path) != 1) {
    unsigned long e = ERR_peek_last_error();
    snprintf(err, errlen, "cannot load %s trust store %s: %s", kind, path,
             e ? ERR_reason_error_string(e) : "no certificates");
    ERR_clear_error();
    X509_STORE_free(store);
    return -EINVAL;
  }
  STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
  if (objs == NULL || sk_X509_OBJECT_num(objs) == 0) {
    snprintf(err, errlen, "trust store %s holds no certificates", path);
    X509_STORE_free(store);
    return -EINVAL;
  }
  snprintf(desc, desclen, "%s:%s", kind, path);
  px__file_sha256(path, sha256);
  *out = store;
  return 0;
}
