/* The collector's check-in answer as the agent reads it
 * (px_checkin_parse): a hostile or broken collector must not crash a
 * volunteer's agent, and must not get an address that is not public
 * unicast probed (unless the test-world flag allows it). The targets it
 * hands out become measurement targets: they must parse as such. */
#include <stdlib.h>
#include <string.h>

#include "collector-client/checkin.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *raw = px_fuzz_cstr(data, size);
  for (int allow = 0; allow < 2; allow++) {
    px_checkin_t c;
    char err[256];
    if (px_checkin_parse(raw, allow, &c, err, sizeof(err)) != 0)
      continue;
    if (strlen(c.probe_cc) != 2 || strncmp(c.probe_asn, "AS", 2) != 0)
      px_fuzz_fail("probe_cc '%s' / probe_asn '%s' not normalised", c.probe_cc, c.probe_asn);
    for (size_t i = 0; i < c.ntargets; i++) {
      const px_checkin_target_t *t = &c.targets[i];
      px_target_t parsed;
      const char *reason;
      if (px_target_parse(t->input, 443, &parsed, &reason) != 0)
        px_fuzz_fail("target '%s' handed on but not a target: %s", t->input, reason);
      for (size_t k = 0; k < t->ncontrols; k++)
        if (!allow && !px_addr_is_public((const struct sockaddr *)&t->controls[k], NULL))
          px_fuzz_fail("a non-public control address got through");
    }
    px_checkin_free(&c);
  }
  free(raw);
  return 0;
}
