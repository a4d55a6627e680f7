/* The TLS probe against real servers of tests/peers: nginx with a test PKI,
 * gnutls-serv without secure renegotiation, and misbehaving TCP peers. */
#include <string.h>

#include "common/netaddr.h"
#include "probes/tls.h"
#include "tests/runner.h"

typedef struct {
  const char *ip_key;
  const char *server_name;
  px_tls_probe_result_t res;
  bool done;
} px__flow_t;

/* The probe's callback type hands over a mutable result. */
/* cppcheck-suppress constParameter */
static void px__done(void *data, px_tls_probe_result_t *res) {
  px__flow_t *f = data;
  f->res = *res;
  f->done = true;
}

static void px__ctx(px_tls_context_t *ctx) {
  char err[256];
  int rc = px_tls_context_init(ctx, px_test_peers_path("pki/ca.pem"), err, sizeof(err));
  if (rc != 0)
    fail_msg("%s", err);
}

/* Runs every flow at once on one loop, as the engine does. */
static void px__run(px__flow_t *flows, size_t n, unsigned timeout_ms) {
  uv_loop_t loop;
  px_tls_context_t ctx;
  px__ctx(&ctx);
  uv_loop_init(&loop);
  for (size_t i = 0; i < n; i++) {
    char text[128];
    struct sockaddr_storage ss;
    const char *ip = px_test_peer(flows[i].ip_key);
    snprintf(text, sizeof(text), strchr(ip, ':') ? "[%s]:%s" : "%s:%s", ip, px_test_peer("PX_TLS_PORT"));
    assert_int_equal(px_addr_parse_hostport(text, 443, &ss), 0);
    px_tls_probe_req_t req = {
        .address = (struct sockaddr *)&ss,
        .server_name = flows[i].server_name,
        .timeout_ms = timeout_ms,
        .base_ns = uv_hrtime(),
        .transaction_id = (int64_t)i + 1,
        .ctx = &ctx,
    };
    assert_int_equal(px_tls_probe_start(&loop, &req, px__done, &flows[i]), 0);
  }
  px_test_close_loop(&loop);
  for (size_t i = 0; i < n; i++) {
    assert_true(flows[i].done);
    assert_non_null(flows[i].res.tcp_connect);
    assert_int_equal(json_integer_value(json_object_get(flows[i].res.tcp_connect, "transaction_id")),
                     (json_int_t)i + 1);
  }
  px_tls_context_free(&ctx);
}

static const char *px__s(json_t *obj, const char *key) {
  return json_string_value(json_object_get(obj, key));
}

static bool px__has_error(json_t *hs, int code, int depth) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(json_object_get(hs, "verification"), "errors"), i, e)
    if (json_integer_value(json_object_get(e, "code")) == code &&
        json_integer_value(json_object_get(e, "depth")) == depth)
      return true;
  return false;
}

static void px__free_flows(px__flow_t *flows, size_t n) {
  for (size_t i = 0; i < n; i++) {
    json_decref(flows[i].res.tcp_connect);
    json_decref(flows[i].res.tls_handshake);
  }
}

PX_TEST(tls_probe_good_chain) {
  px__flow_t f[] = {{.ip_key = "PX_TLS_GOOD", .server_name = "www.example.test"}, {.ip_key = "PX_TLS_GOOD6", .server_name = "www.example.test"}};
  (void)state;
  px_test_require_peers();
  px__run(f, 2, 5000);
  for (int i = 0; i < 2; i++) {
    json_t *tcp = f[i].res.tcp_connect, *hs = f[i].res.tls_handshake;
    assert_true(json_is_true(json_object_get(json_object_get(tcp, "status"), "success")));
    assert_true(json_is_null(json_object_get(json_object_get(tcp, "status"), "failure")));
    assert_non_null(hs);
    assert_true(f[i].res.verified);
    assert_true(json_is_null(json_object_get(hs, "failure")));
    assert_string_equal(px__s(hs, "server_name"), "www.example.test");
    assert_string_equal(px__s(hs, "tls_version"), "TLSv1.3");
    assert_true(strncmp(px__s(hs, "cipher_suite"), "TLS_", 4) == 0);
    assert_false(json_is_true(json_object_get(hs, "no_tls_verify")));
    /* The whole chain as presented: leaf then intermediate. */
    json_t *certs = json_object_get(hs, "peer_certificates");
    assert_int_equal(json_array_size(certs), 2);
    assert_string_equal(px__s(json_array_get(certs, 0), "subject"), "O=parallax tests,CN=www.example.test");
    assert_true(json_is_true(json_object_get(json_object_get(hs, "verification"), "ok")));
    assert_true(json_number_value(json_object_get(hs, "t")) >= json_number_value(json_object_get(hs, "t0")));
  }
  assert_string_equal(px__s(f[1].res.tls_handshake, "address"),
                      "[::1]:8443");
  px__free_flows(f, 2);
}

