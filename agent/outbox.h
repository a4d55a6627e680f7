#ifndef PX_OUTBOX_H
#define PX_OUTBOX_H

#include <stddef.h>
#include <stdio.h>

struct px_signer;
struct px_spool;

/* Where a run's measurements go once the engine has emitted them, off the
 * event loop. Signing is a round trip to the signer process and spooling
 * is an fsync: either can take tens of milliseconds on a Raspberry Pi's SD
 * card, and while the loop waits every other flow's clock runs (a reply
 * that arrived meanwhile would be timed late, or time out). So the loop
 * only hands a line over; one worker thread signs each line, writes it to
 * the spool, and makes each batch (whatever queued up while it worked)
 * durable with one directory fsync. A line counts as kept only after its
 * batch is synced, and only then is it written to the run's output (so
 * the output lists exactly what the spool holds, and a slow pipe or disk
 * behind stdout does not stall the loop either).
 *
 * The loop never waits for the worker, except when more than
 * PX_OUTBOX_MAX_QUEUED bytes are queued (the disk or the signer cannot
 * keep up at all): then px_outbox_put waits for room rather than let the
 * queue take the machine's memory. */
typedef struct px_outbox px_outbox_t;

#define PX_OUTBOX_MAX_QUEUED (64u << 20)

typedef struct px_outbox_report {
  size_t spooled; /* signed and durable in the spool */
  size_t held;    /* kept unsigned in the held directory */
  size_t lost;    /* handed over but not kept (after the first error) */
  int error;      /* 0, or the first error: -ENOSPC for any failure to
                   * keep, -EIO for one to write the output */
  int write_errno; /* with -EIO: why the output could not be written */
  char err[512];  /* what it was, for the volunteer */
} px_outbox_report_t;

/* Starts the worker. output (NULL: none), signer, spool and held_dir are
 * borrowed and must outlive px_outbox_finish; nothing else may use the
 * signer or write output meanwhile. Without a signer, lines only go to
 * output. Returns 0 or a negative errno. */
int px_outbox_start(px_outbox_t **out, FILE *output, struct px_signer *signer,
                    struct px_spool *spool, const char *held_dir);

/* Hands over line[0..n) (the compact JSON, no newline; the outbox takes
 * ownership of line, allocated with malloc). held_why NULL: sign and
 * spool it; otherwise keep it unsigned in held_dir for that reason.
 * Returns 0, or the first error once the worker has met one (line is
 * then freed, not kept: the run should stop, and px_outbox_finish says
 * why), or -ENOMEM. */
int px_outbox_put(px_outbox_t *ob, char *line, size_t n, const char *held_why);

/* Lines kept so far (a snapshot, for progress). */
size_t px_outbox_kept(px_outbox_t *ob);

/* Waits until everything handed over is kept (or lost to an error),
 * stops the worker and frees the outbox. Returns rep->error. */
int px_outbox_finish(px_outbox_t *ob, px_outbox_report_t *rep);

/* Without a loop to keep free (`submit`, releasing held measurements):
 * signs one measurement (its exact bytes) and spools it durably, now. */
int px_sign_and_spool(struct px_signer *signer, struct px_spool *spool, const char *content,
                      size_t n, char *err, size_t errlen);

#endif
