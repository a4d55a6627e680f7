/* The DNS probe against real peers: dnsmasq and tests/peers/bad_dns.py. */
#include <ares.h>
#include <errno.h>
#include <string.h>

#include "common/netaddr.h"
#include "probes/dns.h"
#include "probes/dns_wire.h"
#include "tests/runner.h"

#define PX__MAX_EX 4

typedef struct {
  int n;
  int finals;
  px_dns_exchange_t ex[PX__MAX_EX];
  uint8_t resp[PX__MAX_EX][4096];
  px_dns_resolver_t *close_on_final; /* close the resolver from the callback */
} px__col_t;

static void px__collect(void *data, const px_dns_exchange_t *ex) {
  px__col_t *c = data;
  assert_true(c->n < PX__MAX_EX);
  assert_true(ex->response_len <= sizeof(c->resp[0]));
  c->ex[c->n] = *ex;
  if (ex->response != NULL)
    memcpy(c->resp[c->n], ex->response, ex->response_len);
  c->ex[c->n].response = ex->response ? c->resp[c->n] : NULL;
  c->n++;
  if (ex->final) {
    c->finals++;
    if (c->close_on_final != NULL)
      px_dns_resolver_close(c->close_on_final);
  }
}

static px_dns_resolver_t *px__resolver(uv_loop_t *loop, const char *ip_key, unsigned timeout_ms) {
  char text[128];
  struct sockaddr_storage ss;
  px_dns_resolver_t *r = NULL;
  snprintf(text, sizeof(text), "%s:%s", px_test_peer(ip_key), px_test_peer("PX_DNS_PORT"));
  assert_int_equal(px_addr_parse_hostport(text, 53, &ss), 0);
  assert_int_equal(px_dns_resolver_new(loop, (struct sockaddr *)&ss, timeout_ms, &r), 0);
  return r;
}

/* Parses exchange i and returns its answers as compact JSON (caller frees),
 * or NULL when the response is malformed. */
static char *px__answers(const px__col_t *c, int i, int qtype, int *rcode) {
  px_dns_answer_info_t info;
  *rcode = -1; /* no rcode a server can send: a malformed answer fails the rcode checks */
  if (px_dns_wire_parse(c->ex[i].response, c->ex[i].response_len, qtype, &info) != 0)
    return NULL;
  *rcode = info.rcode;
  char *s = json_dumps(info.answers, JSON_COMPACT);
  json_decref(info.answers);
  return s;
}

PX_TEST(dns_probe_dnsmasq) {
  uv_loop_t loop;
  px__col_t www_a = {0}, www_aaaa = {0}, alias = {0}, nx = {0}, nodata = {0};
  int rcode;
  char *s;
  (void)state;
  px_test_require_peers();
  uv_loop_init(&loop);
  px_dns_resolver_t *r = px__resolver(&loop, "PX_DNS_GOOD", 3000);

  assert_int_equal(px_dns_lookup(r, "www.example.test", PX_DNS_TYPE_A, px__collect, &www_a), 0);
  assert_int_equal(px_dns_lookup(r, "www.example.test", PX_DNS_TYPE_AAAA, px__collect, &www_aaaa), 0);
  assert_int_equal(px_dns_lookup(r, "alias2.example.test", PX_DNS_TYPE_A, px__collect, &alias), 0);
  assert_int_equal(px_dns_lookup(r, "nx.example.test", PX_DNS_TYPE_A, px__collect, &nx), 0);
  assert_int_equal(px_dns_lookup(r, "expired.example.test", PX_DNS_TYPE_AAAA, px__collect, &nodata), 0);
  while (www_a.finals + www_aaaa.finals + alias.finals + nx.finals + nodata.finals < 5)
    uv_run(&loop, UV_RUN_ONCE);

  assert_int_equal(www_a.n, 1);
  assert_string_equal(www_a.ex[0].engine, "udp");
  assert_int_equal(www_a.ex[0].status, ARES_SUCCESS);
  assert_true(www_a.ex[0].t_ns >= www_a.ex[0].t0_ns);
  s = px__answers(&www_a, 0, PX_DNS_TYPE_A, &rcode);
  assert_int_equal(rcode, 0);
  char expect[256];
  snprintf(expect, sizeof(expect), "[{\"answer_type\":\"A\",\"ipv4\":\"%s\",\"ttl\":300}]",
           px_test_peer("PX_TLS_GOOD"));
  assert_string_equal(s, expect);
  free(s);

  s = px__answers(&www_aaaa, 0, PX_DNS_TYPE_AAAA, &rcode);
  assert_string_equal(s, "[{\"answer_type\":\"AAAA\",\"ipv6\":\"::1\",\"ttl\":300}]");
  free(s);

  s = px__answers(&alias, 0, PX_DNS_TYPE_A, &rcode);
  assert_non_null(strstr(s, "{\"answer_type\":\"CNAME\",\"hostname\":\"alias.example.test\""));
  assert_non_null(strstr(s, "{\"answer_type\":\"CNAME\",\"hostname\":\"www.example.test\""));
  assert_non_null(strstr(s, px_test_peer("PX_TLS_GOOD")));
  free(s);

  assert_int_equal(nx.ex[0].status, ARES_ENOTFOUND);
  s = px__answers(&nx, 0, PX_DNS_TYPE_A, &rcode);
  assert_int_equal(rcode, 3);
  assert_string_equal(s, "[]");
  free(s);

  assert_int_equal(nodata.ex[0].status, ARES_ENODATA);
  s = px__answers(&nodata, 0, PX_DNS_TYPE_AAAA, &rcode);
  assert_int_equal(rcode, 0);
  assert_string_equal(s, "[]");
  free(s);

  px_dns_resolver_close(r);
  px_test_close_loop(&loop);
}

