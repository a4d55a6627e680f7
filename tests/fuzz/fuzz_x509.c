/* Certificates as a server (or a middlebox) presents them: one or more
 * DER certificates back to back, the chain in the order sent. Each goes
 * through px_x509_cert_json (the peer_certificates item), the chain
 * through the judge the probe uses (probes/tls.c px__record_handshake);
 * the handshake entry must make a publishable measurement, and the
 * collector's own re-judgement (the analysis) must agree with the
 * agent's when both use the same roots at the same time. */
#include <openssl/err.h>
#include <string.h>

#include "collector/analysis/analysis.h"
#include "common/json_util.h"
#include "common/x509_fields.h"
#include "common/x509_judge.h"
#include "tests/fuzz/fuzz_common.h"

#define PX__MAX_CHAIN 6

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  px_fuzz_trust();
  return 0;
}

/* The item of every certificate must serialise and carry the hash of the
 * DER it holds. */
static void px__check_item(json_t *item) {
  char *s = px_json_dump(item);
  if (s == NULL)
    px_fuzz_fail("a peer_certificates item cannot be serialised");
  free(s);
  const char *fields[] = {"format", "data", "sha256", "subject", "issuer", "san",
                          "not_before", "not_after", "self_signed", "spki_sha256"};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    if (json_object_get(item, fields[i]) == NULL)
      px_fuzz_fail("a peer_certificates item lacks \"%s\"", fields[i]);
}

static json_t *px__handshake(STACK_OF(X509) *chain, const char *sni, px_x509_verdict_t *v,
                             bool *judged) {
  json_t *certs = json_array(), *verification = json_null();
  const char *failure = NULL;
  for (int i = 0; i < sk_X509_num(chain); i++) {
    json_t *item = px_x509_cert_json(sk_X509_value(chain, i));
    if (item == NULL)
      px_fuzz_fail("px_x509_cert_json failed on a certificate d2i_X509 accepted");
    px__check_item(item);
    json_array_append_new(certs, item);
  }
  /* Twice through a cache: the second answer must be the first. */
  px_x509_judge_cache_t *cache = px_x509_judge_cache_new(4);
  px_x509_verdict_t again;
  *judged = px_x509_judge_cached(cache, px_fuzz_trust(), chain, sni, PX_FUZZ_NOW, v) == 0;
  if (*judged &&
      (px_x509_judge_cached(cache, px_fuzz_trust(), chain, sni, PX_FUZZ_NOW, &again) != 0 ||
       again.nerrors != v->nerrors || again.hostname_match != v->hostname_match ||
       memcmp(again.errors, v->errors, sizeof(v->errors[0]) * (size_t)v->nerrors) != 0))
    px_fuzz_fail("the judge cache changed a verdict");
  px_x509_judge_cache_free(cache);
  if (*judged) {
    json_decref(verification);
    verification = px_x509_verdict_json(v);
    failure = px_x509_verdict_failure(v);
  }
  json_t *e = json_object();
  json_object_set_new(e, "address", json_string("127.80.1.1:8443"));
  json_object_set_new(e, "server_name", json_string(sni));
  json_object_set_new(e, "tls_version", json_string("TLSv1.3"));
  json_object_set_new(e, "cipher_suite", json_string("TLS_AES_128_GCM_SHA256"));
  json_object_set_new(e, "negotiated_protocol", json_string(""));
  json_object_set_new(e, "no_tls_verify", json_false());
  json_object_set_new(e, "peer_certificates", certs);
  json_object_set_new(e, "verification", verification);
  json_object_set_new(e, "server_alert", json_null());
  json_object_set_new(e, "failure", px_json_string_or_null(failure));
  json_object_set_new(e, "failure_detail", json_null());
  json_object_set_new(e, "t0", json_real(0.01));
  json_object_set_new(e, "t", json_real(0.02));
  json_object_set_new(e, "transaction_id", json_integer(1));
  return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  STACK_OF(X509) *chain = sk_X509_new_null();
  const unsigned char *p = data;
  const uint8_t *end = data + size;

  /* The first certificate alone, the way the collector and tools read a
   * single DER. */
  json_t *single = px_x509_der_json(data, size);
  if (single != NULL)
    px__check_item(single);
  json_decref(single);

  while (p < end && sk_X509_num(chain) < PX__MAX_CHAIN) {
    X509 *x = d2i_X509(NULL, &p, (long)(end - p));
    if (x == NULL)
      break;
    sk_X509_push(chain, x);
  }
  ERR_clear_error();
  if (sk_X509_num(chain) > 0) {
    const char *sni = "www.example.test";
    px_x509_verdict_t v;
    bool judged;
    json_t *hs = px__handshake(chain, sni, &v, &judged);
    json_t *keys = json_object(), *list = json_array();
    json_array_append_new(list, hs);
    json_object_set_new(keys, "queries", json_array());
    json_object_set_new(keys, "tcp_connect", json_array());
    json_object_set_new(keys, "tls_handshakes", list);
    json_object_set_new(keys, "skipped_addresses", json_array());
    json_t *m = px_fuzz_measurement(keys);
    px_fuzz_check_publishable(m, "certificate chain");

    /* The collector re-judges from the recorded base64 DER. */
    char *text = px_json_dump(m);
    json_t *sum = px_summarize(text, strlen(text), PX_FUZZ_NOW, px_fuzz_trust(), NULL);
    json_t *entry = json_array_get(json_object_get(sum, "tls"), 0);
    if (judged && json_is_true(json_object_get(entry, "verified")) != px_x509_verdict_ok(&v))
      px_fuzz_fail("the collector's verdict (%d) differs from the agent's (%d)",
                   json_is_true(json_object_get(entry, "verified")), px_x509_verdict_ok(&v));
    json_decref(sum);
    free(text);
    json_decref(m);
  }
  sk_X509_pop_free(chain, X509_free);
  ERR_clear_error();
  return 0;
}
