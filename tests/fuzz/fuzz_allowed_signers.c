/* An allowed_signers file (ssh-keygen(1) ALLOWED SIGNERS), as `parallax
 * verify` reads one from a researcher or a collector's
 * /api/v1/allowed_signers: parsed from memory with the same code as from
 * a file, then every entry looked up the way verification does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/allowed_signers.h"
#include "common/sshsig.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* fmemopen wants a writable buffer (older C libraries) and no size 0;
   * an empty file is an empty list either way. */
  char *copy = px_fuzz_cstr(data, size);
  px_allowed_signers_t s;
  int rc = 0;
  memset(&s, 0, sizeof(s));
  if (size > 0) {
    char err[256];
    FILE *f = fmemopen(copy, size, "r");
    if (f == NULL)
      px_fuzz_fail("fmemopen");
    rc = px_allowed_signers_load_stream(f, "fuzz", &s, err, sizeof(err));
    fclose(f);
  }
  if (rc == 0) {
    for (size_t i = 0; i < s.n; i++) {
      const px_allowed_signer_t *e = &s.v[i];
      if (e->principals == NULL)
        px_fuzz_fail("entry %zu has no principals", i);
      /* What `parallax verify` asks: this key, this namespace, these times. */
      time_t times[] = {0, PX_FUZZ_NOW, e->valid_after, e->valid_before};
      for (size_t t = 0; t < sizeof(times) / sizeof(times[0]); t++) {
        px_allowed_signers_find(&s, &e->key, PX_SSHSIG_NAMESPACE, times[t]);
        px_allowed_signers_find(&s, &e->key, PX_SSHSIG_ROTATION_NAMESPACE, times[t]);
      }
    }
    px_allowed_signers_free(&s);
  } else if (s.n != 0 || s.v != NULL) {
    px_fuzz_fail("a failed load left entries behind");
  }
  /* The time syntax on its own (valid-after/valid-before values). */
  char *text = px_fuzz_cstr(data, size < 32 ? size : 32);
  time_t t;
  px_allowed_signers_parse_time(text, &t);
  free(text);
  free(copy);
  return 0;
}
