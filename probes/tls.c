#include "probes/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/failure.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/timeutil.h"
#include "common/x509_fields.h"
#include "common/x509_judge.h"

enum px__tls_state { PX__CONNECTING, PX__HANDSHAKING, PX__DONE };

typedef struct px__tls_probe {
  uv_tcp_t tcp; /* first member: the close callback casts back */
  uv_timer_t timer;
  uv_connect_t connect_req;
  int open_handles;
  enum px__tls_state state;

  px_tls_context_t *ctx;
  struct sockaddr_storage addr;
  char server_name[256];
  unsigned timeout_ms;
  uint64_t base_ns;
  int64_t txid;
  px_tls_probe_cb cb;
  void *data;

  uint64_t connect_t0, hs_t0;
  SSL *ssl;
  BIO *rbio, *wbio;  /* owned by ssl */
  bool peer_eof, peer_reset;
  int io_error;      /* first read/write error other than EOF */
  char server_alert[64];

  px_tls_probe_result_t res;
  char rbuf[16384];
} px__tls_probe_t;

typedef struct px__tls_write {
  uv_write_t req;
  px__tls_probe_t *probe;
  char data[];
} px__tls_write_t;

static double px__rel(const px__tls_probe_t *p, uint64_t ns) {
  return px_elapsed_seconds(p->base_ns, ns);
}

static void px__closed(uv_handle_t *h) {
  px__tls_probe_t *p = h->data;
  if (--p->open_handles > 0)
    return;
  p->cb(p->data, &p->res);
  SSL_free(p->ssl);
  free(p);
}

static void px__finish(px__tls_probe_t *p) {
  if (p->state == PX__DONE)
    return;
  p->state = PX__DONE;
  uv_close((uv_handle_t *)&p->timer, px__closed);
  uv_close((uv_handle_t *)&p->tcp, px__closed);
}

static void px__record_connect(px__tls_probe_t *p, const char *failure) {
  char ip[PX_ADDRSTRLEN];
  json_t *e = json_object(), *status = json_object();
  px_addr_format_ip((struct sockaddr *)&p->addr, ip, sizeof(ip));
  json_object_set_new(e, "ip", json_string(ip));
  json_object_set_new(e, "port", json_integer(px_addr_port((struct sockaddr *)&p->addr)));
  json_object_set_new(status, "failure", px_json_string_or_null(failure));
  json_object_set_new(status, "success", json_boolean(failure == NULL));
  json_object_set_new(e, "status", status);
  json_object_set_new(e, "t0", json_real(px__rel(p, p->connect_t0)));
  json_object_set_new(e, "t", json_real(px__rel(p, uv_hrtime())));
  json_object_set_new(e, "transaction_id", json_integer(p->txid));
  p->res.tcp_connect = e;
}

/* Records the handshake entry. Whatever part of the chain arrived is kept
 * and judged, failed handshake or not: a middlebox that aborts after its
 * Certificate message has still shown its certificate. */
static void px__record_handshake(px__tls_probe_t *p, const char *hs_failure,
                                 const char *detail) {
  char address[PX_ADDRSTRLEN];
  json_t *e = json_object(), *certs = json_array(), *verification = json_null();
  const char *failure = hs_failure;
  STACK_OF(X509) *chain = p->ssl ? SSL_get_peer_cert_chain(p->ssl) : NULL;
  bool completed = hs_failure == NULL;

  /* A chain longer than the schema allows is recorded up to its bound
   * (the judgement below still sees all of it). */
  for (int i = 0; chain != NULL && i < sk_X509_num(chain) && i < PX_TLS_CHAIN_RECORD_MAX; i++) {
    json_t *item = px_x509_cert_json(sk_X509_value(chain, i));
    if (item != NULL)
      json_array_append_new(certs, item);
  }
  if (chain != NULL && sk_X509_num(chain) > 0) {
    px_x509_verdict_t v;
    time_t at = time(NULL) + p->ctx->clock_offset;
    if (px_x509_judge_cached(p->ctx->judged, p->ctx->trust, chain, p->server_name,
                             at, &v) == 0) {
      json_decref(verification);
      verification = px_x509_verdict_json(&v);
      if (completed) {
        failure = px_x509_verdict_failure(&v);
        p->res.verified = px_x509_verdict_ok(&v);
      }
    }
  } else if (completed) {
    failure = PX_FAILURE_SSL_INVALID_CERT; /* anonymous: nothing to trust */
  }

  const unsigned char *alpn = NULL;
  unsigned alpn_len = 0;
  const SSL_CIPHER *cipher = completed ? SSL_get_current_cipher(p->ssl) : NULL;
  if (completed)
    SSL_get0_alpn_selected(p->ssl, &alpn, &alpn_len);

  px_addr_format((struct sockaddr *)&p->addr, address, sizeof(address));
  json_object_set_new(e, "address", json_string(address));
  json_object_set_new(e, "server_name", json_string(p->server_name));
  json_object_set_new(e, "tls_version", json_string(completed ? SSL_get_version(p->ssl) : ""));
  json_object_set_new(e, "cipher_suite",
                      json_string(cipher ? SSL_CIPHER_standard_name(cipher) : ""));
  json_object_set_new(e, "negotiated_protocol",
                      px_json_string_lossy((const char *)alpn, alpn ? alpn_len : 0));
  json_object_set_new(e, "no_tls_verify", json_false());
  json_object_set_new(e, "peer_certificates", certs);
  json_object_set_new(e, "verification", verification);
  json_object_set_new(e, "server_alert",
                      p->server_alert[0] ? json_string(p->server_alert) : json_null());
  json_object_set_new(e, "failure", px_json_string_or_null(failure));
  json_object_set_new(e, "failure_detail",
                      detail ? px_json_string_lossy(detail, strlen(detail)) : json_null());
  json_object_set_new(e, "t0", json_real(px__rel(p, p->hs_t0)));
  json_object_set_new(e, "t", json_real(px__rel(p, uv_hrtime())));
  json_object_set_new(e, "transaction_id", json_integer(p->txid));
  p->res.tls_handshake = e;
}

