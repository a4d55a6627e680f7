#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "collector/analysis/summary.h"
#include "common/encoding.h"
#include "common/x509_fields.h"
#include "common/x509_judge.h"
#include "tests/runner.h"

/* In-memory certificates: each test builds exactly the chain it needs. */
typedef struct {
  X509 *cert;
  EVP_PKEY *key;
} px__kc_t;

static void px__ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  assert_non_null(ext);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/* subject as "/C=cn/O=x/CN=y"; issuer NULL for self-signed. Validity in
 * seconds relative to now. */
static px__kc_t px__make(const char *subject, const px__kc_t *issuer, const char *san,
                         bool ca, long from, long to) {
  px__kc_t kc;
  kc.key = EVP_EC_gen("P-256");
  assert_non_null(kc.key);
  kc.cert = X509_new();
  X509_set_version(kc.cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(kc.cert), serial++);
  X509_NAME *name = X509_NAME_new();
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", subject);
  char *save = NULL;
  for (char *tok = strtok_r(buf, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
    char *eq = strchr(tok, '=');
    *eq = '\0';
    X509_NAME_add_entry_by_txt(name, tok, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0);
  }
  X509_set_subject_name(kc.cert, name);
  X509_set_issuer_name(kc.cert, issuer ? X509_get_subject_name(issuer->cert) : name);
  X509_NAME_free(name);
  X509_gmtime_adj(X509_getm_notBefore(kc.cert), from);
  X509_gmtime_adj(X509_getm_notAfter(kc.cert), to);
  X509_set_pubkey(kc.cert, kc.key);
  X509 *iss = issuer ? issuer->cert : kc.cert;
  px__ext(kc.cert, iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  px__ext(kc.cert, iss, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  px__ext(kc.cert, iss, NID_subject_key_identifier, "hash");
  if (issuer)
    px__ext(kc.cert, iss, NID_authority_key_identifier, "keyid");
  if (!ca)
    px__ext(kc.cert, iss, NID_ext_key_usage, "serverAuth");
  if (san)
    px__ext(kc.cert, iss, NID_subject_alt_name, san);
  assert_true(X509_sign(kc.cert, issuer ? issuer->key : kc.key, EVP_sha256()) > 0);
  return kc;
}

static void px__free(px__kc_t *kc) {
  X509_free(kc->cert);
  EVP_PKEY_free(kc->key);
}

static X509_STORE *px__store(X509 *root) {
  X509_STORE *s = X509_STORE_new();
  X509_STORE_add_cert(s, root);
  return s;
}

static STACK_OF(X509) *px__chain(X509 *a, X509 *b) {
  STACK_OF(X509) *sk = sk_X509_new_null();
  sk_X509_push(sk, a);
  if (b)
    sk_X509_push(sk, b);
  return sk;
}

static bool px__has_error(const px_x509_verdict_t *v, int code, int depth) {
  for (int i = 0; i < v->nerrors; i++)
    if (v->errors[i].code == code && (depth < 0 || v->errors[i].depth == depth))
      return true;
  return false;
}

PX_TEST(x509_fields_basic) {
  (void)state;
  px__kc_t root = px__make("/CN=Test Root", NULL, NULL, true, -3600, 86400);
  px__kc_t leaf = px__make("/C=de/O=Example/CN=www.example.test", &root,
                           "DNS:www.example.test,DNS:example.test,IP:192.0.2.1,email:a@b.test",
                           false, -60, 3600);
  json_t *item = px_x509_cert_json(leaf.cert);
  assert_non_null(item);
  assert_string_equal(json_string_value(json_object_get(item, "format")), "base64");
  assert_string_equal(json_string_value(json_object_get(item, "subject")),
                      "CN=www.example.test,O=Example,C=de");
  assert_string_equal(json_string_value(json_object_get(item, "issuer")), "CN=Test Root");
  char *san = json_dumps(json_object_get(item, "san"), JSON_COMPACT);
  assert_string_equal(san, "[\"www.example.test\",\"example.test\",\"192.0.2.1\",\"email:a@b.test\"]");
  free(san);
  assert_false(json_is_true(json_object_get(item, "self_signed")));

  /* sha256 is of exactly the DER carried in "data". */
  const char *b64 = json_string_value(json_object_get(item, "data"));
  uint8_t der[4096], md[32];
  size_t der_len;
  unsigned md_len;
  char hex[65];
  assert_int_equal(px_base64_decode(b64, strlen(b64), der, sizeof(der), &der_len), 0);
  EVP_Digest(der, der_len, md, &md_len, EVP_sha256(), NULL);
  px_hex_encode(md, 32, hex);
  assert_string_equal(json_string_value(json_object_get(item, "sha256")), hex);
  const char *nb = json_string_value(json_object_get(item, "not_before"));
  assert_int_equal(strlen(nb), 20);
  assert_int_equal(nb[10], 'T');
  assert_int_equal(nb[19], 'Z');

  /* The same item from DER, and garbage refused. */
  json_t *again = px_x509_der_json(der, der_len);
  assert_true(json_equal(item, again));
  json_decref(again);
  assert_null(px_x509_der_json((const uint8_t *)"not a certificate", 17));

  json_t *r = px_x509_cert_json(root.cert);
  assert_true(json_is_true(json_object_get(r, "self_signed")));
  assert_int_equal(json_array_size(json_object_get(r, "san")), 0);
  json_decref(r);
  json_decref(item);
  px__free(&leaf);
  px__free(&root);
}

PX_TEST(x509_fields_hostile_names) {
  (void)state;
  /* The 2014 certificate's subject, plus UTF-8 and RFC 4514 specials. */
  px__kc_t mitm = px__make("/C=cn/O=www.icloud.com/CN=www.icloud.com", NULL, NULL, false, -60, 60);
  json_t *item = px_x509_cert_json(mitm.cert);
  assert_string_equal(json_string_value(json_object_get(item, "subject")),
                      "CN=www.icloud.com,O=www.icloud.com,C=cn");
  assert_true(json_is_true(json_object_get(item, "self_signed")));
  json_decref(item);
  px__free(&mitm);

  px__kc_t odd = px__make("/O=\xe4\xb8\xad\xe5\x9b\xbd, \"Ltd\"+x/CN=a\\b", NULL,
                          "DNS:*.example.test", false, -60, 60);
  item = px_x509_cert_json(odd.cert);
  const char *subject = json_string_value(json_object_get(item, "subject"));
  assert_non_null(subject);
  assert_non_null(strstr(subject, "\xe4\xb8\xad\xe5\x9b\xbd"));
  assert_non_null(strstr(subject, "\\,"));
  assert_non_null(strstr(subject, "\\\\"));
  assert_string_equal(json_string_value(json_array_get(json_object_get(item, "san"), 0)),
                      "*.example.test");
  char *text = json_dumps(item, JSON_COMPACT);
  assert_non_null(text); /* valid UTF-8 throughout, or jansson would refuse */
  free(text);
  json_decref(item);
  px__free(&odd);
}

PX_TEST(x509_judge_valid_chain) {
  (void)state;
  px__kc_t root = px__make("/CN=Root", NULL, NULL, true, -3600, 86400);
  px__kc_t inter = px__make("/CN=Intermediate", &root, NULL, true, -3600, 86400);
  px__kc_t leaf = px__make("/CN=www.example.test", &inter, "DNS:www.example.test", false, -60, 3600);
  X509_STORE *store = px__store(root.cert);
  STACK_OF(X509) *chain = px__chain(leaf.cert, inter.cert);
  px_x509_verdict_t v;

  assert_int_equal(px_x509_judge(store, chain, "www.example.test", 0, &v), 0);
  assert_true(v.judged);
  assert_int_equal(v.nerrors, 0);
  assert_true(v.hostname_match);
  assert_true(px_x509_verdict_ok(&v));
  assert_null(px_x509_verdict_failure(&v));
  json_t *j = px_x509_verdict_json(&v);
  char *s = json_dumps(j, JSON_COMPACT);
  assert_string_equal(s, "{\"ok\":true,\"errors\":[],\"hostname_match\":true}");
  free(s);
  json_decref(j);

  /* Missing intermediate: the chain cannot reach the root. */
  sk_X509_pop(chain);
  assert_int_equal(px_x509_judge(store, chain, "www.example.test", 0, &v), 0);
  assert_true(px__has_error(&v, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0));
  assert_string_equal(px_x509_verdict_failure(&v), "ssl_unknown_authority");

  /* No chain at all. */
  STACK_OF(X509) *empty = sk_X509_new_null();
  assert_int_equal(px_x509_judge(store, empty, "www.example.test", 0, &v), 0);
  assert_false(v.judged);
  assert_false(px_x509_verdict_ok(&v));
  sk_X509_free(empty);

  sk_X509_free(chain);
  X509_STORE_free(store);
  px__free(&leaf);
  px__free(&inter);
  px__free(&root);
}

PX_TEST(x509_judge_collects_all_errors) {
  (void)state;
  px__kc_t root = px__make("/CN=Root", NULL, NULL, true, -3600, 86400);
  px__kc_t other = px__make("/CN=Other Root", NULL, NULL, true, -3600, 86400);
  /* Expired AND from an unknown root AND for another name: every error is
   * recorded, and the failure names the chain problem first. */
  px__kc_t leaf = px__make("/CN=old.example.test", &other, "DNS:old.example.test", false,
                           -86400L * 30, -86400);
  X509_STORE *store = px__store(root.cert);
  STACK_OF(X509) *chain = px__chain(leaf.cert, NULL);
  px_x509_verdict_t v;
  assert_int_equal(px_x509_judge(store, chain, "www.example.test", 0, &v), 0);
  assert_true(px__has_error(&v, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0));
  assert_true(px__has_error(&v, X509_V_ERR_CERT_HAS_EXPIRED, 0));
  assert_false(v.hostname_match);
  assert_string_equal(px_x509_verdict_failure(&v), "ssl_unknown_authority");
  json_t *j = px_x509_verdict_json(&v);
  json_t *errors = json_object_get(j, "errors");
  assert_int_equal(json_array_size(errors), (size_t)v.nerrors);
  size_t i;
  json_t *e;
  bool named = false;
  json_array_foreach(errors, i, e) {
    if (json_integer_value(json_object_get(e, "code")) == X509_V_ERR_CERT_HAS_EXPIRED) {
      assert_string_equal(json_string_value(json_object_get(e, "name")), "X509_V_ERR_CERT_HAS_EXPIRED");
      assert_string_equal(json_string_value(json_object_get(e, "message")), "certificate has expired");
      named = true;
    }
  }
  assert_true(named);
  json_decref(j);
  sk_X509_free(chain);

  /* Expired but from the trusted root: an invalid certificate. */
  px__kc_t expired = px__make("/CN=www.example.test", &root, "DNS:www.example.test", false,
                              -86400L * 30, -86400);
  chain = px__chain(expired.cert, NULL);
  assert_int_equal(px_x509_judge(store, chain, "www.example.test", 0, &v), 0);
  assert_int_equal(v.nerrors, 1);
  assert_int_equal(v.errors[0].code, X509_V_ERR_CERT_HAS_EXPIRED);
  assert_true(v.hostname_match);
  assert_string_equal(px_x509_verdict_failure(&v), "ssl_invalid_certificate");
  sk_X509_free(chain);
  X509_STORE_free(store);
  px__free(&expired);
  px__free(&leaf);
  px__free(&other);
  px__free(&root);
}

PX_TEST(x509_judge_self_signed_and_hostname) {
  (void)state;
  px__kc_t root = px__make("/CN=Root", NULL, NULL, true, -3600, 86400);
  px__kc_t mitm = px__make("/C=cn/O=www.icloud.com/CN=www.icloud.com", NULL, NULL, false, -60, 3600);
  px__kc_t leaf = px__make("/CN=other.example.test", &root, "DNS:other.example.test", false, -60, 3600);
  X509_STORE *store = px__store(root.cert);
  px_x509_verdict_t v;

  STACK_OF(X509) *chain = px__chain(mitm.cert, NULL);
  assert_int_equal(px_x509_judge(store, chain, "www.icloud.com", 0, &v), 0);
  assert_true(px__has_error(&v, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, 0));
  /* No SAN: OpenSSL falls back to the CN, which matches. */
  assert_true(v.hostname_match);
  assert_string_equal(px_x509_verdict_failure(&v), "ssl_unknown_authority");
  sk_X509_free(chain);

  chain = px__chain(leaf.cert, NULL);
  assert_int_equal(px_x509_judge(store, chain, "www.example.test", 0, &v), 0);
  assert_int_equal(v.nerrors, 0);
  assert_false(v.hostname_match);
  assert_false(px_x509_verdict_ok(&v));
  assert_string_equal(px_x509_verdict_failure(&v), "ssl_invalid_hostname");
  sk_X509_free(chain);

  X509_STORE_free(store);
  px__free(&leaf);
  px__free(&mitm);
  px__free(&root);
}

PX_TEST(x509_judge_clock_offset) {
  (void)state;
  /* A certificate valid from tomorrow: a device whose clock is a day late
   * judges it "not yet valid" unless it corrects with the offset. */
  px__kc_t root = px__make("/CN=Root", NULL, NULL, true, -86400L * 10, 86400L * 10);
  px__kc_t leaf = px__make("/CN=www.example.test", &root, "DNS:www.example.test", false,
                           86400, 86400L * 5);
  X509_STORE *store = px__store(root.cert);
  STACK_OF(X509) *chain = px__chain(leaf.cert, NULL);
  px_x509_verdict_t v;
  assert_int_equal(px_x509_judge(store, chain, "www.example.test", 0, &v), 0);
  assert_true(px__has_error(&v, X509_V_ERR_CERT_NOT_YET_VALID, 0));
  assert_string_equal(px_x509_verdict_failure(&v), "ssl_invalid_certificate");
  assert_int_equal(px_x509_judge(store, chain, "www.example.test", time(NULL) + 2L * 86400, &v), 0);
  assert_true(px_x509_verdict_ok(&v));
  sk_X509_free(chain);
  X509_STORE_free(store);
  px__free(&leaf);
  px__free(&root);
}

PX_TEST(x509_judge_cache) {
  (void)state;
  px__kc_t root = px__make("/CN=Root", NULL, NULL, true, -86400, 86400L * 30);
  /* Expires in 10 days: the cached verdict must not outlive that. */
  px__kc_t leaf = px__make("/CN=a.example.test", &root, "DNS:a.example.test,DNS:b.example.test",
                           false, -60, 86400L * 10);
  X509_STORE *store = px__store(root.cert);
  STACK_OF(X509) *chain = px__chain(leaf.cert, NULL);
  px_x509_judge_cache_t *cache = px_x509_judge_cache_new(16);
  px_x509_verdict_t plain, cached;
  time_t now = time(NULL);

  assert_int_equal(px_x509_judge(store, chain, "a.example.test", now, &plain), 0);
  assert_true(plain.stable_from <= now && now < plain.stable_until);
  assert_true(plain.stable_until <= now + 86400L * 10 + 1);
  for (int round = 0; round < 2; round++) { /* miss, then hit */
    assert_int_equal(px_x509_judge_cached(cache, store, chain, "a.example.test", now, &cached), 0);
    assert_int_equal(cached.nerrors, plain.nerrors);
    assert_true(px_x509_verdict_ok(&cached));
  }
  /* The host name is judged afresh on a hit. */
  assert_int_equal(px_x509_judge_cached(cache, store, chain, "c.example.test", now, &cached), 0);
  assert_false(cached.hostname_match);
  assert_int_equal(px_x509_judge_cached(cache, store, chain, "b.example.test", now, &cached), 0);
  assert_true(cached.hostname_match);
  /* Past notAfter the cached "valid" is not reused. */
  time_t later = now + 86400L * 11;
  assert_int_equal(px_x509_judge_cached(cache, store, chain, "a.example.test", later, &cached), 0);
  assert_true(px__has_error(&cached, X509_V_ERR_CERT_HAS_EXPIRED, 0));
  /* A different chain is a different key. */
  px__kc_t other = px__make("/CN=a.example.test", NULL, "DNS:a.example.test", false, -60, 3600);
  STACK_OF(X509) *chain2 = px__chain(other.cert, NULL);
  assert_int_equal(px_x509_judge_cached(cache, store, chain2, "a.example.test", now, &cached), 0);
  assert_true(px__has_error(&cached, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, 0));
  assert_int_equal(px_x509_judge_cached(cache, store, chain, "a.example.test", now, &cached), 0);
  assert_true(px_x509_verdict_ok(&cached));

  px_x509_judge_cache_free(cache);
  sk_X509_free(chain2);
  sk_X509_free(chain);
  X509_STORE_free(store);
  px__free(&other);
  px__free(&leaf);
  px__free(&root);
}

/* A chain judged for the first time gets the verdict every later
 * judgement gets: OpenSSL caches extensions lazily and could skip the
 * critical-extension check on first use (tests/fuzz/fuzz_x509 found a
 * malformed certificate whose errors were [20], then [20, 34]). */
PX_TEST(x509_judge_first_time_like_later) {
  char path[4096];
  uint8_t der[4096];
  (void)state;
  snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/x509/crash-critical-ext-first-judgement",
           PX_SOURCE_DIR);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = fread(der, 1, sizeof(der), f);
  fclose(f);
  const unsigned char *p = der;
  X509 *cert = d2i_X509(NULL, &p, (long)n);
  assert_non_null(cert);
  STACK_OF(X509) *chain = sk_X509_new_null();
  sk_X509_push(chain, cert);
  X509_STORE *store = X509_STORE_new();
  px_x509_verdict_t first, second;
  assert_int_equal(px_x509_judge(store, chain, "www.icloud.com", 1798761600, &first), 0);
  assert_int_equal(px_x509_judge(store, chain, "www.icloud.com", 1798761600, &second), 0);
  assert_int_equal(first.nerrors, second.nerrors);
  bool critical = false;
  for (int i = 0; i < first.nerrors; i++) {
    assert_int_equal(first.errors[i].code, second.errors[i].code);
    critical = critical || first.errors[i].code == X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION;
  }
  assert_true(critical);
  X509_STORE_free(store);
  sk_X509_pop_free(chain, X509_free);
}

/* Chain completion (issue 11): the issuer the chain was built through, an
 * incomplete chain completed from the pool (and said so), and what may
 * join the pool: a CA certificate that chains to the store, never a leaf
 * or a root. */
PX_TEST(x509_judge_pool_and_issuer) {
  (void)state;
  px__kc_t root = px__make("/CN=Root", NULL, NULL, true, -3600, 86400);
  px__kc_t inter = px__make("/CN=Intermediate", &root, NULL, true, -3600, 86400);
  px__kc_t leaf = px__make("/CN=www.example.test", &inter, "DNS:www.example.test", false, -60, 3600);
  X509_STORE *store = px__store(root.cert);
  STACK_OF(X509) *full = px__chain(leaf.cert, inter.cert), *bare = px__chain(leaf.cert, NULL);
  STACK_OF(X509) *pool = px__chain(inter.cert, NULL);
  px_x509_verdict_t v;
  uint8_t spki[32];
  unsigned char *der = NULL;
  unsigned md_len;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(inter.cert), &der);
  assert_true(len > 0 && EVP_Digest(der, (size_t)len, spki, &md_len, EVP_sha256(), NULL) == 1);
  OPENSSL_free(der);

  assert_int_equal(px_x509_judge(store, full, "www.example.test", 0, &v), 0);
  assert_true(px_x509_verdict_ok(&v));
  assert_true(v.has_issuer);
  assert_memory_equal(v.issuer_spki, spki, 32);
  assert_false(v.completed_from_pool);

  assert_int_equal(px_x509_judge_with(store, bare, NULL, "www.example.test", 0, &v), 0);
  assert_false(px_x509_verdict_ok(&v));
  assert_int_equal(px_x509_judge_with(store, bare, pool, "www.example.test", 0, &v), 0);
  assert_true(px_x509_verdict_ok(&v));
  assert_true(v.completed_from_pool);
  assert_memory_equal(v.issuer_spki, spki, 32);
  /* The full chain with the pool at hand does not claim the pool. */
  assert_int_equal(px_x509_judge_with(store, full, pool, "www.example.test", 0, &v), 0);
  assert_false(v.completed_from_pool);

  assert_true(px_pool_admits(inter.cert, store, NULL, 0));
  assert_false(px_pool_admits(leaf.cert, store, full, 0));
  assert_false(px_pool_admits(root.cert, store, NULL, 0));
  X509_STORE *other = px__store(leaf.cert);
  assert_false(px_pool_admits(inter.cert, other, NULL, 0));

  X509_STORE_free(other);
  sk_X509_free(pool);
  sk_X509_free(bare);
  sk_X509_free(full);
  X509_STORE_free(store);
  px__free(&leaf);
  px__free(&inter);
  px__free(&root);
}
