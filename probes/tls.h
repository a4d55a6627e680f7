#ifndef PX_TLS_H
#define PX_TLS_H

/* Certificates of a presented chain recorded in peer_certificates (the
 * measurement schema's bound). */
#define PX_TLS_CHAIN_RECORD_MAX 64

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "probes/tls_context.h"

/* One flow to one address: a TCP connect on a uv_tcp_t (df-005) and, when
 * it succeeds, a TLS handshake through OpenSSL memory BIOs (df-006) that is
 * completed without verification and judged afterwards. */
typedef struct px_tls_probe_req {
  const struct sockaddr *address;  /* IP and port */
  const char *server_name;         /* SNI and the host name judged */
  unsigned timeout_ms;             /* for the connect, then the handshake */
  uint64_t base_ns;                /* uv_hrtime() of measurement start */
  int64_t transaction_id;
  px_tls_context_t *ctx;
} px_tls_probe_req_t;

typedef struct px_tls_probe_result {
  json_t *tcp_connect;   /* df-005 entry; the callback owns the reference */
  json_t *tls_handshake; /* df-006 entry, NULL when the connect failed */
  bool verified;         /* handshake done, chain and host name valid */
  uint64_t bytes_read;   /* TCP payload both ways, for a run's byte budget */
  uint64_t bytes_written;
} px_tls_probe_result_t;

/* Runs once the flow is over AND its socket and timer are closed, so the
 * caller can count in-flight descriptors by outstanding callbacks. */
typedef void (*px_tls_probe_cb)(void *data, px_tls_probe_result_t *res);

/* Starts the flow; the request is copied. Returns 0, or a negative error
 * and then no callback runs. */
int px_tls_probe_start(uv_loop_t *loop, const px_tls_probe_req_t *req,
                       px_tls_probe_cb cb, void *data);

#endif