PX_TEST(dns_probe_broken_responder) {
  uv_loop_t loop;
  px__col_t servfail = {0}, refused = {0}, malformed = {0}, loopy = {0}, wrongid = {0},
            garbage = {0}, nodata = {0};
  int rcode;
  (void)state;
  px_test_require_peers();
  uv_loop_init(&loop);
  px_dns_resolver_t *r = px__resolver(&loop, "PX_DNS_BAD", 900);

  px_dns_lookup(r, "servfail.bad.test", PX_DNS_TYPE_A, px__collect, &servfail);
  px_dns_lookup(r, "refused.bad.test", PX_DNS_TYPE_A, px__collect, &refused);
  px_dns_lookup(r, "malformed.bad.test", PX_DNS_TYPE_A, px__collect, &malformed);
  px_dns_lookup(r, "loop.bad.test", PX_DNS_TYPE_A, px__collect, &loopy);
  px_dns_lookup(r, "wrongid.bad.test", PX_DNS_TYPE_A, px__collect, &wrongid);
  px_dns_lookup(r, "garbage.bad.test", PX_DNS_TYPE_A, px__collect, &garbage);
  px_dns_lookup(r, "ok.bad.test", PX_DNS_TYPE_AAAA, px__collect, &nodata);
  uv_run(&loop, UV_RUN_DEFAULT); /* the timer ends with the last lookup */

  /* NOCHECKRESP: the error answers arrive as answers, with their bytes. */
  assert_int_equal(servfail.n, 1);
  assert_int_equal(servfail.ex[0].status, ARES_ESERVFAIL);
  free(px__answers(&servfail, 0, PX_DNS_TYPE_A, &rcode));
  assert_int_equal(rcode, 2);
  assert_int_equal(refused.ex[0].status, ARES_EREFUSED);
  free(px__answers(&refused, 0, PX_DNS_TYPE_A, &rcode));
  assert_int_equal(rcode, 5);

  /* Malformed answer sections reach us and our parser refuses them. */
  assert_int_equal(malformed.n, 1);
  assert_non_null(malformed.ex[0].response);
  assert_null(px__answers(&malformed, 0, PX_DNS_TYPE_A, &rcode));
  assert_int_equal(loopy.n, 1);
  assert_null(px__answers(&loopy, 0, PX_DNS_TYPE_A, &rcode));

  /* Answers with the wrong id, and random bytes, are dropped by c-ares:
   * the lookup times out. */
  assert_int_equal(wrongid.n, 1);
  assert_int_equal(wrongid.ex[0].status, ARES_ETIMEOUT);
  assert_null(wrongid.ex[0].response);
  assert_int_equal(garbage.ex[0].status, ARES_ETIMEOUT);

  assert_int_equal(nodata.ex[0].status, ARES_ENODATA);

  px_dns_resolver_close(r);
  px_test_close_loop(&loop);
}

