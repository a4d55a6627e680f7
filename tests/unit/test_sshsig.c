/* SSHSIG signing and verification, allowed_signers parsing, and interop
 * with the real ssh-keygen in both directions. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/keyfile.h"
#include "common/allowed_signers.h"
#include "common/sshsig.h"
#include "tests/runner.h"

static const char px__msg[] = "{\"input\":\"www.icloud.com\",\"probe_cc\":\"CN\"}";


static void px__write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static char *px__read(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = calloc(1, 65536);
  size_t n = fread(buf, 1, 65535, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

PX_TEST(sshsig_roundtrip_and_rejections) {
  (void)state;
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t pub, got;
  char *sig = NULL, *sig2 = NULL;
  const char *why;
  size_t n = strlen(px__msg);

  assert_int_equal(px_ssh_pubkey_from_pkey(key, &pub), 0);
  assert_int_equal(strncmp(pub.key_id, "SHA256:", 7), 0);
  assert_int_equal(strlen(pub.key_id), 50);
  assert_int_equal(px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n, &sig), 0);
  assert_int_equal(strncmp(sig, "-----BEGIN SSH SIGNATURE-----\n", 30), 0);
  assert_non_null(strstr(sig, "\n-----END SSH SIGNATURE-----\n"));
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)px__msg, n, &got, &why), 0);
  assert_string_equal(got.key_id, pub.key_id);
  assert_memory_equal(got.blob, pub.blob, sizeof(pub.blob));

  /* One changed byte of the message. */
  char tampered[sizeof(px__msg)];
  memcpy(tampered, px__msg, sizeof(px__msg));
  tampered[n - 3] = 'X';
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)tampered, n, NULL, &why), -EPERM);
  /* Another namespace, either way round. */
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), "file", (const uint8_t *)px__msg, n, NULL,
                                    &why), -EPERM);
  assert_int_equal(px_sshsig_sign(key, "file", (const uint8_t *)px__msg, n, &sig2), 0);
  assert_int_equal(px_sshsig_verify(sig2, strlen(sig2), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)px__msg, n, NULL, &why), -EPERM);
  free(sig2);
  /* The public key in the blob swapped for another: the signature no
   * longer verifies under the key it names. */
  px_ssh_pubkey_t pub2;
  assert_int_equal(px_ssh_pubkey_from_pkey(other, &pub2), 0);
  assert_int_equal(px_sshsig_sign(other, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n, &sig2), 0);
  /* Every truncation of the armor is refused, never accepted, never a
   * crash. */
  for (size_t cut = 0; cut < strlen(sig); cut += 7) {
    int rc = px_sshsig_verify(sig, cut, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n, NULL, &why);
    assert_true(rc == -EBADMSG || rc == -EPERM);
  }
  assert_int_equal(px_sshsig_verify("garbage", 7, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n,
                                    NULL, &why), -EBADMSG);
  assert_int_equal(px_sshsig_verify("SSHSIG", 6, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n,
                                    NULL, &why), -EBADMSG);

  /* The public key line round-trips. */
  char *line = px_ssh_pubkey_line(&pub);
  assert_int_equal(strncmp(line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 32), 0);
  assert_int_equal(px_ssh_pubkey_parse(line, &got), 0);
  assert_string_equal(got.key_id, pub.key_id);
  assert_int_equal(px_ssh_pubkey_parse("ssh-ed25519 AAAA", &got), -EINVAL);
  assert_int_equal(px_ssh_pubkey_parse("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", &got), -EINVAL);
  free(line);
  free(sig);
  free(sig2);
  EVP_PKEY_free(key);
  EVP_PKEY_free(other);
}

