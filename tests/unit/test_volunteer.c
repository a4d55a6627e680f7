/* The volunteer-facing pieces of the agent that need no network: scrubbing
 * our own addresses, budgets in config syntax, log levels, the config
 * loader's errors, the run lock and the run records. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "agent/cli/common.h"
#include "agent/cli/measure.h"
#include "agent/cli/config.h"
#include "agent/held.h"
#include "agent/runstate.h"
#include "agent/scrub.h"
#include "common/encoding.h"
#include "common/log.h"
#include "tests/runner.h"

static json_t *px__measurement(const char *answer_ip, const char *san, const char *raw_b64) {
  json_t *m = json_pack(
      "{s:s, s:s, s:{s:[{s:s, s:[{s:s, s:s}], s:s}], s:[{s:s, s:s, s:[{s:s, s:[s]}]}]}}",
      "probe_ip", "127.0.0.1", "input", "www.example.com", "test_keys", "queries",
      "resolver_address", "192.0.2.53:53", "answers", "answer_type", "A", "ipv4", answer_ip,
      "raw_response", raw_b64, "tls_handshakes", "address", "203.0.113.10:443",
      "failure_detail", "peer 198.51.100.7 said no; not 198.51.100.70 nor 1198.51.100.7",
      "peer_certificates", "data", "AAAA", "san", san);
  assert_non_null(m);
  return m;
}

PX_TEST(scrub_text_and_structure) {
  (void)state;
  px_scrub_t s = {0};
  char why[256];
  size_t n;
  assert_int_equal(px_scrub_add(&s, "198.51.100.7"), 0);
  assert_int_equal(px_scrub_add(&s, "127.0.0.1"), 0); /* ignored: identifies nobody */
  assert_int_equal(px_scrub_add(&s, "2001:db8::7"), 0);
  assert_int_equal(px_scrub_add(&s, "not an address"), -EINVAL);
  assert_int_equal(s.n, 2);

  /* Free text is scrubbed, whole tokens only; probe_ip stays. */
  json_t *m = px__measurement("203.0.113.10", "IP Address:2001:DB8::7 and 2001:db8::7", "AAAA");
  assert_int_equal(px_scrub_measurement(&s, m, &n, why, sizeof(why)), 0);
  json_t *h = json_array_get(json_object_get(json_object_get(m, "test_keys"), "tls_handshakes"), 0);
  assert_string_equal(json_string_value(json_object_get(h, "failure_detail")),
                      "peer [scrubbed] said no; not 198.51.100.70 nor 1198.51.100.7");
  json_t *san = json_object_get(json_array_get(json_object_get(h, "peer_certificates"), 0), "san");
  /* The canonical text form is what is searched for. */
  assert_string_equal(json_string_value(json_array_get(san, 0)),
                      "IP Address:2001:DB8::7 and [scrubbed]");
  assert_string_equal(json_string_value(json_object_get(m, "probe_ip")), "127.0.0.1");
  assert_int_equal(n, 2);
  json_decref(m);

  /* Our address as a DNS answer: the measurement is about us. */
  m = px__measurement("198.51.100.7", "x", "AAAA");
  assert_int_equal(px_scrub_measurement(&s, m, &n, why, sizeof(why)), 1);
  assert_non_null(strstr(why, "ipv4"));
  json_decref(m);

  /* Inside a raw DNS answer (198.51.100.7 = c6 33 64 07). */
  uint8_t raw[] = {0x00, 0x01, 0xc6, 0x33, 0x64, 0x07, 0xff};
  char b64[32];
  px_base64_encode(raw, sizeof(raw), b64);
  m = px__measurement("203.0.113.10", "x", b64);
  assert_int_equal(px_scrub_measurement(&s, m, &n, why, sizeof(why)), 1);
  assert_non_null(strstr(why, "raw_response"));
  json_decref(m);

  /* Nothing of ours: untouched. */
  px_scrub_t none = {0};
  m = px__measurement("198.51.100.7", "x", b64);
  assert_int_equal(px_scrub_measurement(&none, m, &n, why, sizeof(why)), 0);
  assert_int_equal(n, 0);
  json_decref(m);
}

