#include "probes/dns.h"

#include <ares.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/netaddr.h"
#include "probes/dns_wire.h"

_Static_assert(PX_DNS_SOCK_EOF == UV_EOF, "PX_DNS_SOCK_EOF is libuv's UV_EOF");

/* c-ares socket watched by libuv. Owned by its channel; freed in the close
 * callback. */
typedef struct px__dns_poll {
  uv_poll_t handle;
  ares_socket_t fd;
  struct px__dns_channel *chan;
  struct px__dns_poll *next;
} px__dns_poll_t;

typedef struct px__dns_channel {
  px_dns_resolver_t *r;
  ares_channel ares;      /* NULL until created / after destruction */
  bool tcp;
  uv_timer_t timer;
  bool timer_ready;
  px__dns_poll_t *polls;
  int depth;              /* nesting of our calls into c-ares */
  bool destroy_pending;   /* close requested while c-ares was on the stack */
  int sock_error;         /* last failed socket call since we entered c-ares */
} px__dns_channel_t;

struct px_dns_resolver {
  uv_loop_t *loop;
  struct sockaddr_storage server;
  unsigned timeout_ms;
  px__dns_channel_t udp, tcp;
  int open_handles;
  bool closing;
};

typedef struct px__dns_lookup {
  px_dns_resolver_t *r;
  px_dns_exchange_cb cb;
  void *data;
  int qtype;
  bool tcp;
  uint64_t t0_ns;
  char name[];
} px__dns_lookup_t;

static void px__maybe_free(px_dns_resolver_t *r) {
  if (r->closing && r->open_handles == 0 && r->udp.ares == NULL &&
      r->tcp.ares == NULL)
    free(r);
}

static void px__handle_closed(uv_handle_t *h) {
  px_dns_resolver_t *r;
  if (h->type == UV_POLL) {
    px__dns_poll_t *p = (px__dns_poll_t *)h; /* handle is the first member */
    r = p->chan->r;
    free(p);
  } else {
    r = ((px__dns_channel_t *)h->data)->r;
  }
  r->open_handles--;
  px__maybe_free(r);
}

static void px__timer_cb(uv_timer_t *t);

/* After every call into c-ares: its next deadline decides the timer. */
static void px__rearm(px__dns_channel_t *ch) {
  struct timeval tv, *tvp;
  if (ch->ares == NULL)
    return;
  tvp = ares_timeout(ch->ares, NULL, &tv);
  if (tvp == NULL) {
    uv_timer_stop(&ch->timer);
    return;
  }
  uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
  uv_timer_start(&ch->timer, px__timer_cb, ms, 0);
}

static void px__destroy_channel(px__dns_channel_t *ch) {
  if (ch->ares == NULL)
    return;
  ch->depth++;
  ares_destroy(ch->ares); /* runs callbacks and closes sockets (polls) */
  ch->depth--;
  ch->ares = NULL;
  ch->destroy_pending = false;
  if (ch->timer_ready) {
    ch->timer_ready = false;
    uv_close((uv_handle_t *)&ch->timer, px__handle_closed);
  }
}

/* Leaves a c-ares call: re-arms the timer, or carries out a close that was
 * requested while c-ares was on the stack. */
static void px__leave(px__dns_channel_t *ch) {
  if (--ch->depth > 0)
    return;
  if (ch->destroy_pending)
    px__destroy_channel(ch);
  else
    px__rearm(ch);
}

/* Enters c-ares. A query c-ares fails with ARES_ECONNREFUSED is failed
 * inside the very call whose socket operation failed (c-ares retries and
 * gives up synchronously), so the error to name is the last one seen since
 * the outermost entry; forgetting older ones keeps a refusal of an earlier
 * query from being blamed on a later one. */
static void px__enter(px__dns_channel_t *ch) {
  if (ch->depth++ == 0)
    ch->sock_error = 0;
}

static void px__process(px__dns_channel_t *ch, ares_socket_t rfd,
                        ares_socket_t wfd) {
  if (ch->ares == NULL)
    return;
  px__enter(ch);
  ares_process_fd(ch->ares, rfd, wfd);
  px__leave(ch);
}

