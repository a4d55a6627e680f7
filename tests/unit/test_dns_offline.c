/* Offline is named (issue 20): a DNS query that cannot reach its resolver
 * is recorded by its real cause, never as connection_refused unless the
 * resolver's host really refused. Real sockets only: loopback, and
 * network namespaces the test creates (each test runs in its own child,
 * so unshare(CLONE_NEWNET) leaves the machine's namespace alone); the
 * documentation addresses queried there have no route out of it. */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/netaddr.h"
#include "probes/dns.h"
#include "probes/dns_wire.h"
#include "tests/runner.h"

#define PX__MAX_EX 4

typedef struct {
  int n, finals;
  px_dns_exchange_t ex[PX__MAX_EX];
  char failure[PX__MAX_EX][128]; /* the df-002 failure of each exchange */
} px__col_t;

static void px__collect(void *data, const px_dns_exchange_t *ex) {
  px__col_t *c = data;
  assert_true(c->n < PX__MAX_EX);
  c->ex[c->n] = *ex;
  c->ex[c->n].response = NULL; /* only valid during the callback */
  /* What the agent records (agent/job.c does the same call). */
  json_t *e = json_object();
  px_dns_entry_fields(e, ex->status, ex->sock_error, ex->response, ex->response_len,
                      PX_DNS_TYPE_A, ex->final);
  const char *f = json_string_value(json_object_get(e, "failure"));
  snprintf(c->failure[c->n], sizeof(c->failure[0]), "%s", f != NULL ? f : "(null)");
  json_decref(e);
  c->n++;
  if (ex->final)
    c->finals++;
}

/* One A lookup of www.example.test at server (ip:port) on a fresh loop,
 * run to the end; the loop is closed cleanly. */
static void px__lookup(const char *server, unsigned timeout_ms, px__col_t *c) {
  uv_loop_t loop;
  struct sockaddr_storage ss;
  px_dns_resolver_t *r = NULL;
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(px_addr_parse_hostport(server, 53, &ss), 0);
  assert_int_equal(px_dns_resolver_new(&loop, (struct sockaddr *)&ss, timeout_ms, &r), 0);
  assert_int_equal(px_dns_lookup(r, "www.example.test", PX_DNS_TYPE_A, px__collect, c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  px_dns_resolver_close(r);
  px_test_close_loop(&loop);
  assert_int_equal(c->finals, 1);
}

/* A loopback port nobody listens on (UDP or TCP): bound, then released. */
static int px__free_port(int type) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, type, 0);
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* A namespace of our own with only lo up, plus the given routes. */
static void px__private_net(const char *const *routes) {
  char cmd[256];
  if (geteuid() != 0)
    px_test_skip("creating a network namespace needs root");
  if (unshare(CLONE_NEWNET) != 0)
    px_test_skip("unshare(CLONE_NEWNET): %s", strerror(errno));
  assert_int_equal(system("ip link set lo up"), 0);
  for (int i = 0; routes != NULL && routes[i] != NULL; i++) {
    snprintf(cmd, sizeof(cmd), "ip route add %s", routes[i]);
    assert_int_equal(system(cmd), 0);
  }
}

static void px__expect(const px__col_t *c, int sock_error, const char *failure, bool unreachable) {
  assert_int_equal(c->n, 1);
  assert_string_equal(c->ex[0].engine, "udp");
  assert_int_equal(c->ex[0].status, ARES_ECONNREFUSED);
  assert_int_equal(c->ex[0].sock_error, sock_error);
  assert_string_equal(c->failure[0], failure);
  assert_true(c->ex[0].unreachable == unreachable);
}

PX_TEST(dns_offline_real_refusal) {
  char server[64];
  px__col_t c;
  (void)state;
  /* The kernel answers ICMP port unreachable: the resolver's host refused. */
  snprintf(server, sizeof(server), "127.0.0.1:%d", px__free_port(SOCK_DGRAM));
  px__lookup(server, 3000, &c);
  px__expect(&c, -ECONNREFUSED, "connection_refused", false);
}

PX_TEST(dns_offline_network_unreachable) {
  px__col_t c;
  (void)state;
  px__private_net(NULL);
  /* No route at all: what a vantage without a network sees. */
  px__lookup("198.51.100.53:53", 3000, &c);
  px__expect(&c, -ENETUNREACH, "network_unreachable", true);
  px__lookup("[2001:db8::53]:53", 3000, &c);
  px__expect(&c, -ENETUNREACH, "network_unreachable", true);
}

PX_TEST(dns_offline_host_unreachable) {
  static const char *const routes[] = {"unreachable 203.0.113.0/24", NULL};
  px__col_t c;
  (void)state;
  px__private_net(routes);
  px__lookup("203.0.113.53:53", 3000, &c);
  px__expect(&c, -EHOSTUNREACH, "host_unreachable", true);
}

PX_TEST(dns_offline_other_route_errors) {
  static const char *const routes[] = {"prohibit 192.0.2.0/24", "blackhole 198.18.0.0/15",
                                       NULL};
  px__col_t c;
  (void)state;
  px__private_net(routes);
  /* Neither is a refusal nor offline: named by the errno mapping. */
  px__lookup("192.0.2.53:53", 3000, &c);
  px__expect(&c, -EACCES, "permission_denied", false);
  px__lookup("198.18.0.53:53", 3000, &c);
  px__expect(&c, -EINVAL, "unknown_failure: Invalid argument", false);
}

/* ---- the TCP retry: a UDP responder that always truncates ------------------ */

enum px__tcp_mode { PX__TCP_NONE, PX__TCP_CLOSE, PX__TCP_RESET };

typedef struct {
  uv_udp_t udp;
  uv_tcp_t listener;
  enum px__tcp_mode mode;
  bool listening;
  int accepted;
} px__server_t;

typedef struct {
  uv_tcp_t tcp;
  px__server_t *srv;
} px__conn_t;

static void px__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char space[65536];
  (void)h;
  (void)hint;
  *buf = uv_buf_init(space, sizeof(space));
}