PX_TEST(dns_probe_truncated_goes_tcp) {
  uv_loop_t loop;
  px__col_t tc = {0};
  int rcode;
  (void)state;
  px_test_require_peers();
  uv_loop_init(&loop);
  px_dns_resolver_t *r = px__resolver(&loop, "PX_DNS_BAD", 3000);
  assert_int_equal(px_dns_lookup(r, "truncated.bad.test", PX_DNS_TYPE_A, px__collect, &tc), 0);
  while (tc.finals == 0)
    uv_run(&loop, UV_RUN_ONCE);

  assert_int_equal(tc.n, 2);
  assert_string_equal(tc.ex[0].engine, "udp");
  assert_false(tc.ex[0].final);
  assert_true(tc.ex[0].response[2] & 0x02); /* TC */
  char *s = px__answers(&tc, 0, PX_DNS_TYPE_A, &rcode);
  assert_string_equal(s, "[]");
  free(s);
  assert_string_equal(tc.ex[1].engine, "tcp");
  assert_true(tc.ex[1].final);
  assert_true(tc.ex[1].t0_ns >= tc.ex[0].t_ns);
  px_dns_answer_info_t info;
  assert_int_equal(px_dns_wire_parse(tc.ex[1].response, tc.ex[1].response_len, PX_DNS_TYPE_A, &info), 0);
  assert_false(info.truncated);
  assert_int_equal(info.naddresses, 12);
  json_decref(info.answers);

  px_dns_resolver_close(r);
  px_test_close_loop(&loop);
}

PX_TEST(dns_probe_silent_server_times_out) {
  uv_loop_t loop;
  px__col_t silent = {0}, dead = {0};
  (void)state;
  px_test_require_peers();
  uv_loop_init(&loop);
  px_dns_resolver_t *bad = px__resolver(&loop, "PX_DNS_BAD", 600);
  px_dns_resolver_t *nobody = px__resolver(&loop, "PX_DNS_DEAD", 600);
  px_dns_lookup(bad, "silent.bad.test", PX_DNS_TYPE_A, px__collect, &silent);
  px_dns_lookup(nobody, "www.example.test", PX_DNS_TYPE_A, px__collect, &dead);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(silent.n, 1);
  assert_int_equal(silent.ex[0].status, ARES_ETIMEOUT);
  assert_int_equal(dead.n, 1);
  /* Nothing listens: the kernel answers port-unreachable (refused) or the
   * query times out; either is a measurement, never a crash. */
  assert_true(dead.ex[0].status == ARES_ETIMEOUT || dead.ex[0].status == ARES_ECONNREFUSED);
  px_dns_resolver_close(bad);
  px_dns_resolver_close(nobody);
  px_test_close_loop(&loop);
}

PX_TEST(dns_probe_close_with_pending_lookups) {
  uv_loop_t loop;
  px__col_t first = {0}, pending1 = {0}, pending2 = {0}, late = {0};
  (void)state;
  px_test_require_peers();
  uv_loop_init(&loop);

  /* Close right away: every pending lookup reports EDESTRUCTION. */
  px_dns_resolver_t *r = px__resolver(&loop, "PX_DNS_BAD", 5000);
  px_dns_lookup(r, "silent.bad.test", PX_DNS_TYPE_A, px__collect, &pending1);
  px_dns_lookup(r, "truncated.bad.test", PX_DNS_TYPE_A, px__collect, &pending2);
  px_dns_resolver_close(r);
  assert_int_equal(pending1.finals, 1);
  assert_int_equal(pending1.ex[0].status, ARES_EDESTRUCTION);
  assert_int_equal(pending2.finals, 1);
  /* Until its handles have closed (next loop turn) the resolver still
   * exists, and refuses new lookups instead of crashing. */
  assert_int_equal(px_dns_lookup(r, "ok.bad.test", PX_DNS_TYPE_A, px__collect, &late), -ECANCELED);
  assert_int_equal(late.n, 0);

  /* Close from inside a callback while c-ares is on the stack. */
  memset(&pending1, 0, sizeof(pending1));
  r = px__resolver(&loop, "PX_DNS_BAD", 5000);
  first.close_on_final = r;
  px_dns_lookup(r, "servfail.bad.test", PX_DNS_TYPE_A, px__collect, &first);
  px_dns_lookup(r, "silent.bad.test", PX_DNS_TYPE_A, px__collect, &pending1);
  while (first.finals == 0)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(pending1.finals, 1);
  assert_int_equal(pending1.ex[0].status, ARES_EDESTRUCTION);
  px_test_close_loop(&loop);
}
