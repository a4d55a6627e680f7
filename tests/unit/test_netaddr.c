#include <errno.h>
#include <string.h>

#include "common/netaddr.h"
#include "common/target.h"
#include "tests/runner.h"

static void px__expect_hostport(const char *in, int family, const char *formatted) {
  struct sockaddr_storage ss;
  char out[PX_ADDRSTRLEN];
  if (px_addr_parse_hostport(in, 53, &ss) != 0)
    fail_msg("'%s' should parse", in);
  assert_int_equal(ss.ss_family, family);
  px_addr_format((struct sockaddr *)&ss, out, sizeof(out));
  assert_string_equal(out, formatted);
}

PX_TEST(netaddr_parse_hostport) {
  struct sockaddr_storage ss;
  (void)state;
  px__expect_hostport("192.0.2.1", AF_INET, "192.0.2.1:53");
  px__expect_hostport("192.0.2.1:5353", AF_INET, "192.0.2.1:5353");
  px__expect_hostport("[2001:db8::1]:853", AF_INET6, "[2001:db8::1]:853");
  px__expect_hostport("[2001:db8::1]", AF_INET6, "[2001:db8::1]:53");
  px__expect_hostport("2001:db8::1", AF_INET6, "[2001:db8::1]:53");
  px__expect_hostport("::1", AF_INET6, "[::1]:53");
  const char *bad[] = {"", "dns.example", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536",
                       "192.0.2.1:53x", "192.0.2.256", "[192.0.2.1]:53", "[2001:db8::1",
                       "[2001:db8::1]x", "2001:db8::1:53:", "[::1]:-1", "1.2.3", " 192.0.2.1",
                       "fe80::1%eth0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (px_addr_parse_hostport(bad[i], 53, &ss) != -EINVAL)
      fail_msg("'%s' should be refused", bad[i]);
  assert_int_equal(px_addr_parse_ip("203.0.113.5", &ss), 0);
  assert_int_equal(px_addr_port((struct sockaddr *)&ss), 0);
  assert_int_equal(px_addr_parse_ip("203.0.113.5:1", &ss), -EINVAL);
}

PX_TEST(netaddr_format) {
  struct sockaddr_storage a, b;
  char out[PX_ADDRSTRLEN];
  (void)state;
  assert_int_equal(px_addr_parse_ip("2001:DB8:0:0::7", &a), 0);
  px_addr_format_ip((struct sockaddr *)&a, out, sizeof(out));
  assert_string_equal(out, "2001:db8::7");
  px_addr_set_port(&a, 443);
  px_addr_format((struct sockaddr *)&a, out, sizeof(out));
  assert_string_equal(out, "[2001:db8::7]:443");
  assert_int_equal(px_addr_parse_ip("2001:db8::7", &b), 0);
  assert_true(px_addr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b));
  assert_int_equal(px_addr_parse_ip("192.0.2.7", &b), 0);
  assert_false(px_addr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b));
}

PX_TEST(netaddr_public_unicast) {
  (void)state;
  struct {
    const char *ip;
    bool pub;
    const char *why;
  } cases[] = {
      {"23.59.94.46", true, NULL}, /* iCloud's address of 2014 */
      {"8.8.4.5", true, NULL},
      {"1.0.0.0", true, NULL},
      {"100.63.255.255", true, NULL},
      {"100.64.0.1", false, "shared"},
      {"10.0.0.1", false, "private"},
      {"172.16.0.1", false, "private"},
      {"172.32.0.1", true, NULL},
      {"192.168.1.1", false, "private"},
      {"127.0.0.1", false, "loopback"},
      {"169.254.1.1", false, "link-local"},
      {"192.0.2.10", false, "documentation"},
      {"198.51.100.1", false, "documentation"},
      {"203.0.113.9", false, "documentation"},
      {"198.18.0.1", false, "benchmarking"},
      {"198.19.255.255", false, "benchmarking"},
      {"198.20.0.1", true, NULL},
      {"224.0.0.1", false, "multicast"},
      {"255.255.255.255", false, "reserved"},
      {"0.1.2.3", false, "this-network"},
      {"2a00:1450::1", true, NULL},
      {"2001:4860::8888", true, NULL},
      {"2001:db8::1", false, "documentation"},
      {"3fff::1", false, "documentation"},
      {"::1", false, "loopback"},
      {"::", false, "unspecified"},
      {"::ffff:8.8.8.9", false, "ipv4-mapped"},
      {"fd00::1", false, "unique-local"},
      {"fe80::1", false, "link-local"},
      {"ff02::1", false, "multicast"},
      {"100::1", false, "discard"},
      {"4000::1", false, "reserved"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct sockaddr_storage ss;
    const char *why = "unset";
    assert_int_equal(px_addr_parse_ip(cases[i].ip, &ss), 0);
    bool pub = px_addr_is_public((struct sockaddr *)&ss, &why);
    if (pub != cases[i].pub)
      fail_msg("%s: public=%d, expected %d", cases[i].ip, pub, cases[i].pub);
    if (cases[i].why == NULL)
      assert_null(why);
    else
      assert_string_equal(why, cases[i].why);
  }
}

PX_TEST(target_parse_valid) {
  px_target_t t;
  const char *reason = NULL;
  (void)state;
  assert_int_equal(px_target_parse("www.icloud.com", 443, &t, &reason), 0);
  assert_string_equal(t.input, "www.icloud.com");
  assert_string_equal(t.hostname, "www.icloud.com");
  assert_int_equal(t.port, 443);
  assert_int_equal(px_target_parse("Example.COM.:8443", 443, &t, &reason), 0);
  assert_string_equal(t.input, "Example.COM.:8443");
  assert_string_equal(t.hostname, "Example.COM");
  assert_int_equal(t.port, 8443);
  assert_int_equal(px_target_parse("_dmarc.example.org", 443, &t, &reason), 0);
  assert_int_equal(px_target_parse("xn--fiqs8s.example", 443, &t, &reason), 0);
  assert_int_equal(px_target_parse("localhost", 443, &t, &reason), 0);
  char longest[254];
  memset(longest, 'a', 253);
  for (int i = 63; i < 253; i += 64)
    longest[i] = '.';
  longest[253] = '\0';
  assert_int_equal(px_target_parse(longest, 443, &t, &reason), 0);
}

PX_TEST(target_parse_invalid) {
  px_target_t t;
  (void)state;
  const char *bad[] = {"", ":443", "example.com:", "example.com:0", "example.com:70000",
                       "example.com:44x", "exa mple.com", "example..com", ".example.com",
                       "-example.com", "example-.com", "192.0.2.1", "192.0.2.1:443",
                       "[2001:db8::1]:443", "2001:db8::1", "ex@mple.com", "example.com/path",
                       "ftp://example.com", "a.b.c.123"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *reason = NULL;
    if (px_target_parse(bad[i], 443, &t, &reason) != -EINVAL)
      fail_msg("'%s' should be refused", bad[i]);
    assert_non_null(reason);
  }
  char label[80];
  memset(label, 'a', 64);
  memcpy(label + 64, ".com", sizeof(".com"));
  const char *reason = NULL;
  assert_int_equal(px_target_parse(label, 443, &t, &reason), -EINVAL);
  assert_string_equal(reason, "label longer than 63 characters");
}