static void px__write_cb(uv_write_t *req, int status) {
  px__tls_write_t *w = (px__tls_write_t *)req;
  if (status < 0 && status != UV_ECANCELED && w->probe->io_error == 0) {
    w->probe->io_error = status;
    if (status == UV_ECONNRESET || status == UV_EPIPE)
      w->probe->peer_reset = true;
  }
  free(w);
}

/* Sends whatever OpenSSL has queued in the write BIO. */
static int px__flush(px__tls_probe_t *p) {
  size_t pending;
  while ((pending = BIO_ctrl_pending(p->wbio)) > 0) {
    px__tls_write_t *w = malloc(sizeof(*w) + pending);
    if (w == NULL)
      return -ENOMEM;
    int n = BIO_read(p->wbio, w->data, (int)pending);
    if (n <= 0) {
      free(w);
      return -EIO;
    }
    w->probe = p;
    p->res.bytes_written += (uint64_t)n;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, &buf, 1, px__write_cb);
    if (rc != 0) {
      free(w);
      return rc;
    }
  }
  return 0;
}

static void px__handshake_failed(px__tls_probe_t *p, int ssl_error) {
  char detail[256] = "";
  char buf[PX_FAILURE_MAX];
  const char *failure;
  unsigned long e = ERR_peek_error();

  if (e != 0)
    ERR_error_string_n(e, detail, sizeof(detail));
  else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN)
    snprintf(detail, sizeof(detail), "connection closed during the handshake");

  /* A reset outranks everything; an alert the server sent outranks the EOF
   * or socket error that follows it. */
  bool alerted = p->server_alert[0] != '\0';
  if (p->peer_reset)
    failure = PX_FAILURE_CONN_RESET;
  else if (!alerted && p->peer_eof)
    failure = PX_FAILURE_EOF;
  else if (!alerted && p->io_error != 0)
    failure = px_failure_from_errno(p->io_error, buf, sizeof(buf));
  else
    failure = PX_FAILURE_SSL_FAILED_HANDSHAKE;
  px__record_handshake(p, failure, detail[0] ? detail : NULL);
  ERR_clear_error();
  px__finish(p);
}

static void px__handshake_done(px__tls_probe_t *p) {
  px__record_handshake(p, NULL, NULL);
  /* A polite close_notify, best effort: the flow is over either way. */
  if (SSL_shutdown(p->ssl) >= 0 && BIO_ctrl_pending(p->wbio) > 0) {
    char buf[512];
    int n = BIO_read(p->wbio, buf, sizeof(buf));
    if (n > 0) {
      uv_buf_t b = uv_buf_init(buf, (unsigned)n);
      if (uv_try_write((uv_stream_t *)&p->tcp, &b, 1) > 0)
        p->res.bytes_written += (uint64_t)n;
    }
  }
  ERR_clear_error();
  px__finish(p);
}

static void px__drive(px__tls_probe_t *p) {
  int r = SSL_do_handshake(p->ssl);
  int flush_rc = px__flush(p);
  if (r == 1) {
    px__handshake_done(p);
    return;
  }
  int e = SSL_get_error(p->ssl, r);
  if (e == SSL_ERROR_WANT_READ && !p->peer_eof && flush_rc == 0 && p->io_error == 0)
    return;
  if (flush_rc != 0 && p->io_error == 0)
    p->io_error = flush_rc;
  px__handshake_failed(p, e);
}

static void px__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  px__tls_probe_t *p = h->data;
  (void)suggested;
  *buf = uv_buf_init(p->rbuf, sizeof(p->rbuf));
}

static void px__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  px__tls_probe_t *p = s->data;
  (void)buf;
  if (p->state != PX__HANDSHAKING)
    return;
  if (nread > 0) {
    p->res.bytes_read += (uint64_t)nread;
    BIO_write(p->rbio, p->rbuf, (int)nread);
    px__drive(p);
  } else if (nread == UV_EOF) {
    p->peer_eof = true;
    uv_read_stop(s);
    BIO_set_mem_eof_return(p->rbio, 0); /* reads now report end of stream */
    px__drive(p);
  } else if (nread < 0) {
    p->io_error = (int)nread;
    p->peer_reset = nread == UV_ECONNRESET;
    px__handshake_failed(p, SSL_ERROR_SYSCALL);
  }
}