PX_TEST(budget_units) {
  (void)state;
  uint64_t v;
  assert_int_equal(px_parse_duration("90", &v), 0);
  assert_int_equal(v, 90);
  assert_int_equal(px_parse_duration("15m", &v), 0);
  assert_int_equal(v, 900);
  assert_int_equal(px_parse_duration("2h", &v), 0);
  assert_int_equal(v, 7200);
  assert_int_equal(px_parse_duration("1d", &v), 0);
  assert_int_equal(v, 86400);
  assert_int_equal(px_parse_size("500k", &v), 0);
  assert_int_equal(v, 512000);
  assert_int_equal(px_parse_size("20M", &v), 0);
  assert_int_equal(v, 20971520);
  assert_int_equal(px_parse_size("1G", &v), 0);
  assert_int_equal(v, 1073741824);
  const char *bad[] = {"", "-1", "1x", "1mm", "m", " 1", "1 m", "99999999999999999999",
                       "18446744073709551615k"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(px_parse_duration(bad[i], &v), -EINVAL);
    assert_int_equal(px_parse_size(bad[i], &v), -EINVAL);
  }
  int level;
  assert_int_equal(px_log_level_parse("warning", &level), 0);
  assert_int_equal(level, PX_LOG_WARNING);
  assert_int_equal(px_log_level_parse("DEBUG", &level), 0);
  assert_int_equal(level, PX_LOG_DEBUG);
  assert_int_equal(px_log_level_parse("7", &level), 0);
  assert_int_equal(px_log_level_parse("loud", &level), -EINVAL);
  assert_string_equal(px_log_level_name(PX_LOG_NOTICE), "notice");
}

/* Loads text as a config; returns the error ("" when it loaded). */
static int px__load(const char *text, px_measure_opts_t *o, px_agent_opts_t *a, px_config_t *c,
                    char *err, size_t errlen) {
  char *d = px_test_tmpdir(), path[512];
  snprintf(path, sizeof(path), "%s/parallax.conf", d);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  px_measure_opts_init(o);
  memset(a, 0, sizeof(*a));
  memset(c, 0, sizeof(*c));
  err[0] = '\0';
  int rc = px_config_load(path, c, o, a, err, errlen);
  px_test_rmrf(d);
  free(d);
  return rc;
}