PX_TEST(sshsig_interop_with_ssh_keygen) {
  (void)state;
  if (system("command -v ssh-keygen >/dev/null") != 0)
    px_test_skip("ssh-keygen is not installed");
  char *d = px_test_tmpdir(), path[512], cmd[2048];
  px_ssh_pubkey_t pub, got;
  const char *why;

  /* parallax signs, ssh-keygen verifies (and refuses a changed byte). */
  snprintf(path, sizeof(path), "%s/agent_key", d);
  char err[256];
  assert_int_equal(px_key_generate(path, &pub, err, sizeof(err)), 0);
  EVP_PKEY *key = NULL;
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), 0);
  char *sig = NULL;
  assert_int_equal(px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sig), 0);
  snprintf(path, sizeof(path), "%s/m.json", d);
  px__write(path, px__msg, strlen(px__msg));
  snprintf(path, sizeof(path), "%s/m.json.sig", d);
  px__write(path, sig, strlen(sig));
  snprintf(path, sizeof(path), "%s/agent_key.pub", d);
  char *publine = px__read(path);
  snprintf(path, sizeof(path), "%s/allowed_signers", d);
  char allowed[1024];
  snprintf(allowed, sizeof(allowed), "%s namespaces=\"parallax-measurement-v1\" %s", pub.key_id, publine);
  px__write(path, allowed, strlen(allowed));
  snprintf(cmd, sizeof(cmd),
           "cd %s && ssh-keygen -Y verify -f allowed_signers -I '%s' -n parallax-measurement-v1 "
           "-s m.json.sig < m.json >/dev/null 2>&1", d, pub.key_id);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof(cmd),
           "cd %s && ssh-keygen -Y check-novalidate -n parallax-measurement-v1 -s m.json.sig "
           "< m.json >/dev/null 2>&1", d);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof(cmd),
           "cd %s && sed 's/CN/CM/' m.json > t.json && ssh-keygen -Y verify -f allowed_signers "
           "-I '%s' -n parallax-measurement-v1 -s m.json.sig < t.json >/dev/null 2>&1", d, pub.key_id);
  assert_int_not_equal(system(cmd), 0);

  /* ssh-keygen signs, parallax verifies, with the same key id. */
  snprintf(cmd, sizeof(cmd),
           "cd %s && ssh-keygen -q -t ed25519 -N '' -f ossh && "
           "rm -f m.json.sig && ssh-keygen -q -Y sign -f ossh -n parallax-measurement-v1 m.json 2>/dev/null && "
           "ssh-keygen -l -f ossh.pub | cut -d' ' -f2 > fp", d);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof(path), "%s/m.json.sig", d);
  char *osig = px__read(path);
  assert_int_equal(px_sshsig_verify(osig, strlen(osig), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)px__msg, strlen(px__msg), &got, &why), 0);
  snprintf(path, sizeof(path), "%s/fp", d);
  char *fp = px__read(path);
  fp[strcspn(fp, "\n")] = '\0';
  assert_string_equal(got.key_id, fp);
  snprintf(path, sizeof(path), "%s/ossh.pub", d);
  char *opub = px__read(path);
  px_ssh_pubkey_t parsed;
  assert_int_equal(px_ssh_pubkey_parse(opub, &parsed), 0);
  assert_string_equal(parsed.key_id, fp);

  free(opub);
  free(fp);
  free(osig);
  free(publine);
  free(sig);
  EVP_PKEY_free(key);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(keyfile_permissions) {
  (void)state;
  char *d = px_test_tmpdir(), path[512], err[512];
  px_ssh_pubkey_t pub;
  EVP_PKEY *key = NULL;
  struct stat st;
  snprintf(path, sizeof(path), "%s/k", d);
  assert_int_equal(px_key_generate(path, &pub, err, sizeof(err)), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* Never overwritten. */
  assert_int_equal(px_key_generate(path, &pub, err, sizeof(err)), -EEXIST);
  /* Readable by others: refused, like ssh. */
  chmod(path, 0644);
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), -EPERM);
  assert_non_null(strstr(err, "too open"));
  chmod(path, 0600);
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), 0);
  EVP_PKEY_free(key);
  /* Not a key. */
  snprintf(path, sizeof(path), "%s/k.pub", d);
  chmod(path, 0600);
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), -EINVAL);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(allowed_signers_parsing) {
  (void)state;
  char *d = px_test_tmpdir(), path[512], err[512];
  EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t p1, p2;
  px_ssh_pubkey_from_pkey(k1, &p1);
  px_ssh_pubkey_from_pkey(k2, &p2);
  char *l1 = px_ssh_pubkey_line(&p1), *l2 = px_ssh_pubkey_line(&p2);
  char text[2048];
  snprintf(text, sizeof(text),
           "# comment\n\n"
           "%s namespaces=\"parallax-measurement-v1\",valid-before=\"20200101Z\" %s old\n"
           "alice@example,%s namespaces=\"file,parallax-measurement-v1\" %s\n"
           "bob ssh-rsa AAAAB3NzaC1yc2E= ignored-other-key-type\n"
           "carol cert-authority %s\n",
           p1.key_id, l1, p2.key_id, l2, l2);
  snprintf(path, sizeof(path), "%s/as", d);
  px__write(path, text, strlen(text));
  px_allowed_signers_t s;
  assert_int_equal(px_allowed_signers_load(path, &s, err, sizeof(err)), 0);
  assert_int_equal(s.n, 2);
  time_t t2019, now = time(NULL);
  assert_int_equal(px_allowed_signers_parse_time("20190601Z", &t2019), 0);
  /* k1 was valid before 2020 only: a 2019 measurement passes, today's not. */
  assert_non_null(px_allowed_signers_find(&s, &p1, PX_SSHSIG_NAMESPACE, t2019));
  assert_null(px_allowed_signers_find(&s, &p1, PX_SSHSIG_NAMESPACE, now));
  const px_allowed_signer_t *e = px_allowed_signers_find(&s, &p2, PX_SSHSIG_NAMESPACE, now);
  assert_non_null(e);
  assert_non_null(strstr(e->principals, "alice@example"));
  assert_null(px_allowed_signers_find(&s, &p2, "git", now));
  px_allowed_signers_free(&s);

  px__write(path, "broken line\n", 12);
  assert_int_equal(px_allowed_signers_load(path, &s, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, ":1:"));
  free(l1);
  free(l2);
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
  px_test_rmrf(d);
  free(d);
}