PX_TEST(tls_probe_judgements) {
  px__flow_t f[] = {
      {.ip_key = "PX_TLS_EXPIRED", .server_name = "expired.example.test"},
      {.ip_key = "PX_TLS_WRONGHOST", .server_name = "wronghost.example.test"},
      {.ip_key = "PX_TLS_MITM", .server_name = "www.icloud.com"},
      {.ip_key = "PX_TLS_UNKNOWNROOT", .server_name = "unknownroot.example.test"},
  };
  (void)state;
  px_test_require_peers();
  px__run(f, 4, 5000);

  json_t *expired = f[0].res.tls_handshake;
  assert_string_equal(px__s(expired, "failure"), "ssl_invalid_certificate");
  assert_true(px__has_error(expired, 10, 0)); /* X509_V_ERR_CERT_HAS_EXPIRED */
  assert_int_equal(json_array_size(json_object_get(expired, "peer_certificates")), 2);

  json_t *wrong = f[1].res.tls_handshake;
  assert_string_equal(px__s(wrong, "failure"), "ssl_invalid_hostname");
  assert_int_equal(json_array_size(json_object_get(json_object_get(wrong, "verification"), "errors")), 0);
  assert_false(json_is_true(json_object_get(json_object_get(wrong, "verification"), "hostname_match")));

  /* The 2014 iCloud interception, reproduced. */
  json_t *mitm = f[2].res.tls_handshake;
  assert_string_equal(px__s(mitm, "failure"), "ssl_unknown_authority");
  assert_true(px__has_error(mitm, 18, 0)); /* DEPTH_ZERO_SELF_SIGNED_CERT */
  assert_string_equal(px__s(mitm, "tls_version"), "TLSv1.2");
  assert_string_equal(px__s(mitm, "cipher_suite"), "TLS_RSA_WITH_AES_256_CBC_SHA");
  json_t *leaf = json_array_get(json_object_get(mitm, "peer_certificates"), 0);
  assert_string_equal(px__s(leaf, "subject"), "CN=www.icloud.com,O=www.icloud.com,C=cn");
  assert_true(json_is_true(json_object_get(leaf, "self_signed")));
  assert_true(json_is_true(json_object_get(json_object_get(mitm, "verification"), "hostname_match")));
  assert_false(f[2].res.verified);

  json_t *unknown = f[3].res.tls_handshake;
  assert_string_equal(px__s(unknown, "failure"), "ssl_unknown_authority");
  assert_true(px__has_error(unknown, 19, 1)); /* SELF_SIGNED_CERT_IN_CHAIN */
  px__free_flows(f, 4);
}

PX_TEST(tls_probe_legacy_servers) {
  px__flow_t f[] = {{.ip_key = "PX_TLS_TLS10", .server_name = "tls10.example.test"}, {.ip_key = "PX_TLS_NORENEG", .server_name = "noreneg.example.test"}};
  const char *skipped = px_test_peers_state("NORENEG_SKIPPED");
  bool with_noreneg = skipped == NULL || strcmp(skipped, "1") != 0;
  (void)state;
  px_test_require_peers();
  px__run(f, with_noreneg ? 2 : 1, 5000);
  /* OpenSSL 3.0's defaults refuse both; the probe completes both and
   * records the chain, which is the point. */
  json_t *tls10 = f[0].res.tls_handshake;
  assert_string_equal(px__s(tls10, "tls_version"), "TLSv1");
  assert_true(json_is_null(json_object_get(tls10, "failure")));
  assert_int_equal(json_array_size(json_object_get(tls10, "peer_certificates")), 2);
  if (with_noreneg) {
    json_t *noreneg = f[1].res.tls_handshake;
    assert_string_equal(px__s(noreneg, "tls_version"), "TLSv1.2");
    assert_true(json_is_null(json_object_get(noreneg, "failure")));
    assert_true(json_array_size(json_object_get(noreneg, "peer_certificates")) >= 1);
  } else {
    fprintf(stderr, "note: the no-renegotiation peer needs root; only TLS 1.0 was checked\n");
  }
  px__free_flows(f, with_noreneg ? 2 : 1);
}

PX_TEST(tls_probe_misbehaving_peers) {
  px__flow_t f[] = {
      {.ip_key = "PX_TCP_STALL", .server_name = "stall.example.test"},
      {.ip_key = "PX_TCP_RESET", .server_name = "reset.example.test"},
      {.ip_key = "PX_TCP_CLOSE", .server_name = "closed.example.test"},
      {.ip_key = "PX_TCP_GARBAGE", .server_name = "garbage.example.test"},
      {.ip_key = "PX_TCP_REFUSED", .server_name = "refused.example.test"},
  };
  (void)state;
  px_test_require_peers();
  px__run(f, 5, 1500);
  const char *expect[] = {"generic_timeout_error", "connection_reset", "eof_error",
                          "ssl_failed_handshake"};
  for (int i = 0; i < 4; i++) {
    json_t *hs = f[i].res.tls_handshake;
    assert_true(json_is_true(json_object_get(json_object_get(f[i].res.tcp_connect, "status"), "success")));
    assert_non_null(hs);
    if (strcmp(px__s(hs, "failure"), expect[i]) != 0)
      fail_msg("%s: failure %s, expected %s", f[i].server_name, px__s(hs, "failure"), expect[i]);
    assert_int_equal(json_array_size(json_object_get(hs, "peer_certificates")), 0);
    assert_true(json_is_null(json_object_get(hs, "verification")));
    assert_true(json_is_null(json_object_get(hs, "server_alert")));
    assert_false(f[i].res.verified);
  }
  assert_non_null(px__s(f[3].res.tls_handshake, "failure_detail"));
  json_t *refused = f[4].res.tcp_connect;
  assert_string_equal(px__s(json_object_get(refused, "status"), "failure"), "connection_refused");
  assert_false(json_is_true(json_object_get(json_object_get(refused, "status"), "success")));
  assert_null(f[4].res.tls_handshake);
  px__free_flows(f, 5);
}
