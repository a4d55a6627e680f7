/* The volunteer's config file (/etc/parallax/parallax.conf, libinih), read
 * from memory through px_config_load_stream, the code px_config_load runs
 * on the file, then its target list taken the way `parallax run` takes
 * it. A config is written by a person or by `parallax setup`, not by an
 * attacker; it is fuzzed because a typo must give a message, not a
 * crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/config.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0; /* fmemopen refuses size 0 in older C libraries */
  char *copy = px_fuzz_cstr(data, size);
  FILE *f = fmemopen(copy, size, "r");
  if (f == NULL)
    px_fuzz_fail("fmemopen");
  px_config_t cfg;
  px_measure_opts_t o;
  px_agent_opts_t agent;
  char err[512] = "";
  memset(&cfg, 0, sizeof(cfg));
  memset(&agent, 0, sizeof(agent));
  px_measure_opts_init(&o);
  int rc = px_config_load_stream(f, "parallax.conf", &cfg, &o, &agent, err, sizeof(err));
  fclose(f);
  if (rc == 0) {
    if (px_measure_push_targets(&o, cfg.ntargets, cfg.targets, err, sizeof(err)) == 0 &&
        o.ntargets != cfg.ntargets)
      px_fuzz_fail("%zu targets read, %zu taken", cfg.ntargets, o.ntargets);
  } else if (err[0] == '\0') {
    px_fuzz_fail("a refused config without a message");
  }
  px_config_free(&cfg);
  px_measure_opts_free(&o);
  free(copy);
  return 0;
}
