/* parallax: the agent's command line. One binary, one subcommand per job. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <ares.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "agent/cli/keys.h"
#include "agent/cli/measure.h"
#include "agent/cli/run.h"
#include "px_version.h"

static void px__usage(FILE *out) {
  fputs("Usage: parallax COMMAND [FLAG]...\n"
        "Multi-vantage measurements of DNS answers and TLS certificate chains.\n\n"
        "Commands:\n"
        "  setup      consent, config and key: what a volunteer runs once\n"
        "  run        one round: check in, measure, sign, spool, upload (timers run this)\n"
        "  measure    measure targets now and print one JSON line per target\n"
        "  compare    the collector's cross-country view of a domain\n"
        "  audit      check a collector's measurement log: signed head, every leaf\n"
        "  submit     sign measurements from a JSONL file, spool and upload them\n"
        "  upload     send the spooled measurements to a collector now\n"
        "  status     key id, recent runs, pending uploads, the next timer firing\n"
        "  config     config check [FILE]: is a config file one `run` accepts?\n"
        "  keygen     create the agent's Ed25519 signing key\n"
        "  verify     verify the signatures of measurements or collector exports\n\n"
        "Run 'parallax COMMAND --help' for the flags of a command.\n"
        "  -h, --help     this text\n"
        "  --version      versions of parallax and its libraries\n",
        out);
}

int main(int argc, char **argv) {
  /* A peer that closes early must not kill the process on write. */
  signal(SIGPIPE, SIG_IGN);

  if (argc < 2) {
    px__usage(stderr);
    return PX_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    px__usage(stdout);
    return PX_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("parallax %s (libuv %s, %s, c-ares %s)\n", PX_SOFTWARE_VERSION,
           uv_version_string(), OpenSSL_version(OPENSSL_VERSION), ares_version(NULL));
#ifdef PX_TEST_HOOKS
    /* Said, so that nobody ships a test build by mistake. */
    puts("test build: PX_TEST_* hooks honoured");
#endif
    return PX_EXIT_OK;
  }

  int rc = ares_library_init(ARES_LIB_INIT_ALL);
  if (rc != ARES_SUCCESS) {
    fprintf(stderr, "parallax: cannot initialise c-ares: %s\n", ares_strerror(rc));
    return PX_EXIT_RUNTIME;
  }
  int exit_code;
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {
      {"setup", px_cmd_setup},     {"run", px_cmd_run},         {"compare", px_cmd_compare},
      {"measure", px_cmd_measure}, {"submit", px_cmd_submit}, {"upload", px_cmd_upload},
      {"status", px_cmd_status},   {"keygen", px_cmd_keygen}, {"verify", px_cmd_verify},
      {"config", px_cmd_config},   {"audit", px_cmd_audit},
  };
  exit_code = -1;
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (strcmp(cmd, cmds[i].name) == 0)
      exit_code = cmds[i].fn(argc - 1, argv + 1);
  if (exit_code < 0) {
    fprintf(stderr, "parallax: unknown command '%s' (see parallax --help)\n", cmd);
    exit_code = PX_EXIT_USAGE;
  }
  ares_library_cleanup();
  return exit_code;
}
