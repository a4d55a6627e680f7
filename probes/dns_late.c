#include "probes/dns_late.h"

#include <ares.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "common/netaddr.h"

/* One question in flight on the listener's socket. Owned by the listener's
 * list until its timer's close callback frees it. */
struct px_dns_watch {
  uv_timer_t timer; /* first member: the close callback gets the watch */
  px_dns_late_t *l;
  uint16_t id;
  bool got_first, ended;
  unsigned window_ms;
  uint8_t question[300]; /* the query after its header: compared with replies */
  size_t question_len;
  px_dns_late_cb cb;
  void *data;
  px_dns_watch_t *next;
};

struct px_dns_late {
  uv_udp_t udp;
  uv_loop_t *loop;
  px_dns_watch_t *watches;
  int open_handles;
  bool closing;
  uint8_t buf[65536];
};

static void px__maybe_free(px_dns_late_t *l) {
  if (l->closing && l->open_handles == 0)
    free(l);
}

static void px__watch_closed(uv_handle_t *h) {
  px_dns_watch_t *w = (px_dns_watch_t *)h;
  px_dns_late_t *l = w->l;
  free(w);
  l->open_handles--;
  px__maybe_free(l);
}

/* Unlinks w, tells its owner and closes its timer. */
static void px__end(px_dns_watch_t *w) {
  if (w->ended)
    return;
  w->ended = true;
  for (px_dns_watch_t **pp = &w->l->watches; *pp != NULL; pp = &(*pp)->next)
    if (*pp == w) {
      *pp = w->next;
      break;
    }
  uv_timer_stop(&w->timer);
  w->cb(w->data, NULL, 0, 0);
  uv_close((uv_handle_t *)&w->timer, px__watch_closed);
}

static void px__timer_cb(uv_timer_t *t) {
  px__end((px_dns_watch_t *)t);
}

static void px__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  px_dns_late_t *l = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)l->buf, sizeof(l->buf));
}

/* A reply is for a watch when it has the watch's id, is a response, and
 * repeats the question exactly (no one else's answer gets counted). */
static void px__recv_cb(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags) {
  px_dns_late_t *l = u->data;
  const uint8_t *p = (const uint8_t *)buf->base;
  (void)from; /* the socket is connected: only the server's datagrams come */
  (void)flags;
  if (nread < 12 || (p[2] & 0x80) == 0 || ((p[4] << 8) | p[5]) != 1)
    return;
  uint16_t id = (uint16_t)((p[0] << 8) | p[1]);
  for (px_dns_watch_t *w = l->watches; w != NULL; w = w->next) {
    if (w->id != id || (size_t)nread < 12 + w->question_len ||
        memcmp(p + 12, w->question, w->question_len) != 0)
      continue;
    if (!w->got_first) {
      /* The first reply to our copy of the question: from now on the
       * window runs. */
      w->got_first = true;
      uv_timer_start(&w->timer, px__timer_cb, w->window_ms, 0);
    } else {
      w->cb(w->data, p, (size_t)nread, uv_hrtime());
    }
    return;
  }
}

int px_dns_late_new(uv_loop_t *loop, const struct sockaddr *server, px_dns_late_t **out) {
  px_dns_late_t *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return -ENOMEM;
  l->loop = loop;
  int rc = uv_udp_init(loop, &l->udp);
  if (rc != 0) {
    free(l);
    return rc;
  }
  l->udp.data = l;
  l->open_handles = 1;
  rc = uv_udp_connect(&l->udp, server);
  if (rc == 0)
    rc = uv_udp_recv_start(&l->udp, px__alloc_cb, px__recv_cb);
  if (rc != 0) {
    px_dns_late_close(l);
    return rc;
  }
  *out = l;
  return 0;
}

static void px__udp_closed(uv_handle_t *h) {
  px_dns_late_t *l = h->data;
  l->open_handles--;
  px__maybe_free(l);
}

static bool px__id_taken(const px_dns_late_t *l, uint16_t id) {
  for (const px_dns_watch_t *w = l->watches; w != NULL; w = w->next)
    if (w->id == id)
      return true;
  return false;
}

int px_dns_late_watch(px_dns_late_t *l, const char *name, int qtype, unsigned timeout_ms,
                      unsigned window_ms, px_dns_late_cb cb, void *data, uint64_t *t0_ns) {
  if (l->closing)
    return -ECANCELED;
  px_dns_watch_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return -ENOMEM;
  /* A random id, not one in flight: someone guessing ids cannot feed the
   * watch more than anyone on the path could anyway. */
  uint16_t id = 0;
  for (int tries = 0; tries < 16; tries++) {
    if (RAND_bytes((unsigned char *)&id, sizeof(id)) != 1) {
      free(w);
      return -EIO;
    }
    if (!px__id_taken(l, id))
      break;
  }
  unsigned char *q = NULL;
  int qlen = 0;
  if (ares_create_query(name, 1 /* IN */, qtype, id, 1, &q, &qlen, 0) != ARES_SUCCESS || qlen < 12 ||
      (size_t)qlen - 12 > sizeof(w->question)) {
    ares_free_string(q);
    free(w);
    return -EINVAL;
  }
  memcpy(w->question, q + 12, (size_t)qlen - 12);
  w->question_len = (size_t)qlen - 12;
  uv_buf_t b = uv_buf_init((char *)q, (unsigned)qlen);
  int rc = uv_udp_try_send(&l->udp, &b, 1, NULL);
  ares_free_string(q);
  if (rc < 0) {
    free(w);
    return rc;
  }
  w->l = l;
  w->id = id;
  w->window_ms = window_ms;
  w->cb = cb;
  w->data = data;
  uv_timer_init(l->loop, &w->timer);
  l->open_handles++;
  uv_timer_start(&w->timer, px__timer_cb, timeout_ms, 0);
  w->next = l->watches;
  l->watches = w;
  *t0_ns = uv_hrtime();
  return 0;
}

void px_dns_late_close(px_dns_late_t *l) {
  if (l == NULL || l->closing)
    return;
  while (l->watches != NULL)
    px__end(l->watches);
  l->closing = true;
  uv_close((uv_handle_t *)&l->udp, px__udp_closed);
}
