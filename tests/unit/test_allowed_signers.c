/* common/allowed_signers.c and key rotation: the validity window OpenSSH
 * writes as valid-after/valid-before, in the exact form the collector's
 * GET /api/v1/allowed_signers prints for a rotated key, judged the way
 * `ssh-keygen -Y verify -Overify-time=` judges it. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/allowed_signers.h"
#include "common/sshsig.h"
#include "tests/runner.h"

static void px__put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static time_t px__t(const char *s) {
  time_t t;
  assert_int_equal(px_allowed_signers_parse_time(s, &t), 0);
  return t;
}

PX_TEST(allowed_signers_valid_before) {
  (void)state;
  char *d = px_test_tmpdir(), path[512], err[512], text[2048];
  EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t old_key, new_key;
  assert_int_equal(px_ssh_pubkey_from_pkey(k1, &old_key), 0);
  assert_int_equal(px_ssh_pubkey_from_pkey(k2, &new_key), 0);
  char *l1 = px_ssh_pubkey_line(&old_key), *l2 = px_ssh_pubkey_line(&new_key);
  snprintf(path, sizeof(path), "%s/allowed_signers", d);

  /* What the collector serves after a rotation at 2014-10-20 12:00:00Z. */
  snprintf(text, sizeof(text),
           "# parallax collector\n"
           "%s namespaces=\"parallax-measurement-v1\",valid-before=\"20141020120000Z\" %s\n"
           "%s namespaces=\"parallax-measurement-v1\" %s\n",
           old_key.key_id, l1, new_key.key_id, l2);
  px__put(path, text);
  px_allowed_signers_t s;
  assert_int_equal(px_allowed_signers_load(path, &s, err, sizeof(err)), 0);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.v[0].valid_before, px__t("20141020120000Z"));
  assert_int_equal(s.v[0].valid_after, 0);
  assert_int_equal(s.v[1].valid_before, 0);
  assert_string_equal(s.v[0].namespaces, "parallax-measurement-v1");
  /* The bound itself is still valid, as in OpenSSH (the collector refuses
   * measurements starting at it, so nothing stored depends on that). */
  assert_non_null(px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20141020115959Z")));
  assert_non_null(px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20141020120000Z")));
  assert_null(px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20141020120001Z")));
  assert_null(px_allowed_signers_find(&s, &old_key, "parallax-key-rotation-v1", px__t("20141020Z")));
  assert_non_null(px_allowed_signers_find(&s, &new_key, PX_SSHSIG_NAMESPACE, px__t("20300101Z")));
  px_allowed_signers_free(&s);

  /* A window, options in any order and case, unquoted values; and the same
   * key listed twice with two windows (e.g. merged exports): the entry
   * whose window holds the time answers. */
  snprintf(text, sizeof(text),
           "%s VALID-BEFORE=20150101Z,valid-after=\"201410201200Z\",namespaces=\"*\" %s\n"
           "again valid-after=\"20160101000000Z\" %s\n",
           old_key.key_id, l1, l1);
  px__put(path, text);
  assert_int_equal(px_allowed_signers_load(path, &s, err, sizeof(err)), 0);
  assert_int_equal(s.n, 2);
  assert_null(px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20141020Z") - 86400));
  const px_allowed_signer_t *e =
      px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20141231235959Z"));
  assert_non_null(e);
  assert_string_equal(e->principals, old_key.key_id);
  assert_null(px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20150601Z")));
  e = px_allowed_signers_find(&s, &old_key, PX_SSHSIG_NAMESPACE, px__t("20160601Z"));
  assert_non_null(e);
  assert_string_equal(e->principals, "again");
  px_allowed_signers_free(&s);

  /* Malformed times are errors naming the line, never "no bound". */
  const char *bad[] = {"valid-before=\"2014102\"", "valid-before=\"20141320Z\"",
                       "valid-before=\"2014102012000Z\"", "valid-after=\"2014-10-20\"",
                       "valid-before=\"20141020120000ZZ\"", "valid-before=\"20141020"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(text, sizeof(text), "# one comment\n%s %s %s\n", old_key.key_id, bad[i], l1);
    px__put(path, text);
    if (px_allowed_signers_load(path, &s, err, sizeof(err)) != -EINVAL)
      fail_msg("'%s' should be refused", bad[i]);
    assert_non_null(strstr(err, ":2:"));
  }
  time_t t;
  assert_int_equal(px_allowed_signers_parse_time("19700101000000Z", &t), 0);
  assert_int_equal(t, 0);
  assert_int_equal(px_allowed_signers_parse_time("20141020120000Z", &t), 0);
  assert_int_equal(t, 1413806400);
  assert_int_equal(px_allowed_signers_parse_time("", &t), -EINVAL);
  assert_int_equal(px_allowed_signers_parse_time("Z", &t), -EINVAL);

  free(l1);
  free(l2);
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
  px_test_rmrf(d);
  free(d);
}