static void px__sent(uv_udp_send_t *req, int status) {
  (void)status;
  free(req);
}

/* Every question comes back as its own header with QR and TC set: the
 * probe must retry over TCP. */
static void px__udp_read(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                         unsigned flags) {
  (void)flags;
  if (n < 12 || from == NULL)
    return;
  buf->base[2] = (char)(buf->base[2] | 0x82); /* QR, TC */
  memset(buf->base + 6, 0, 6);                /* no records */
  uv_udp_send_t *req = malloc(sizeof(*req));
  assert_non_null(req);
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
  assert_int_equal(uv_udp_send(req, h, &out, 1, from, px__sent), 0);
}

static void px__conn_closed(uv_handle_t *h) {
  free(h);
}

/* The question read, the stream ends: with a FIN (the resolver closed) or
 * a RST (SO_LINGER 0). */
static void px__tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  px__conn_t *conn = (px__conn_t *)s;
  (void)buf;
  if (n == 0)
    return;
  uv_read_stop(s);
  if (conn->srv->mode == PX__TCP_RESET && n > 0)
    assert_int_equal(uv_tcp_close_reset(&conn->tcp, px__conn_closed), 0);
  else
    uv_close((uv_handle_t *)s, px__conn_closed);
}

static void px__accept(uv_stream_t *l, int status) {
  px__server_t *srv = l->data;
  assert_int_equal(status, 0);
  px__conn_t *conn = calloc(1, sizeof(*conn));
  assert_non_null(conn);
  conn->srv = srv;
  uv_tcp_init(l->loop, &conn->tcp);
  assert_int_equal(uv_accept(l, (uv_stream_t *)&conn->tcp), 0);
  srv->accepted++;
  assert_int_equal(uv_read_start((uv_stream_t *)&conn->tcp, px__alloc, px__tcp_read), 0);
}