PX_TEST(config_keys_and_errors) {
  (void)state;
  px_measure_opts_t o;
  px_agent_opts_t a;
  px_config_t c;
  char err[512];
  assert_int_equal(px__load("# comment\n[parallax]\ncollector = https://a.example https://b.example\n"
                            "upload = no\nmax_targets = 5\nmax-runtime = 15m\nmax_bytes = 20M\n"
                            "log_level = warning\nsystem_resolver = no\nresolver = 192.0.2.1\n"
                            "public_address = unknown\nprobe_cc = de\ntargets = a.example "
                            "from-collector\n",
                            &o, &a, &c, err, sizeof(err)),
                   0);
  assert_int_equal(a.ncollectors, 2);
  assert_string_equal(a.collector, "https://a.example");
  assert_string_equal(a.collectors[1], "https://b.example");
  assert_true(a.no_upload);
  assert_int_equal(a.max_targets, 5);
  assert_int_equal(a.max_runtime_s, 900);
  assert_int_equal(a.max_bytes, 20971520);
  assert_int_equal(a.log_level, PX_LOG_WARNING);
  assert_int_equal(o.system_resolver, 0);
  assert_int_equal(o.nresolvers, 1);
  assert_string_equal(o.probe_cc, "DE");
  assert_string_equal(a.public_address, "unknown");
  assert_int_equal(c.ntargets, 1);
  assert_false(o.no_tls);
  px_config_free(&c);
  px_measure_opts_free(&o);

  /* tls = off is --no-tls, in each spelling a volunteer might use. */
  static const char *const dns_only[] = {"tls = off\n", "tls = no  # DNS only\n",
                                         "no_tls = yes\n"};
  for (size_t i = 0; i < sizeof(dns_only) / sizeof(dns_only[0]); i++) {
    assert_int_equal(px__load(dns_only[i], &o, &a, &c, err, sizeof(err)), 0);
    assert_true(o.no_tls);
    px_config_free(&c);
    px_measure_opts_free(&o);
  }
  assert_int_equal(px__load("tls = on\n", &o, &a, &c, err, sizeof(err)), 0);
  assert_false(o.no_tls);
  px_config_free(&c);
  px_measure_opts_free(&o);

  struct {
    const char *text, *expect;
  } bad[] = {
      {"colector = https://x\n", ":1: unknown key 'colector'"},
      {"[parallax]\n\nmax_targets = lots\n", ":3: --max-targets"},
      {"[budget]\nmax_bytes = 1M\n", ":2: unknown section [budget]"},
      {"upload = perhaps\n", ":1: upload: expected yes or no"},
      {"collector = ftp://x\n", ":1: --collector"},
      {"log_level = chatty\n", ":1: --log-level"},
      {"public_address = my-house\n", ":1: --public-address"},
      {"max_runtime = 0\n", ":1: --max-runtime"},
      {"just words\n", ":1: not an INI line"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(px__load(bad[i].text, &o, &a, &c, err, sizeof(err)), -EINVAL);
    if (strstr(err, bad[i].expect) == NULL || strstr(err, "parallax.conf") == NULL)
      fail_msg("config %zu: '%s' does not say '%s' with the file name", i, err, bad[i].expect);
    px_config_free(&c);
    px_measure_opts_free(&o);
  }
}

PX_TEST(run_lock_records_and_cursor) {
  (void)state;
  char *d = px_test_tmpdir(), err[256];
  int fd = -1, fd2 = -1;
  pid_t holder;
  assert_int_equal(px_run_lock(d, &fd, &holder, err, sizeof(err)), 0);
  /* A second taker (another open file description) is refused and told
   * who holds it. */
  assert_int_equal(px_run_lock(d, &fd2, &holder, err, sizeof(err)), -EWOULDBLOCK);
  assert_int_equal(holder, getpid());
  px_run_unlock(fd);
  assert_int_equal(px_run_lock(d, &fd2, &holder, err, sizeof(err)), 0);
  px_run_unlock(fd2);

  assert_int_equal(px_consent_load(d, NULL), -ENOENT);
  json_t *marker = json_pack("{s:i}", "consent_version", 1), *back = NULL;
  assert_int_equal(px_consent_save(d, marker), 0);
  assert_int_equal(px_consent_load(d, &back), 0);
  assert_int_equal(json_integer_value(json_object_get(back, "consent_version")), 1);
  json_decref(back);
  json_decref(marker);
  assert_int_equal(px_consent_withdraw(d), 0);
  assert_int_equal(px_consent_load(d, NULL), -ENOENT);

  for (int i = 0; i < PX_RUNS_KEPT + 7; i++) {
    json_t *r = json_pack("{s:i}", "n", i);
    assert_int_equal(px_runs_append(d, r), 0);
    json_decref(r);
  }
  json_t *runs = px_runs_load(d);
  assert_int_equal(json_array_size(runs), PX_RUNS_KEPT);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(runs, 0), "n")), 7);
  json_decref(runs);

  assert_int_equal(px_cursor_load(d), 0);
  assert_int_equal(px_cursor_save(d, 42), 0);
  assert_int_equal(px_cursor_load(d), 42);

  for (int i = 0; i < PX_PUBLIC_KEPT + 3; i++) {
    char ip[32];
    snprintf(ip, sizeof(ip), "198.51.100.%d", i);
    assert_int_equal(px_public_address_remember(d, ip), 0);
  }
  assert_int_equal(px_public_address_remember(d, "198.51.100.5"), 0);
  json_t *seen = px_public_addresses_load(d);
  assert_int_equal(json_array_size(seen), PX_PUBLIC_KEPT);
  assert_string_equal(json_string_value(json_array_get(seen, PX_PUBLIC_KEPT - 1)), "198.51.100.5");
  json_decref(seen);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(held_measurements) {
  (void)state;
  char *d = px_test_tmpdir(), dir[512];
  snprintf(dir, sizeof(dir), "%s/held", d);
  assert_int_equal(px_held_count(dir), 0);
  assert_int_equal(px_held_add(dir, "{\"a\":1}", 7, "about this machine"), 0);
  assert_int_equal(px_held_add(dir, "{\"a\":2}", 7, PX_HELD_UNKNOWN_PUBLIC ": x"), 0);
  assert_int_equal(px_held_count(dir), 2);
  px_test_rmrf(d);
  free(d);
}
