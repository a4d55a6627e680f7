#ifndef PX_SCHED_H
#define PX_SCHED_H

#include <stdbool.h>

/* Bounds the operations in flight (DNS lookups, TLS flows) across every
 * measurement of a run: first come, first served, so older measurements
 * finish first and the number of live measurements stays bounded too. */
typedef struct px_sched_op px_sched_op_t;
struct px_sched_op {
  void (*start)(px_sched_op_t *op); /* must end in exactly one px_sched_done */
  px_sched_op_t *next;
};

typedef struct px_sched {
  unsigned limit;
  unsigned inflight;
  px_sched_op_t *head, *tail;
  bool pumping;
} px_sched_t;

void px_sched_init(px_sched_t *s, unsigned limit);
/* Starts op now if a slot is free, else queues it. op is the caller's and
 * must live until its px_sched_done. */
void px_sched_submit(px_sched_t *s, px_sched_op_t *op);
/* Frees the slot of a finished op and starts queued ones. Re-entrant: an op
 * that finishes inside its own start() is fine. */
void px_sched_done(px_sched_t *s);

#endif
