#ifndef PX_DNS_LATE_H
#define PX_DNS_LATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* Late DNS replies. An on-path injector (the Great Firewall's way) answers
 * a UDP query first and the genuine answer arrives tens of milliseconds
 * later; c-ares 1.18 takes the first reply and never shows the second. So
 * beside every c-ares UDP lookup the probe sends the same question itself,
 * on one UDP socket per resolver (its own transaction ids), and keeps
 * listening for a window after the first reply to it: every further reply
 * to that question is reported. The first reply on this socket is not
 * reported (c-ares's own exchange stands for it). */
typedef struct px_dns_late px_dns_late_t;
typedef struct px_dns_watch px_dns_watch_t;

/* A further reply (response != NULL, valid during the call; t_ns its
 * arrival), or the end of the watch (response NULL): after that call the
 * watch is gone. */
typedef void (*px_dns_late_cb)(void *data, const uint8_t *response, size_t len, uint64_t t_ns);

/* The listener for one resolver (server, port included). 0 or a negative
 * error. */
int px_dns_late_new(uv_loop_t *loop, const struct sockaddr *server, px_dns_late_t **out);

/* Sends name/qtype and watches: up to timeout_ms for a first reply, then
 * window_ms after it. *t0_ns gets the sending time. cb runs from the loop
 * only (never before this returns). 0, or a negative error (no callback). */
int px_dns_late_watch(px_dns_late_t *l, const char *name, int qtype, unsigned timeout_ms,
                      unsigned window_ms, px_dns_late_cb cb, void *data, uint64_t *t0_ns);

/* Ends every watch (their callbacks run with NULL) and closes the socket;
 * frees itself in the last close callback. */
void px_dns_late_close(px_dns_late_t *l);

#endif
