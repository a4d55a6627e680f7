/* The collector's pure parts: query strings, proxies, measurement rules. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "collector/http/html.h"
#include "collector/http/netacl.h"
#include "collector/http/observations.h"
#include "collector/http/ooni.h"
#include "collector/http/query.h"
#include "collector/store/store.h"
#include "collector/ingest/validate.h"
#include "common/netaddr.h"
#include "tests/runner.h"

/* The overview's one escaping function: nothing that could end a text
 * node or a quoted attribute (either quote) survives; everything else,
 * bytes beyond ASCII included, is kept as it was. */
PX_TEST(html_escape_hostile_strings) {
  (void)state;
  static const char *const cases[][2] = {
      {"www.example.test", "www.example.test"},
      {"\"><script>alert('x')</script>", "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"},
      {"a&amp;b", "a&amp;amp;b"},
      {"CN' onmouseover='x", "CN&#39; onmouseover=&#39;x"},
      {"caf\xc3\xa9 \xe2\x80\x94", "caf\xc3\xa9 \xe2\x80\x94"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(px_html_escape(f, cases[i][0]), 0);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(buf, cases[i][1]);
    free(buf);
  }
}

PX_TEST(query_string_parsing) {
  px_query_t q;
  (void)state;
  assert_int_equal(px_query_parse("key_id=SHA256:ab+c/d%2Bx&probe_cc=CN&empty=&flag", &q), 0);
  assert_int_equal(q.n, 4);
  /* '+' stays '+': key ids contain it. */
  assert_string_equal(px_query_get(&q, "key_id"), "SHA256:ab+c/d+x");
  assert_string_equal(px_query_get(&q, "probe_cc"), "CN");
  assert_string_equal(px_query_get(&q, "empty"), "");
  assert_string_equal(px_query_get(&q, "flag"), "");
  assert_null(px_query_get(&q, "missing"));
  px_query_free(&q);
  assert_int_equal(px_query_parse(NULL, &q), 0);
  assert_int_equal(q.n, 0);
  assert_int_equal(px_query_parse("&&a=1&&", &q), 0);
  assert_int_equal(q.n, 1);
  px_query_free(&q);
  assert_int_equal(px_query_parse("domain=%77ww.example", &q), 0);
  assert_string_equal(px_query_get(&q, "domain"), "www.example");
  px_query_free(&q);
  const char *bad[] = {"a=%", "a=%4", "a=%G1", "a=%00", "a=1&a=2", "=x", "%zz=1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (px_query_parse(bad[i], &q) != -EINVAL)
      fail_msg("'%s' should be refused", bad[i]);
  char enc[64];
  px_percent_encode("SHA256:a+b/c d", enc, sizeof(enc));
  assert_string_equal(enc, "SHA256%3Aa%2Bb%2Fc%20d");
}

PX_TEST(cursor_roundtrip) {
  char c[64];
  int64_t t, id;
  (void)state;
  px_cursor_encode(1413808496, 42, c, sizeof(c));
  assert_int_equal(px_cursor_decode(c, &t, &id), 0);
  assert_int_equal(t, 1413808496);
  assert_int_equal(id, 42);
  const char *bad[] = {"", "12", "12_", "_3", "a_b", "1_2_3", "1_-2"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(px_cursor_decode(bad[i], &t, &id), -EINVAL);
}

static void px__peer(const char *ip, struct sockaddr_storage *ss) {
  assert_int_equal(px_addr_parse_ip(ip, ss), 0);
}

static const char *px__client(const char *peer, const char *xff, px_cidr_t *t, size_t n) {
  static char out[64];
  struct sockaddr_storage p, c;
  px__peer(peer, &p);
  px_client_address((struct sockaddr *)&p, xff, t, n, &c);
  px_addr_format_ip((struct sockaddr *)&c, out, sizeof(out));
  return out;
}

PX_TEST(trusted_proxy_client_address) {
  px_cidr_t t[2];
  (void)state;
  assert_int_equal(px_cidr_parse("127.0.0.1/32", &t[0]), 0);
  assert_int_equal(px_cidr_parse("2001:db8::/32", &t[1]), 0);
  const char *bad[] = {"", "127.0.0.1/33", "1.2.3/8", "::/129", "x/1", "10.0.0.0/"};
  px_cidr_t junk;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(px_cidr_parse(bad[i], &junk), -EINVAL);
  /* Not behind a trusted proxy: the header is ignored. */
  assert_string_equal(px__client("203.0.113.9", "198.51.100.1", t, 2), "203.0.113.9");
  /* Behind nginx: the right-most untrusted hop. */
  assert_string_equal(px__client("127.0.0.1", "198.51.100.1", t, 2), "198.51.100.1");
  /* A client cannot pick its address by writing the header itself. */
  assert_string_equal(px__client("127.0.0.1", "192.0.2.66, 198.51.100.1", t, 2), "198.51.100.1");
  /* Chains of trusted proxies are walked through. */
  assert_string_equal(px__client("127.0.0.1", "198.51.100.1, 2001:db8::5", t, 2), "198.51.100.1");
  /* Garbage in the header: the last address that could be believed. */
  assert_string_equal(px__client("127.0.0.1", "not-an-ip", t, 2), "127.0.0.1");
  assert_string_equal(px__client("127.0.0.1", "", t, 2), "127.0.0.1");
  assert_string_equal(px__client("127.0.0.1", NULL, t, 2), "127.0.0.1");
}

/* Whether a and b share one allowance at prefix bits. */
static bool px__same_key(const char *a, const char *b, unsigned bits) {
  struct sockaddr_storage x, y;
  int fx, fy;
  unsigned char kx[16], ky[16];
  px__peer(a, &x);
  px__peer(b, &y);
  px_limit_key((struct sockaddr *)&x, bits, &fx, kx);
  px_limit_key((struct sockaddr *)&y, bits, &fy, ky);
  return fx == fy && memcmp(kx, ky, 16) == 0;
}

PX_TEST(client_limit_key_prefix) {
  (void)state;
  /* /64: one subscriber's addresses share an allowance, the next /64 not. */
  assert_true(px__same_key("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", 64));
  assert_false(px__same_key("2001:db8:1:2::1", "2001:db8:1:3::1", 64));
  /* 128: every address on its own; 1: half the address space together. */
  assert_false(px__same_key("2001:db8::1", "2001:db8::2", 128));
  assert_true(px__same_key("2001:db8::1", "2001:db8::1", 128));
  assert_true(px__same_key("2001:db8::1", "3fff::1", 1));
  assert_false(px__same_key("2001:db8::1", "8000::1", 1));
  /* A prefix that ends inside a byte: /60 keeps the top nibble of byte 7. */
  assert_true(px__same_key("2001:db8:0:10::", "2001:db8:0:1f::", 60));
  assert_false(px__same_key("2001:db8:0:10::", "2001:db8:0:20::", 60));
  /* The masked bytes are zero whatever the address had there. */
  struct sockaddr_storage ss;
  int family;
  unsigned char key[16], want[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x10};
  px__peer("2001:db8:0:1f:aaaa:bbbb:cccc:dddd", &ss);
  px_limit_key((struct sockaddr *)&ss, 60, &family, key);
  assert_int_equal(family, AF_INET6);
  assert_memory_equal(key, want, 16);
  /* IPv4 whole, whatever the IPv6 prefix; IPv4-mapped is the same client
   * (and not all of IPv4 in one ::ffff:0:0/64 bucket). */
  assert_false(px__same_key("192.0.2.1", "192.0.2.2", 1));
  assert_true(px__same_key("192.0.2.1", "::ffff:192.0.2.1", 64));
  assert_false(px__same_key("::ffff:192.0.2.1", "::ffff:198.51.100.1", 64));
  /* ::1 is not IPv4. */
  assert_false(px__same_key("::1", "0.0.0.1", 128));
}

/* A small valid measurement, mutated by each case below. */
static const char px__good[] =
    "{\"data_format_version\":\"0.2.0\",\"measurement_start_time\":\"2014-10-20 12:00:00\","
    "\"test_start_time\":\"2014-10-20 11:59:59\",\"probe_cc\":\"CN\",\"probe_asn\":\"AS4134\","
    "\"probe_network_name\":null,\"probe_ip\":\"127.0.0.1\",\"resolver_ip\":null,"
    "\"resolver_asn\":\"AS0\",\"resolver_network_name\":null,\"software_name\":\"parallax\","
    "\"software_version\":\"0.1.0\",\"test_name\":\"tls_cert_consistency\",\"test_version\":\"0.1.0\","
    "\"test_runtime\":0.5,\"input\":\"WWW.iCloud.com:443\","
    "\"report_id\":\"20141020T115959Z_tlscertconsistency_CN_4134_abc123\","
    "\"annotations\":{\"engine_name\":\"parallax\",\"engine_version\":\"0.1.0\","
    "\"libuv_version\":\"1.44.2\",\"openssl_version\":\"3.0\",\"c_ares_version\":\"1.18.1\","
    "\"jansson_version\":\"2.14\",\"trust_store\":\"system\"},"
    "\"test_keys\":{\"queries\":[],\"tcp_connect\":[],\"tls_handshakes\":[],\"skipped_addresses\":[]}}";

static int px__validate_variant(const char *find, const char *replace, char *why) {
  char buf[4096];
  const char *at = strstr(px__good, find);
  assert_non_null(at);
  size_t pre = (size_t)(at - px__good);
  snprintf(buf, sizeof(buf), "%.*s%s%s", (int)pre, px__good, replace, at + strlen(find));
  px_measurement_meta_t meta;
  return px_validate_measurement(buf, strlen(buf), time(NULL), &meta, why, 256, NULL, 0);
}

PX_TEST(measurement_validation_rules) {
  px_measurement_meta_t meta;
  char why[256];
  (void)state;
  assert_int_equal(px_validate_measurement(px__good, strlen(px__good), time(NULL), &meta, why, sizeof(why), NULL, 0), 0);
  assert_string_equal(meta.probe_cc, "CN");
  assert_string_equal(meta.probe_asn, "AS4134");
  assert_string_equal(meta.domain, "www.icloud.com");
  assert_string_equal(meta.input, "WWW.iCloud.com:443");
  assert_int_equal(meta.measurement_start_time, 1413806400);

  struct {
    const char *find, *replace, *why;
  } cases[] = {
      {"\"probe_ip\":\"127.0.0.1\"", "\"probe_ip\":\"192.0.2.7\"", "probe_ip"},
      {"\"probe_cc\":\"CN\"", "\"probe_cc\":\"cn\"", "probe_cc"},
      {"\"probe_asn\":\"AS4134\"", "\"probe_asn\":\"4134\"", "probe_asn"},
      {"\"probe_asn\":\"AS4134\"", "\"probe_asn\":\"BS4134\"", "probe_asn"},
      {"\"data_format_version\":\"0.2.0\"", "\"data_format_version\":\"0.3.0\"", "data_format_version"},
      {"12:00:00", "12:00", "measurement_start_time"},
      {"\"test_runtime\":0.5", "\"test_runtime\":-1", "test_runtime"},
      {"\"input\":\"WWW.iCloud.com:443\"", "\"input\":\"192.0.2.1\"", "input"},
      {"\"test_name\":\"tls_cert_consistency\"", "\"test_name\":\"web_connectivity\"", "test_name"},
      {"\"engine_name\":\"parallax\"", "\"engine_name\":1", "annotations.engine_name"},
      {"\"engine_name\":\"parallax\",", "", "missing \"engine_name\""},
      {"\"queries\":[]", "\"queries\":{}", "queries"},
      {"\"skipped_addresses\":[]", "\"skipped_addresses\":[],\"extra\":[]", "test_keys.extra: unknown member"},
      {"\"test_runtime\":0.5", "\"test_runtime\":0.5,\"probe_city\":\"x\"", "probe_city: unknown member"},
      {"\"queries\":[]", "\"queries\":[{\"engine\":\"doh\"}]", "test_keys.queries[0].engine"},
      {"\"tls_handshakes\":[]",
       "\"tls_handshakes\":[{\"address\":\"192.0.2.1:443\",\"server_name\":\"x\",\"tls_version\":\"\","
       "\"cipher_suite\":\"\",\"negotiated_protocol\":\"\",\"no_tls_verify\":false,"
       "\"peer_certificates\":[{\"format\":\"base64\",\"data\":\"MAo=\",\"sha256\":\"00\"}],"
       "\"verification\":null,\"server_alert\":null,\"failure\":null,\"failure_detail\":null,"
       "\"t0\":0,\"t\":0,\"transaction_id\":1}]",
       "sha256"},
      {"\"probe_cc\":\"CN\"", "\"probe_cc\":\"CN\",\"probe_cc\":\"US\"", "JSON"},
      {"\"probe_asn\":\"AS4134\"", "\"probe_asn\":\"AS04134\"", "probe_asn"},
      {"\"probe_asn\":\"AS4134\"", "\"probe_asn\":\"AS4294967296\"", "probe_asn"},
      {"\"probe_cc\":\"CN\"", "\"probe_cc\": \"CN\"", "compact"},
      /* Stored, but unreadable for the analysis (Jansson): refused. */
      {"\"test_runtime\":0.5", "\"test_runtime\":1e999", "out of range"},
      {"\"test_runtime\":0.5", "\"test_runtime\":18446744073709551616", "out of range"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    why[0] = '\0';
    if (px__validate_variant(cases[i].find, cases[i].replace, why) != -EINVAL)
      fail_msg("case %zu (%s) should be refused", i, cases[i].replace);
    if (strstr(why, cases[i].why) == NULL)
      fail_msg("case %zu: reason '%s' does not mention '%s'", i, why, cases[i].why);
  }
  const char *raw_bad[] = {"", "[]", "null", "{", "{\"a\":1}\n", "{\"a\":1}"};
  for (size_t i = 0; i < sizeof(raw_bad) / sizeof(raw_bad[0]); i++)
    assert_int_equal(px_validate_measurement(raw_bad[i], strlen(raw_bad[i]), time(NULL), &meta, why, sizeof(why), NULL, 0),
                     -EINVAL);
  char with_nl[sizeof(px__good) + 1];
  snprintf(with_nl, sizeof(with_nl), "%s\n", px__good);
  assert_int_equal(px_validate_measurement(with_nl, strlen(with_nl), time(NULL), &meta, why, sizeof(why), NULL, 0), -EINVAL);
}

/* format=ooni's splice (collector/http/ooni.c): the uid first, then the
 * signed bytes unchanged; anything upload would not have stored gives no
 * line at all. */
PX_TEST(ooni_line_splices_the_signed_bytes) {
  (void)state;
  const char *uid = "20141020120000_CN_tlscertconsistency_0123456789abcdef";
  char *line = NULL;
  size_t n = 0;
  const char *content = "{\"a\":\"caf\\u00e9 a\\/b\",\"n\":3e-06,\"o\":{\"measurement_uid\":1}}";
  assert_int_equal(px_ooni_line(uid, content, strlen(content), &line, &n), 0);
  assert_string_equal(line, "{\"measurement_uid\":\"20141020120000_CN_tlscertconsistency_"
                            "0123456789abcdef\",\"a\":\"caf\\u00e9 a\\/b\",\"n\":3e-06,"
                            "\"o\":{\"measurement_uid\":1}}");
  assert_int_equal(n, strlen(line));
  free(line);
  assert_int_equal(px_ooni_line(uid, "{}", 2, &line, &n), 0);
  assert_string_equal(line, "{\"measurement_uid\":\"20141020120000_CN_tlscertconsistency_"
                            "0123456789abcdef\"}");
  free(line);
  const char *bad[] = {
      "",   "{",    "[]",     "\"s\"",       "{\"a\":1}\n", "{\"a\": 1}", "{\"a\":1}{\"b\":2}",
      "{\"a\":1,\"a\":2}",    "{\"measurement_uid\":\"x\"}", "{\"measurement\\u005fuid\":\"x\"}",
      "{\"a\":\"\x01\"}",     "{\"a\":\"\xff\"}",           "\n{\"a\":1}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    line = (char *)"unchanged";
    if (px_ooni_line(uid, bad[i], strlen(bad[i]), &line, &n) != -EINVAL || line != NULL)
      fail_msg("content %zu should give no line", i);
  }
  const char *bad_uid[] = {"", "a\"b", "a\\b", "a b", "caf\xc3\xa9"};
  for (size_t i = 0; i < sizeof(bad_uid) / sizeof(bad_uid[0]); i++)
    if (px_ooni_line(bad_uid[i], "{}", 2, &line, &n) != -EINVAL)
      fail_msg("uid %zu should be refused", i);
  char long_uid[PX_UID_MAX + 1];
  memset(long_uid, 'a', PX_UID_MAX);
  long_uid[PX_UID_MAX] = '\0';
  assert_int_equal(px_ooni_line(long_uid, "{}", 2, &line, &n), -EINVAL);
}

/* observations.csv's rows (collector/http/observations.c): RFC 4180
 * quoting of whatever an agent wrote, an IPv6 address split from its
 * port, a query without answers as one row; not an object: nothing. */
PX_TEST(observations_csv_quotes_and_splits) {
  (void)state;
  const char *m =
      "{\"measurement_start_time\":\"2014-10-20 12:00:00\",\"probe_cc\":\"CN\","
      "\"probe_asn\":\"AS4134\",\"input\":\"www.icloud.com\",\"test_keys\":{"
      "\"queries\":[{\"engine\":\"udp\",\"resolver_address\":\"[2001:db8::53]:53\","
      "\"hostname\":\"www.icloud.com\",\"query_type\":\"AAAA\",\"rcode\":3,\"answers\":[],"
      "\"failure\":\"dns_nxdomain_error\",\"t0\":0.5,\"t\":0.25,\"transaction_id\":1}],"
      "\"tls_handshakes\":[{\"address\":\"[2001:db8::1]:443\",\"server_name\":\"www.icloud.com\","
      "\"tls_version\":\"TLSv1.2\",\"cipher_suite\":\"x\",\"failure\":\"ssl_unknown_authority\","
      "\"peer_certificates\":[{\"sha256\":\"ab\",\"subject\":\"CN=a,O=\\\"q\\\"\\nx\","
      "\"issuer\":\"CN=a\"}],\"verification\":{\"ok\":false,\"hostname_match\":true},"
      "\"t0\":1,\"t\":2,\"transaction_id\":2}]}}";
  char *out = NULL;
  size_t len = 0, cap = 0;
  assert_int_equal(px_observations_csv("u1", m, strlen(m), &out, &len, &cap), 0);
  assert_string_equal(
      out,
      "u1,2014-10-20 12:00:00,CN,AS4134,www.icloud.com,dns_answer,1,0.5,0.25,udp,"
      "[2001:db8::53]:53,www.icloud.com,AAAA,3,,,,,,,,,dns_nxdomain_error,,,,,\r\n"
      "u1,2014-10-20 12:00:00,CN,AS4134,www.icloud.com,tls_handshake,2,1,2,,,,,,,,,2001:db8::1,"
      "443,www.icloud.com,TLSv1.2,x,ssl_unknown_authority,ab,\"CN=a,O=\"\"q\"\"\nx\",CN=a,false,"
      "true\r\n");
  assert_int_equal(px_observations_csv("u2", "[1]", 3, &out, &len, &cap), -EINVAL);
  assert_int_equal(px_observations_csv("u2", "{", 1, &out, &len, &cap), -EINVAL);
  free(out);
}
