/* SSHSIG signatures as anyone may upload them: armored text verified over
 * a fixed message in the measurement namespace, the way the collector's
 * submit handler and `parallax verify` call px_sshsig_verify_canonical;
 * and the same bytes read as an OpenSSH public key line. A signature that
 * verifies must name a key that round-trips through its own public key
 * line, and its canonical armour must verify with the same key and be its
 * own canonical armour. The seeds are real `ssh-keygen -Y sign` outputs
 * over PX__MESSAGE, and variants of them ssh-keygen also accepts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/sshsig.h"
#include "tests/fuzz/fuzz_common.h"

#define PX__MESSAGE "{\"parallax\":\"fuzz message\"}"

static void px__check_key(const px_ssh_pubkey_t *k) {
  char *line = px_ssh_pubkey_line(k);
  px_ssh_pubkey_t back;
  if (line == NULL || px_ssh_pubkey_parse(line, &back) != 0 ||
      memcmp(back.blob, k->blob, sizeof(k->blob)) != 0 || strcmp(back.key_id, k->key_id) != 0)
    px_fuzz_fail("a key does not round-trip through its public key line");
  free(line);
}

static void px__check_canonical(const char *canonical, const char *ns,
                                const px_ssh_pubkey_t *signer) {
  px_ssh_pubkey_t again;
  char *twice = NULL;
  if (canonical == NULL ||
      px_sshsig_verify_canonical(canonical, strlen(canonical), ns, (const uint8_t *)PX__MESSAGE,
                                 strlen(PX__MESSAGE), &again, NULL, &twice) != 0)
    px_fuzz_fail("the canonical armour of a good signature does not verify");
  if (memcmp(again.blob, signer->blob, sizeof(again.blob)) != 0 || strcmp(twice, canonical) != 0)
    px_fuzz_fail("the canonical armour is not its own canonical armour, or names another key");
  free(twice);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *namespaces[] = {PX_SSHSIG_NAMESPACE, PX_SSHSIG_ROTATION_NAMESPACE};
  for (int i = 0; i < 2; i++) {
    px_ssh_pubkey_t signer;
    const char *why = NULL;
    char *canonical = NULL;
    int rc = px_sshsig_verify_canonical((const char *)data, size, namespaces[i],
                                        (const uint8_t *)PX__MESSAGE, strlen(PX__MESSAGE), &signer,
                                        &why, &canonical);
    if (rc == 0) {
      px__check_key(&signer);
      px__check_canonical(canonical, namespaces[i], &signer);
      free(canonical);
    } else if ((rc != -EBADMSG && rc != -EPERM && rc != -ENOMEM) || why == NULL)
      px_fuzz_fail("px_sshsig_verify returned %d without a reason", rc);
  }

  char *text = px_fuzz_cstr(data, size);
  px_ssh_pubkey_t key;
  if (px_ssh_pubkey_parse(text, &key) == 0)
    px__check_key(&key);
  free(text);
  return 0;
}
