#include "agent/sched.h"

#include <stddef.h>

void px_sched_init(px_sched_t *s, unsigned limit) {
  s->limit = limit > 0 ? limit : 1;
  s->inflight = 0;
  s->head = s->tail = NULL;
  s->pumping = false;
}

/* Iterative on purpose: ops that fail synchronously would otherwise recurse
 * once per queued op. The outermost caller drains the queue. */
static void px__pump(px_sched_t *s) {
  if (s->pumping)
    return;
  s->pumping = true;
  while (s->inflight < s->limit && s->head != NULL) {
    px_sched_op_t *op = s->head;
    s->head = op->next;
    if (s->head == NULL)
      s->tail = NULL;
    op->next = NULL;
    s->inflight++;
    op->start(op);
  }
  s->pumping = false;
}

void px_sched_submit(px_sched_t *s, px_sched_op_t *op) {
  op->next = NULL;
  if (s->tail != NULL)
    s->tail->next = op;
  else
    s->head = op;
  s->tail = op;
  px__pump(s);
}

void px_sched_done(px_sched_t *s) {
  if (s->inflight > 0)
    s->inflight--;
  px__pump(s);
}
