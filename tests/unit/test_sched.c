#include "agent/sched.h"
#include "tests/runner.h"

typedef struct {
  px_sched_op_t op;
  px_sched_t *sched;
  int id;
  int *log;
  int *nlog;
  unsigned *max_inflight;
  bool finish_now;
} px__op_t;

static void px__start(px_sched_op_t *sop) {
  px__op_t *op = (px__op_t *)sop;
  op->log[(*op->nlog)++] = op->id;
  if (op->sched->inflight > *op->max_inflight)
    *op->max_inflight = op->sched->inflight;
  if (op->finish_now)
    px_sched_done(op->sched);
}

PX_TEST(sched_limit_and_order) {
  px_sched_t s;
  px__op_t ops[10];
  int log[10] = {0}, nlog = 0;
  unsigned max_inflight = 0;
  (void)state;
  px_sched_init(&s, 3);
  for (int i = 0; i < 10; i++) {
    ops[i] = (px__op_t){{px__start, NULL}, &s, i, log, &nlog, &max_inflight, false};
    px_sched_submit(&s, &ops[i].op);
  }
  assert_int_equal(nlog, 3);
  assert_int_equal(s.inflight, 3);
  for (int done = 0; done < 10; done++)
    px_sched_done(&s);
  assert_int_equal(nlog, 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(log[i], i); /* first come, first served */
  assert_int_equal(max_inflight, 3);
  assert_int_equal(s.inflight, 0);
}

PX_TEST(sched_reentrant_done) {
  px_sched_t s;
  enum { N = 100000 };
  static px__op_t ops[N];
  static int log[N];
  int nlog = 0;
  unsigned max_inflight = 0;
  (void)state;
  /* Ops that finish inside start() must not recurse once per op: 100,000
   * of them would overflow the stack. */
  px_sched_init(&s, 1);
  px__op_t blocker = {{px__start, NULL}, &s, -1, log, &nlog, &max_inflight, false};
  px_sched_submit(&s, &blocker.op);
  nlog = 0;
  for (int i = 0; i < N; i++) {
    ops[i] = (px__op_t){{px__start, NULL}, &s, i, log, &nlog, &max_inflight, true};
    px_sched_submit(&s, &ops[i].op);
  }
  assert_int_equal(nlog, 0);
  px_sched_done(&s); /* the blocker finishes; everything else drains */
  assert_int_equal(nlog, N);
  assert_int_equal(s.inflight, 0);
  assert_int_equal(max_inflight, 1);
}