/* Alerts the server sends are data: "handshake_failure" from a filter that
 * dislikes our SNI is not the same finding as a silent reset. */
static void px__info_cb(const SSL *ssl, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT)
    return;
  px__tls_probe_t *p = SSL_get_app_data(ssl);
  if (p->server_alert[0] != '\0')
    return;
  const char *desc = SSL_alert_desc_string_long(ret);
  size_t i = 0;
  for (; desc[i] != '\0' && i + 1 < sizeof(p->server_alert); i++)
    p->server_alert[i] = (char)(desc[i] == ' ' ? '_' : desc[i]);
  p->server_alert[i] = '\0';
  /* A close_notify is not an error alert; EOF handling covers it. */
  if (strcmp(p->server_alert, "close_notify") == 0)
    p->server_alert[0] = '\0';
}

static void px__timer_cb(uv_timer_t *t) {
  px__tls_probe_t *p = t->data;
  if (p->state == PX__CONNECTING) {
    px__record_connect(p, PX_FAILURE_TIMEOUT);
    px__finish(p);
  } else if (p->state == PX__HANDSHAKING) {
    px__record_handshake(p, PX_FAILURE_TIMEOUT, NULL);
    px__finish(p);
  }
}

static int px__start_handshake(px__tls_probe_t *p) {
  p->ssl = SSL_new(p->ctx->ssl_ctx);
  p->rbio = BIO_new(BIO_s_mem());
  p->wbio = BIO_new(BIO_s_mem());
  if (p->ssl == NULL || p->rbio == NULL || p->wbio == NULL) {
    SSL_free(p->ssl);
    p->ssl = NULL;
    BIO_free(p->rbio);
    BIO_free(p->wbio);
    return -ENOMEM;
  }
  SSL_set_bio(p->ssl, p->rbio, p->wbio);
  SSL_set_app_data(p->ssl, p);
  SSL_set_info_callback(p->ssl, px__info_cb);
  SSL_set_connect_state(p->ssl);
  SSL_set_tlsext_host_name(p->ssl, p->server_name);
  return 0;
}

static void px__connect_cb(uv_connect_t *req, int status) {
  px__tls_probe_t *p = req->data;
  if (p->state != PX__CONNECTING)
    return; /* timed out and closed: already recorded */
  if (status < 0) {
    char buf[PX_FAILURE_MAX];
    px__record_connect(p, px_failure_from_errno(status, buf, sizeof(buf)));
    px__finish(p);
    return;
  }
  px__record_connect(p, NULL);
  p->state = PX__HANDSHAKING;
  p->hs_t0 = uv_hrtime();
  uv_tcp_nodelay(&p->tcp, 1);
  uv_timer_start(&p->timer, px__timer_cb, p->timeout_ms, 0);
  int rc = px__start_handshake(p);
  if (rc == 0)
    rc = uv_read_start((uv_stream_t *)&p->tcp, px__alloc_cb, px__read_cb);
  if (rc != 0) {
    p->io_error = rc;
    px__handshake_failed(p, SSL_ERROR_SYSCALL);
    return;
  }
  px__drive(p);
}

int px_tls_probe_start(uv_loop_t *loop, const px_tls_probe_req_t *req,
                       px_tls_probe_cb cb, void *data) {
  px__tls_probe_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return -ENOMEM;
  size_t name_len = strlen(req->server_name);
  if (name_len >= sizeof(p->server_name)) {
    free(p);
    return -EINVAL;
  }
  memcpy(p->server_name, req->server_name, name_len + 1);
  memcpy(&p->addr, req->address, px_addr_len(req->address));
  p->ctx = req->ctx;
  p->timeout_ms = req->timeout_ms;
  p->base_ns = req->base_ns;
  p->txid = req->transaction_id;
  p->cb = cb;
  p->data = data;

  int rc = uv_tcp_init(loop, &p->tcp);
  if (rc != 0) {
    free(p);
    return rc;
  }
  p->tcp.data = p;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  p->open_handles = 2;
  p->connect_req.data = p;
  p->connect_t0 = uv_hrtime();
  p->state = PX__CONNECTING;

  rc = uv_tcp_connect(&p->connect_req, &p->tcp, (struct sockaddr *)&p->addr,
                      px__connect_cb);
  if (rc != 0) {
    /* Synchronous failures (no route, EADDRNOTAVAIL…) are measurements
     * too: record them and report through the normal path. */
    char buf[PX_FAILURE_MAX];
    px__record_connect(p, px_failure_from_errno(rc, buf, sizeof(buf)));
    px__finish(p);
    return 0;
  }
  uv_timer_start(&p->timer, px__timer_cb, p->timeout_ms, 0);
  return 0;
}
