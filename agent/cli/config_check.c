/* parallax config check [FILE]: what `nginx -t` and `sshd -t` are to their
 * daemons. The file is read by the same code, and each value checked by
 * the same code as its flag, as `parallax run` reads it, so a file that
 * passes here starts a run. */
#include <stdio.h>
#include <string.h>

#include "agent/cli/config.h"
#include "agent/cli/run.h"
#include "common/termsafe.h"
#include "px_version.h"

static void px__usage(FILE *out) {
  fputs("Usage: parallax config check [FILE]\n"
        "Read a config file (default " PX_DEFAULT_CONFIG ") as `parallax run` would\n"
        "and check every key and value. Prints \"FILE: ok\" and exits 0, or\n"
        "\"FILE:LINE: reason\" and exits 2 (what `run` would exit with).\n\n"
        "  -h, --help     this text\n",
        out);
}

int px_cmd_config(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    px__usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? PX_EXIT_USAGE : PX_EXIT_OK;
  }
  if (strcmp(argv[1], "check") != 0 || argc > 3 ||
      (argc == 3 && argv[2][0] == '-' && argv[2][1] != '\0')) {
    if (argc == 3 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
      px__usage(stdout);
      return PX_EXIT_OK;
    }
    fprintf(stderr, "parallax config: expected `check [FILE]` (see parallax config --help)\n");
    return PX_EXIT_USAGE;
  }
  const char *path = argc == 3 ? argv[2] : PX_DEFAULT_CONFIG;
  px_measure_opts_t o;
  px_agent_opts_t agent;
  px_config_t cfg = {0};
  char err[512], shown[PX_TERM_ESCAPED_MAX(sizeof(err))];
  memset(&agent, 0, sizeof(agent));
  px_measure_opts_init(&o);
  int rc = px_config_load(path, &cfg, &o, &agent, err, sizeof(err));
  /* Targets are checked as a run checks them (names, ports). */
  if (rc == 0 && cfg.ntargets > 0 &&
      (rc = px_measure_push_targets(&o, cfg.ntargets, cfg.targets, err, sizeof(err))) != 0) {
    char why[sizeof(err)];
    snprintf(why, sizeof(why), "%s", err);
    snprintf(err, sizeof(err), "%.200s: targets: %.300s", path, why);
  }
  int code = PX_EXIT_OK;
  if (rc != 0) {
    fprintf(stderr, "parallax config: %s\n", px_term_str(err, shown, sizeof(shown)));
    code = PX_EXIT_USAGE;
  } else {
    printf("%s: ok\n", px_term_str(path, shown, sizeof(shown)));
  }
  px_config_free(&cfg);
  px_measure_opts_free(&o);
  return code;
}
