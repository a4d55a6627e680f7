/* The run loop end to end on the local test world: targets in, one
 * measurement per target out, resources bounded by --parallel. */
#include <dirent.h>
#include <string.h>

#include "agent/engine.h"
#include "common/netaddr.h"
#include "tests/runner.h"

typedef struct {
  json_t *out; /* array of measurements */
  unsigned max_inflight;
  int base_fds, max_fds;
} px__sink_t;

static int px__emit(void *data, json_t *m) {
  px__sink_t *s = data;
  json_array_append(s->out, m);
  return 0;
}

static int px__count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static void px__progress(void *data, size_t done, size_t total, unsigned inflight) {
  px__sink_t *s = data;
  (void)done;
  (void)total;
  if (inflight > s->max_inflight)
    s->max_inflight = inflight;
  int fds = px__count_fds();
  if (fds > s->max_fds)
    s->max_fds = fds;
}

static void px__addr(const char *ip_key, const char *port_key, struct sockaddr_storage *ss) {
  char text[128];
  snprintf(text, sizeof(text), "%s:%s", px_test_peer(ip_key), port_key ? px_test_peer(port_key) : "1");
  assert_int_equal(px_addr_parse_hostport(text, 53, ss), 0);
}

static json_t *px__find(json_t *arr, const char *input) {
  size_t i;
  json_t *m;
  json_array_foreach(arr, i, m)
    if (strcmp(json_string_value(json_object_get(m, "input")), input) == 0)
      return m;
  fail_msg("no measurement for %s", input);
  return NULL;
}

static void px__run(px_engine_config_t *cfg, px__sink_t *sink, const char *const *inputs,
                    size_t n) {
  px_target_t *targets = calloc(n, sizeof(*targets));
  for (size_t i = 0; i < n; i++) {
    const char *reason;
    assert_int_equal(px_target_parse(inputs[i], 8443, &targets[i], &reason), 0);
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  sink->base_fds = sink->max_fds = px__count_fds();
  assert_int_equal(px_engine_run(&loop, cfg, targets, n), 0);
  px_test_close_loop(&loop);
  free(targets);
}

PX_TEST(engine_runs_targets) {
  px_tls_context_t tls;
  px_run_info_t run;
  char err[256];
  struct sockaddr_storage resolver, mitm;
  px__sink_t sink = {.out = json_array()};
  (void)state;
  px_test_require_peers();
  assert_int_equal(px_tls_context_init(&tls, px_test_peers_path("pki/ca.pem"), err, sizeof(err)), 0);
  assert_int_equal(px_run_info_init(&run, "DE", "AS3320", time(NULL)), 0);
  px__addr("PX_DNS_GOOD", "PX_DNS_PORT", &resolver);
  px__addr("PX_TLS_MITM", NULL, &mitm);

  px_engine_config_t cfg = {
      .tls = &tls, .resolvers = &resolver, .nresolvers = 1,
      .timeout_ms = 2000, .parallel = 2, .allow_nonpublic = true, .run = &run,
      .emit = px__emit, .emit_data = &sink, .progress = px__progress, .progress_data = &sink,
  };
  const char *inputs[] = {"www.example.test", "expired.example.test", "nx.example.test",
                          "nonpublic.example.test:9"};
  /* nonpublic.example.test resolves to private and link-local addresses:
   * with allow_nonpublic off for this run nothing of it is contacted. */
  cfg.allow_nonpublic = false;
  px__run(&cfg, &sink, inputs + 3, 1);
  json_t *np = px__find(sink.out, "nonpublic.example.test:9");
  json_t *keys = json_object_get(np, "test_keys");
  assert_int_equal(json_array_size(json_object_get(keys, "tcp_connect")), 0);
  assert_int_equal(json_array_size(json_object_get(keys, "skipped_addresses")), 3);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(keys, "skipped_addresses"), 0), "reason")),
                      "private");

  cfg.allow_nonpublic = true;
  json_array_clear(sink.out);
  px__run(&cfg, &sink, inputs, 3);
  assert_int_equal(json_array_size(sink.out), 3);
  assert_true(sink.max_inflight <= 2);

  json_t *www = px__find(sink.out, "www.example.test");
  keys = json_object_get(www, "test_keys");
  assert_string_equal(json_string_value(json_object_get(www, "probe_cc")), "DE");
  assert_string_equal(json_string_value(json_object_get(www, "report_id")), run.report_id);
  assert_int_equal(json_array_size(json_object_get(keys, "queries")), 2);
  assert_int_equal(json_array_size(json_object_get(keys, "tcp_connect")), 2);
  assert_int_equal(json_array_size(json_object_get(keys, "tls_handshakes")), 2);
  /* One transaction id per flow: the A answer's id is carried by the TCP
   * connect and the handshake to the address it returned. */
  json_t *q;
  size_t i;
  json_int_t a_txid = 0;
  json_array_foreach(json_object_get(keys, "queries"), i, q)
    if (strcmp(json_string_value(json_object_get(q, "query_type")), "A") == 0)
      a_txid = json_integer_value(json_object_get(q, "transaction_id"));
  json_t *h;
  bool seen = false;
  json_array_foreach(json_object_get(keys, "tls_handshakes"), i, h)
    if (strncmp(json_string_value(json_object_get(h, "address")), px_test_peer("PX_TLS_GOOD"),
                strlen(px_test_peer("PX_TLS_GOOD"))) == 0) {
      assert_int_equal(json_integer_value(json_object_get(h, "transaction_id")), a_txid);
      seen = true;
    }
  assert_true(seen);

  json_t *nx = px__find(sink.out, "nx.example.test");
  assert_int_equal(json_array_size(json_object_get(json_object_get(nx, "test_keys"), "tcp_connect")), 0);

  /* No resolver at all: only --address, port from the target. */
  json_array_clear(sink.out);
  cfg.nresolvers = 0;
  cfg.addresses = &mitm;
  cfg.naddresses = 1;
  const char *icloud[] = {"www.icloud.com"};
  px__run(&cfg, &sink, icloud, 1);
  json_t *m = px__find(sink.out, "www.icloud.com");
  keys = json_object_get(m, "test_keys");
  assert_int_equal(json_array_size(json_object_get(keys, "queries")), 0);
  h = json_array_get(json_object_get(keys, "tls_handshakes"), 0);
  assert_string_equal(json_string_value(json_object_get(h, "failure")), "ssl_unknown_authority");

  json_decref(sink.out);
  px_run_info_free(&run);
  px_tls_context_free(&tls);
}

