/* parallax: the agent's command line. One binary, one subcommand per job. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <ares.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "agent/cli_measure.h"
#include "px_version.h"

static void px__usage(FILE *out) {
  fputs("Usage: parallax COMMAND [FLAG]...\n"
        "Multi-vantage measurements of DNS answers and TLS certificate chains.\n\n"
        "Commands:\n"
        "  measure    measure targets now and print one JSON line per target\n\n"
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
    return PX_EXIT_OK;
  }

  int rc = ares_library_init(ARES_LIB_INIT_ALL);
  if (rc != ARES_SUCCESS) {
    fprintf(stderr, "parallax: cannot initialise c-ares: %s\n", ares_strerror(rc));
    return PX_EXIT_RUNTIME;
  }
  int exit_code;
  if (strcmp(cmd, "measure") == 0) {
    exit_code = px_cmd_measure(argc - 1, argv + 1);
  } else {
    fprintf(stderr, "parallax: unknown command '%s' (see parallax --help)\n", cmd);
    exit_code = PX_EXIT_USAGE;
  }
  ares_library_cleanup();
  return exit_code;
}