static void px__tcp_case(enum px__tcp_mode mode, px__col_t *c, int *accepted) {
  uv_loop_t loop;
  px__server_t srv;
  struct sockaddr_in a;
  px_dns_resolver_t *r = NULL;
  memset(&srv, 0, sizeof(srv));
  memset(c, 0, sizeof(*c));
  srv.mode = mode;
  assert_int_equal(uv_loop_init(&loop), 0);
  uv_udp_init(&loop, &srv.udp);
  uv_tcp_init(&loop, &srv.listener);
  srv.listener.data = &srv;

  /* The same port number for both: the TCP one first (or none), then a UDP
   * bind that may find the number taken; a few tries. */
  int port = 0;
  for (int tries = 0; tries < 20 && port == 0; tries++) {
    int p = px__free_port(SOCK_STREAM);
    assert_int_equal(uv_ip4_addr("127.0.0.1", p, &a), 0);
    if (uv_udp_bind(&srv.udp, (struct sockaddr *)&a, 0) != 0)
      continue;
    if (mode != PX__TCP_NONE) {
      assert_int_equal(uv_tcp_bind(&srv.listener, (struct sockaddr *)&a, 0), 0);
      assert_int_equal(uv_listen((uv_stream_t *)&srv.listener, 8, px__accept), 0);
    }
    port = p;
  }
  assert_int_not_equal(port, 0);
  assert_int_equal(uv_udp_recv_start(&srv.udp, px__alloc, px__udp_read), 0);

  assert_int_equal(px_dns_resolver_new(&loop, (struct sockaddr *)&a, 3000, &r), 0);
  assert_int_equal(px_dns_lookup(r, "www.example.test", PX_DNS_TYPE_A, px__collect, c), 0);
  while (c->finals == 0)
    uv_run(&loop, UV_RUN_ONCE);
  px_dns_resolver_close(r);
  uv_close((uv_handle_t *)&srv.udp, NULL);
  uv_close((uv_handle_t *)&srv.listener, NULL);
  px_test_close_loop(&loop);
  *accepted = srv.accepted;

  assert_int_equal(c->n, 2);
  assert_string_equal(c->ex[0].engine, "udp");
  assert_false(c->ex[0].final);
  assert_string_equal(c->failure[0], "(null)"); /* truncated: not a verdict */
  assert_string_equal(c->ex[1].engine, "tcp");
  assert_int_equal(c->ex[1].status, ARES_ECONNREFUSED);
  assert_false(c->ex[1].unreachable);
}

PX_TEST(dns_offline_tcp_causes) {
  px__col_t c;
  int accepted;
  (void)state;
  /* Nothing listens: the RST of a refused connect. */
  px__tcp_case(PX__TCP_NONE, &c, &accepted);
  assert_int_equal(c.ex[1].sock_error, -ECONNREFUSED);
  assert_string_equal(c.failure[1], "connection_refused");

  /* The resolver reads the question and closes: not a refusal. */
  px__tcp_case(PX__TCP_CLOSE, &c, &accepted);
  assert_true(accepted >= 1);
  assert_int_equal(c.ex[1].sock_error, PX_DNS_SOCK_EOF);
  assert_string_equal(c.failure[1], "eof_error");

  /* ... or resets the stream. */
  px__tcp_case(PX__TCP_RESET, &c, &accepted);
  assert_true(accepted >= 1);
  assert_int_equal(c.ex[1].sock_error, -ECONNRESET);
  assert_string_equal(c.failure[1], "connection_reset");
}

/* The mapping alone, for causes no socket here can produce. */
PX_TEST(dns_offline_failure_strings) {
  static const struct {
    int status, sock_error;
    const char *failure;
  } cases[] = {
      {ARES_ECONNREFUSED, -ECONNREFUSED, "connection_refused"},
      {ARES_ECONNREFUSED, -ENETUNREACH, "network_unreachable"},
      {ARES_ECONNREFUSED, -EHOSTUNREACH, "host_unreachable"},
      {ARES_ECONNREFUSED, -ECONNRESET, "connection_reset"},
      {ARES_ECONNREFUSED, -EPIPE, "connection_reset"},
      {ARES_ECONNREFUSED, PX_DNS_SOCK_EOF, "eof_error"},
      {ARES_ECONNREFUSED, -EBADMSG, "dns_server_misbehaving"},
      {ARES_ECONNREFUSED, -EMFILE, "unknown_failure: Too many open files"},
      /* c-ares gave up with no failed socket call seen: not named a refusal. */
      {ARES_ECONNREFUSED, 0,
       "unknown_failure: Could not contact DNS servers (no socket error seen)"},
      {ARES_ETIMEOUT, 0, "generic_timeout_error"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *e = json_object();
    px_dns_entry_fields(e, cases[i].status, cases[i].sock_error, NULL, 0, PX_DNS_TYPE_A, true);
    assert_string_equal(json_string_value(json_object_get(e, "failure")), cases[i].failure);
    assert_true(json_is_null(json_object_get(e, "rcode")));
    json_decref(e);
  }
}