static void px__timer_cb(uv_timer_t *t) {
  px__dns_channel_t *ch = t->data;
  px__process(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static void px__poll_cb(uv_poll_t *h, int status, int events) {
  px__dns_poll_t *p = (px__dns_poll_t *)h;
  /* On a poll error let c-ares try both directions: it reads the socket
   * error and fails or retries the queries on it. */
  ares_socket_t rfd = (status < 0 || (events & UV_READABLE)) ? p->fd : ARES_SOCKET_BAD;
  ares_socket_t wfd = (status < 0 || (events & UV_WRITABLE)) ? p->fd : ARES_SOCKET_BAD;
  px__process(p->chan, rfd, wfd);
}

static void px__sock_state_cb(void *data, ares_socket_t fd, int readable,
                              int writable) {
  px__dns_channel_t *ch = data;
  px_dns_resolver_t *r = ch->r;
  px__dns_poll_t **pp = &ch->polls, *p;

  while (*pp != NULL && (*pp)->fd != fd)
    pp = &(*pp)->next;
  p = *pp;

  if (!readable && !writable) {
    if (p == NULL)
      return;
    /* Stop now: c-ares closes the fd as soon as we return. */
    uv_poll_stop(&p->handle);
    *pp = p->next;
    uv_close((uv_handle_t *)&p->handle, px__handle_closed);
    return;
  }
  if (p == NULL) {
    p = calloc(1, sizeof(*p));
    if (p == NULL)
      return; /* the query will time out; nothing better to do */
    if (uv_poll_init_socket(r->loop, &p->handle, fd) != 0) {
      free(p);
      return;
    }
    p->fd = fd;
    p->chan = ch;
    p->next = ch->polls;
    ch->polls = p;
    r->open_handles++;
  }
  uv_poll_start(&p->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                px__poll_cb);
}

/* The socket calls of a channel, made for c-ares (ares_set_socket_functions)
 * so that the errno of the one that fails is kept in ch->sock_error:
 * c-ares 1.18 itself only says ARES_ECONNREFUSED. Each does what c-ares'
 * own would and leaves errno as the system call set it, since c-ares reads
 * it next (EAGAIN/EINPROGRESS are the normal non-blocking answers, not
 * failures). Sockets stay plain fds: c-ares still announces them through
 * the sock_state_cb and px__poll_cb still hands them back to
 * ares_process_fd, whose reads and writes come back through here. */
static bool px__transient(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == EINPROGRESS;
}

static void px__note(px__dns_channel_t *ch, int err) {
  if (!px__transient(err))
    ch->sock_error = -err;
}

#define PX__DNS_RCVBUF (4 << 20)

static ares_socket_t px__asocket(int domain, int type, int protocol, void *data) {
  /* Non-blocking and close-on-exec from the start; c-ares sets O_NONBLOCK
   * again itself. */
  int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    px__note(data, errno);
    return ARES_SOCKET_BAD;
  }
  if ((type & 0xf) == SOCK_DGRAM) {
    /* One UDP socket carries every query in flight to a resolver: with
     * --parallel 256 their answers overflow the default 208 KiB (a small
     * datagram costs ~1 KiB of buffer) while the loop is still sending,
     * and each dropped answer waits out a retry. Best effort: the kernel
     * caps it at net.core.rmem_max. */
    int size = PX__DNS_RCVBUF;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  return fd;
}

static int px__aclose(ares_socket_t fd, void *data) {
  (void)data;
  return close(fd);
}

/* A UDP connect() is where a missing route shows (ENETUNREACH,
 * EHOSTUNREACH, EACCES for a prohibit route); a TCP one can also refuse at
 * once on loopback. */
static int px__aconnect(ares_socket_t fd, const struct sockaddr *addr, ares_socklen_t len,
                        void *data) {
  int rc = connect(fd, addr, len);
  if (rc < 0)
    px__note(data, errno);
  return rc;
}

/* A UDP read returns the ICMP error of an earlier send (ECONNREFUSED for
 * port unreachable, EHOSTUNREACH from a router); a TCP one a reset, or 0
 * when the server closed the stream, which c-ares treats as an error. */
static ares_ssize_t px__arecvfrom(ares_socket_t fd, void *buf, size_t len, int flags,
                                  struct sockaddr *from, ares_socklen_t *from_len,
                                  void *data) {
  ssize_t n = recvfrom(fd, buf, len, flags, from, from_len);
  if (n < 0) {
    px__note(data, errno);
  } else if (n == 0 && len > 0) {
    int type = 0, saved = errno;
    socklen_t tl = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0)
      ((px__dns_channel_t *)data)->sock_error = type == SOCK_STREAM ? PX_DNS_SOCK_EOF : -EBADMSG;
    errno = saved;
  }
  return n;
}

/* MSG_NOSIGNAL: a TCP resolver that reset the stream is an EPIPE to record,
 * not a SIGPIPE. */
static ares_ssize_t px__asendv(ares_socket_t fd, const struct iovec *iov, int iovcnt,
                               void *data) {
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = (struct iovec *)iov; /* sendmsg does not write through it */
  m.msg_iovlen = iovcnt > 0 ? (size_t)iovcnt : 0;
  ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
  if (n < 0)
    px__note(data, errno);
  return n;
}

static const struct ares_socket_functions px__sock_funcs = {
    .asocket = px__asocket,
    .aclose = px__aclose,
    .aconnect = px__aconnect,
    .arecvfrom = px__arecvfrom,
    .asendv = px__asendv,
};

static int px__channel_init(px_dns_resolver_t *r, px__dns_channel_t *ch,
                            bool tcp) {
  struct ares_options o;
  struct ares_addr_port_node server;
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
             ARES_OPT_SOCK_STATE_CB | ARES_OPT_EDNSPSZ;

  memset(&o, 0, sizeof(o));
  /* NOCHECKRESP: SERVFAIL/REFUSED are measurements, not reasons to retry.
   * IGNTC: we retry truncated answers over TCP ourselves and say so. */
  o.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_EDNS | ARES_FLAG_NOSEARCH |
            (tcp ? ARES_FLAG_USEVC : ARES_FLAG_IGNTC);
  /* Two tries; c-ares doubles the second wait, so T/3 + 2T/3 = T. */
  o.timeout = (int)(r->timeout_ms / 3 > 0 ? r->timeout_ms / 3 : 1);
  o.tries = 2;
  o.sock_state_cb = px__sock_state_cb;
  o.sock_state_cb_data = ch;
  o.ednspsz = 1232; /* the DNS flag day 2020 size: no IP fragmentation */

  memset(ch, 0, sizeof(*ch));
  ch->r = r;
  ch->tcp = tcp;
  int rc = ares_init_options(&ch->ares, &o, mask);
  if (rc != ARES_SUCCESS) {
    ch->ares = NULL;
    return rc == ARES_ENOMEM ? -ENOMEM : -EINVAL;
  }
  /* c-ares keeps the pointer: the table is static. */
  ares_set_socket_functions(ch->ares, &px__sock_funcs, ch);

  memset(&server, 0, sizeof(server));
  server.family = r->server.ss_family;
  if (server.family == AF_INET)
    memcpy(&server.addr.addr4, &((struct sockaddr_in *)&r->server)->sin_addr, 4);
  else
    memcpy(&server.addr.addr6, &((struct sockaddr_in6 *)&r->server)->sin6_addr, 16);
  server.udp_port = server.tcp_port = px_addr_port((struct sockaddr *)&r->server);
  if (ares_set_servers_ports(ch->ares, &server) != ARES_SUCCESS) {
    ares_destroy(ch->ares);
    ch->ares = NULL;
    return -EINVAL;
  }
  uv_timer_init(r->loop, &ch->timer);
  ch->timer.data = ch;
  ch->timer_ready = true;
  r->open_handles++;
  return 0;
}

int px_dns_resolver_new(uv_loop_t *loop, const struct sockaddr *server,
                        unsigned timeout_ms, px_dns_resolver_t **out) {
  px_dns_resolver_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return -ENOMEM;
  r->loop = loop;
  memcpy(&r->server, server, px_addr_len(server));
  r->timeout_ms = timeout_ms;
  int rc = px__channel_init(r, &r->udp, false);
  if (rc != 0) {
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

const struct sockaddr *px_dns_resolver_server(const px_dns_resolver_t *r) {
  return (const struct sockaddr *)&r->server;
}

static void px__ares_cb(void *arg, int status, int timeouts,
                        unsigned char *abuf, int alen);

static void px__send(px__dns_lookup_t *lk) {
  px__dns_channel_t *ch = lk->tcp ? &lk->r->tcp : &lk->r->udp;
  lk->t0_ns = uv_hrtime();
  px__enter(ch);
  ares_query(ch->ares, lk->name, 1 /* C_IN */, lk->qtype, px__ares_cb, lk);
  px__leave(ch);
}

/* The signature is c-ares' ares_callback: abuf cannot be const here. */
static void px__ares_cb(void *arg, int status, int timeouts,
                        unsigned char *abuf, int alen) { /* NOLINT(readability-non-const-parameter) */
  px__dns_lookup_t *lk = arg;
  px_dns_resolver_t *r = lk->r;
  px_dns_exchange_t ex;
  (void)timeouts;

  memset(&ex, 0, sizeof(ex));
  ex.engine = lk->tcp ? "tcp" : "udp";
  ex.status = status;
  ex.response = abuf;
  ex.response_len = abuf != NULL && alen > 0 ? (size_t)alen : 0;
  ex.t0_ns = lk->t0_ns;
  ex.t_ns = uv_hrtime();
  if (status == ARES_ECONNREFUSED) {
    ex.sock_error = (lk->tcp ? &r->tcp : &r->udp)->sock_error;
    ex.unreachable = ex.sock_error == -ENETUNREACH || ex.sock_error == -EHOSTUNREACH;
  }

  bool truncated = !lk->tcp && ex.response_len >= 12 && (abuf[2] & 0x02) &&
                   status != ARES_EDESTRUCTION && status != ARES_ECANCELLED;
  bool retry = truncated && !r->closing;
  if (retry && r->tcp.ares == NULL && px__channel_init(r, &r->tcp, true) != 0)
    retry = false;
  ex.final = !retry;
  lk->cb(lk->data, &ex);
  if (retry && !r->closing) {
    lk->tcp = true;
    px__send(lk);
    return;
  }
  if (retry) {
    /* The callback closed the resolver after a non-final exchange. */
    ex.status = ARES_EDESTRUCTION;
    ex.response = NULL;
    ex.response_len = 0;
    ex.final = true;
    lk->cb(lk->data, &ex);
  }
  free(lk);
}

int px_dns_lookup(px_dns_resolver_t *r, const char *name, int qtype,
                  px_dns_exchange_cb cb, void *data) {
  if (r->closing || r->udp.ares == NULL)
    return -ECANCELED;
  size_t n = strlen(name);
  px__dns_lookup_t *lk = malloc(sizeof(*lk) + n + 1);
  if (lk == NULL)
    return -ENOMEM;
  lk->r = r;
  lk->cb = cb;
  lk->data = data;
  lk->qtype = qtype;
  lk->tcp = false;
  memcpy(lk->name, name, n + 1);
  px__send(lk);
  return 0;
}

static void px__close_channel(px__dns_channel_t *ch) {
  if (ch->ares == NULL)
    return;
  if (ch->depth > 0)
    ch->destroy_pending = true;
  else
    px__destroy_channel(ch);
}

void px_dns_resolver_close(px_dns_resolver_t *r) {
  if (r->closing)
    return;
  r->closing = true;
  px__close_channel(&r->udp);
  px__close_channel(&r->tcp);
  px__maybe_free(r);
}
