#ifndef PX_CLI_MEASURE_H
#define PX_CLI_MEASURE_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#include <jansson.h>

#include "common/target.h"

/* Exit codes of every parallax command. */
#define PX_EXIT_OK 0
#define PX_EXIT_RUNTIME 1
#define PX_EXIT_USAGE 2

/* The measurement flags, shared by `measure` and the commands that measure
 * (`run`): parsed once into this, then turned into an engine run. */
typedef struct px_measure_opts {
  struct sockaddr_storage *resolvers;
  size_t nresolvers;
  int system_resolver;              /* -1: only when no --resolver */
  struct sockaddr_storage *addresses;
  size_t naddresses;
  unsigned port;
  const char *ca_file;
  unsigned timeout_ms;
  unsigned dns_late_window_ms;
  unsigned parallel;
  char probe_cc[3];
  char probe_asn[16];
  bool cc_set, asn_set;             /* given, rather than the defaults */
  bool allow_nonpublic;
  const char *output;               /* NULL or "-": stdout */
  const char *targets_file;
  bool summary;
  bool no_tls;                      /* DNS only: no TCP or TLS phase */
  px_target_t *targets;
  size_t ntargets;
} px_measure_opts_t;

void px_measure_opts_init(px_measure_opts_t *o);
void px_measure_opts_free(px_measure_opts_t *o);

/* getopt_long codes of the measurement flags (above 255, so they never
 * collide with short options). */
enum {
  PX_OPT_RESOLVER = 256,
  PX_OPT_SYSTEM_RESOLVER,
  PX_OPT_NO_SYSTEM_RESOLVER,
  PX_OPT_ADDRESS,
  PX_OPT_PORT,
  PX_OPT_CA_FILE,
  PX_OPT_TIMEOUT,
  PX_OPT_PARALLEL,
  PX_OPT_PROBE_CC,
  PX_OPT_PROBE_ASN,
  PX_OPT_ALLOW_NONPUBLIC,
  PX_OPT_OUTPUT,
  PX_OPT_TARGETS_FILE,
  PX_OPT_SUMMARY,
  PX_OPT_DNS_LATE_WINDOW,
  PX_OPT_TLS,
  PX_OPT_NO_TLS,
  PX_OPT__MEASURE_LAST
};

/* The long options above, terminated by a zero entry. */
extern const struct option px_measure_long_options[];

/* Applies one parsed flag. Returns 0, or -EINVAL with a one-line reason
 * in err; unknown codes return -ENOENT so callers can handle their own. */
int px_measure_apply(px_measure_opts_t *o, int code, const char *arg,
                     char *err, size_t errlen);

/* Adds TARGET arguments and the targets file (parsed with o->port as the
 * default port, so call after every flag). Returns 0 or -EINVAL + reason,
 * naming the file and line for the targets file. */
int px_measure_add_targets(px_measure_opts_t *o, int argc, char **argv,
                           char *err, size_t errlen);

/* Runs the measurements o describes (resolvers, TLS context, output) and
 * returns the process exit code; prog prefixes messages. */
struct px_signer;
struct px_spool;
struct px_scrub;
struct px_engine_stats;

/* How a command runs the measurements beyond o's flags. */
typedef struct px_exec {
  struct px_signer *signer; /* with spool: sign and spool every measurement */
  struct px_spool *spool;
  long clock_offset;        /* seconds to add to the local clock */
  bool no_stdout;           /* without --output, write no JSON lines at all */
  json_t *annotations;      /* extra annotations (string values), or NULL */
  const char *network_name; /* probe_network_name, or NULL */
  /* Before signing, our own addresses are scrubbed; a measurement that is
   * about us (or every one, with hold_all set to the reason) is kept in
   * held_dir instead of the spool. */
  const struct px_scrub *scrub;
  const char *hold_all;
  const char *held_dir;
  uint64_t max_runtime_ms;  /* the run budget, 0 for none */
  uint64_t max_bytes;
  struct px_engine_stats *stats; /* optional out */
  size_t *held;             /* optional out: how many were held */
  bool *offline;            /* optional out: no resolver could be reached at all */
} px_exec_t;

/* x may be NULL (print the JSON lines, nothing else). */
int px_measure_execute(px_measure_opts_t *o, const px_exec_t *x, const char *prog);

/* Adds targets from a list (no file). */
int px_measure_push_targets(px_measure_opts_t *o, size_t n, char *const *list, char *err,
                            size_t errlen);

/* `parallax measure …`: returns the process exit code. */
int px_cmd_measure(int argc, char **argv);

/* Usage text of the measurement flags, for every command that takes them. */
void px_measure_flags_usage(FILE *out);

#endif
