#ifndef PX_CLI_COMMON_H
#define PX_CLI_COMMON_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/signer.h"
#include "agent/spool.h"
#include "agent/drain.h"
#include "agent/outbox.h"
#include "collector-client/upload.h"

/* Flags every agent command shares: where its state lives and how it
 * reaches a collector. */
#define PX_MAX_COLLECTORS 8

typedef struct px_agent_opts {
  const char *state_dir_flag;
  const char *collector;     /* the one in use: the first, or the one that answered */
  const char *collectors[PX_MAX_COLLECTORS]; /* in order of preference */
  size_t ncollectors;
  const char *proxy;
  const char *collector_ca;
  const char *collector_pin;
  bool no_upload;            /* measure, sign and spool; upload later by hand */
  unsigned max_targets;      /* the run budget, 0 for none */
  uint64_t max_runtime_s;
  uint64_t max_bytes;
  uint64_t max_spool;        /* unsent bytes (pending + held) at which a run
                                measures nothing new; 0: PX_DEFAULT_MAX_SPOOL */
  int log_level;             /* PX_LOG_*, 0 for the default */
  const char *public_address; /* scrubbed like the check-in's echo; "unknown" */
  bool state_read_only;      /* the command only reads the state (status) */
  bool state_must_exist;     /* and must not create it: a missing one is an error */
  char state_dir[4096]; /* resolved by px_agent_state() */
} px_agent_opts_t;

enum {
  PX_OPT_STATE_DIR = 400,
  PX_OPT_COLLECTOR,
  PX_OPT_PROXY,
  PX_OPT_COLLECTOR_CA,
  PX_OPT_COLLECTOR_PIN,
  PX_OPT_UPLOAD,
  PX_OPT_NO_UPLOAD,
  PX_OPT_MAX_TARGETS,
  PX_OPT_MAX_RUNTIME,
  PX_OPT_MAX_BYTES,
  PX_OPT_LOG_LEVEL,
  PX_OPT_PUBLIC_ADDRESS,
  PX_OPT_MAX_SPOOL,
  PX_OPT__AGENT_LAST
};

/* 50 MiB: about a week of hourly rounds of the collector's default list
 * (18 targets; a measurement is a few KiB to a few tens of KiB) while no
 * collector answers, and small beside any disk a volunteer's machine has. */
#define PX_DEFAULT_MAX_SPOOL (50ULL * 1024 * 1024)

extern const struct option px_agent_long_options[]; /* zero-terminated */
#define PX_AGENT_NOPTS (PX_OPT__AGENT_LAST - PX_OPT_STATE_DIR)

/* Applies one of the flags above: 0, -EINVAL with a reason, or -ENOENT
 * when code is not one of them. */
int px_agent_apply(px_agent_opts_t *o, int code, const char *arg, char *err, size_t errlen);
void px_agent_flags_usage(FILE *out, bool with_collector);
/* The help of the agent flags a command takes (takes(PX_OPT_…) true). */
void px_agent_flags_usage_for(FILE *out, bool (*takes)(int code));

/* Resolves and creates (0700) the state directory. Root is refused a
 * directory that belongs to another user (the service's dynamic user)
 * unless the command only reads it: files root wrote there would lock the
 * service out of its own key and spool. */
int px_agent_state(px_agent_opts_t *o, char *err, size_t errlen);
/* STATE_DIR/parallax_ed25519 */
void px_agent_key_path(const px_agent_opts_t *o, char *out, size_t n);

/* Starts the signer (creating the key on first use) and opens the spool. */
int px_agent_signing(px_agent_opts_t *o, px_signer_t *signer, px_spool_t *spool, char *err,
                     size_t errlen);

struct px_scrub;
/* This machine's addresses as far as the agent knows them without asking
 * a collector: its interfaces', the public ones earlier check-ins reported
 * and --public-address. Call after px_agent_state. */
void px_agent_known_addresses(const px_agent_opts_t *o, struct px_scrub *s);

/* Drains the spool to o->collector and then, while measurements are still
 * pending because a collector could not be reached, to the fallbacks in
 * order; a backoff after earlier failures is respected for all of them.
 * Logs a one-line report. Returns 0 when nothing is left pending. */
int px_agent_upload(px_agent_opts_t *o, px_spool_t *spool, bool respect_backoff,
                    const char *prog);

/* The config a command reads before its flags: the value of its option
 * `code` (--config), else PX_DEFAULT_CONFIG when that exists, else NULL.
 * Leaves getopt ready for the flags' own pass (opterr 0). */
const char *px_agent_config_path(int argc, char **argv, const struct option *opts, int code);

/* Builds the option table of a command: its own options, the agent's,
 * optionally the measurement flags, and --help. Caller frees. */
struct option *px_agent_options(const struct option *own, bool with_measure);

/* "prog: message" on stderr, the message rendered by px_term_escape:
 * flag errors quote what was typed or read from a config, which may hold
 * escape sequences. */
void px_cli_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The getopt error for c ('?' or ':'): the option, as typed, quoted. */
void px_cli_getopt_error(const char *prog, int c, char **argv);

#endif
