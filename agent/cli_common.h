#ifndef PX_CLI_COMMON_H
#define PX_CLI_COMMON_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "agent/signer.h"
#include "agent/spool.h"
#include "collector-client/upload.h"

/* Flags every agent command shares: where its state lives and how it
 * reaches a collector. */
typedef struct px_agent_opts {
  const char *state_dir_flag;
  const char *collector;
  const char *proxy;
  const char *collector_ca;
  const char *collector_pin;
  char state_dir[4096]; /* resolved by px_agent_state() */
} px_agent_opts_t;

enum {
  PX_OPT_STATE_DIR = 400,
  PX_OPT_COLLECTOR,
  PX_OPT_PROXY,
  PX_OPT_COLLECTOR_CA,
  PX_OPT_COLLECTOR_PIN,
  PX_OPT__AGENT_LAST
};

extern const struct option px_agent_long_options[]; /* zero-terminated */
#define PX_AGENT_NOPTS (PX_OPT__AGENT_LAST - PX_OPT_STATE_DIR)

/* Applies one of the flags above: 0, -EINVAL with a reason, or -ENOENT
 * when code is not one of them. */
int px_agent_apply(px_agent_opts_t *o, int code, const char *arg, char *err, size_t errlen);
void px_agent_flags_usage(FILE *out, bool with_collector);

/* Resolves and creates (0700) the state directory. */
int px_agent_state(px_agent_opts_t *o, char *err, size_t errlen);
/* STATE_DIR/parallax_ed25519 */
void px_agent_key_path(const px_agent_opts_t *o, char *out, size_t n);

/* Starts the signer (creating the key on first use) and opens the spool. */
int px_agent_signing(px_agent_opts_t *o, px_signer_t *signer, px_spool_t *spool, char *err,
                     size_t errlen);

/* Signs one measurement (its exact bytes) and spools it. */
int px_agent_sign_and_spool(px_signer_t *signer, px_spool_t *spool, const char *content,
                            size_t n, char *err, size_t errlen);

/* Drains the spool to o->collector, printing a one-line report on stderr
 * (prog prefixes it). Returns 0 when nothing is left pending. */
int px_agent_upload(px_agent_opts_t *o, px_spool_t *spool, bool respect_backoff,
                    const char *prog);

/* Builds the option table of a command: its own options, the agent's,
 * optionally the measurement flags, and --help. Caller frees. */
struct option *px_agent_options(const struct option *own, bool with_measure);

#endif