PX_TEST(engine_bounded_resources) {
  px_tls_context_t tls;
  px_run_info_t run;
  char err[256];
  struct sockaddr_storage addrs[2];
  px__sink_t sink = {.out = json_array()};
  enum { N = 120 };
  const char *inputs[N];
  (void)state;
  px_test_require_peers();
  assert_int_equal(px_tls_context_init(&tls, px_test_peers_path("pki/ca.pem"), err, sizeof(err)), 0);
  assert_int_equal(px_run_info_init(&run, "ZZ", "AS0", time(NULL)), 0);
  px__addr("PX_TCP_STALL", NULL, &addrs[0]);
  px__addr("PX_TCP_RESET", NULL, &addrs[1]);
  for (int i = 0; i < N; i++)
    inputs[i] = "stall.example.test";
  px_engine_config_t cfg = {
      .tls = &tls, .addresses = addrs, .naddresses = 2,
      .timeout_ms = 100, .parallel = 8, .run = &run,
      .emit = px__emit, .emit_data = &sink, .progress = px__progress, .progress_data = &sink,
  };
  px__run(&cfg, &sink, inputs, N);
  assert_int_equal(json_array_size(sink.out), N);
  assert_true(sink.max_inflight <= 8);
  /* Descriptors in use never exceed one socket per operation in flight,
   * however many targets there are (plus the signal pipes libuv opens for
   * the engine's SIGINT/SIGTERM handles: two per loop, two per process). */
  if (sink.max_fds - sink.base_fds > 8 + 4)
    fail_msg("fds grew from %d to %d with parallel 8\n", sink.base_fds, sink.max_fds);
  json_decref(sink.out);
  px_run_info_free(&run);
  px_tls_context_free(&tls);
}
