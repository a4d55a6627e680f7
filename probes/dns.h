#ifndef PX_DNS_H
#define PX_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* A DNS probe against ONE nameserver: c-ares channels driven from the
 * caller's libuv loop (one uv_poll_t per c-ares socket, one uv_timer_t
 * re-armed from ares_timeout() after every call into c-ares; no polling
 * ticks). Two channels per resolver: UDP with ARES_FLAG_IGNTC, and TCP
 * (ARES_FLAG_USEVC), created on the first truncated answer, so every
 * exchange is reported with the transport that really carried it. */
typedef struct px_dns_resolver px_dns_resolver_t;

/* One wire exchange of a lookup. */
typedef struct px_dns_exchange {
  const char *engine;       /* "udp" or "tcp" */
  int status;               /* ARES_* as c-ares reported it */
  const uint8_t *response;  /* raw answer (valid during the callback) */
  size_t response_len;
  uint64_t t0_ns, t_ns;     /* uv_hrtime() at query and at result */
  bool final;               /* no further exchange follows for this lookup */
  /* Why c-ares could not reach the server. c-ares 1.18 reports every
   * socket error of a query (no route, ICMP port unreachable, a reset, a
   * closed TCP stream) as ARES_ECONNREFUSED, so the probe watches its
   * channels' socket calls and keeps the error of the call that failed.
   * With status ARES_ECONNREFUSED: a negative errno, PX_DNS_SOCK_EOF (the
   * server closed the TCP stream), -EBADMSG (an empty UDP datagram), or 0
   * when c-ares gave up without a socket call failing. 0 with any other
   * status. px_dns_entry_fields() turns it into the failure string. */
  int sock_error;
  /* The resolver could not be reached at all: no route to it (ENETUNREACH,
   * EHOSTUNREACH, locally or by ICMP from a router), i.e. the vantage is
   * offline or the resolver's network is gone, not an answer from it.
   * Exactly when the entry's failure is network_unreachable or
   * host_unreachable, so a run reading measurements can tell the same from
   * the failure string alone. A refusal (ICMP port unreachable, a TCP RST)
   * came from the resolver's host: false, failure connection_refused. */
  bool unreachable;
} px_dns_exchange_t;

/* Called once per exchange: a truncated UDP answer is one call (final =
 * false), the TCP retry another (final = true). After the final call the
 * lookup is gone; data is the caller's. */
typedef void (*px_dns_exchange_cb)(void *data, const px_dns_exchange_t *ex);

/* Creates the resolver for server (port included). timeout_ms bounds one
 * lookup over one transport, retries included. Returns 0 or a negative
 * error. */
int px_dns_resolver_new(uv_loop_t *loop, const struct sockaddr *server,
                        unsigned timeout_ms, px_dns_resolver_t **out);

/* Starts an A/AAAA (qtype 1/28) lookup of name. The callback may run
 * before this returns (c-ares fails some queries synchronously). Returns 0,
 * or a negative error and then no callback runs. */
int px_dns_lookup(px_dns_resolver_t *r, const char *name, int qtype,
                  px_dns_exchange_cb cb, void *data);

/* Cancels pending lookups (their callbacks run with ARES_EDESTRUCTION,
 * final) and closes every handle; the resolver frees itself once the last
 * close callback ran. Safe to call from inside an exchange callback. */
void px_dns_resolver_close(px_dns_resolver_t *r);

const struct sockaddr *px_dns_resolver_server(const px_dns_resolver_t *r);

#endif
