/* The agent's outbox and its signer process. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/provider.h>

#include "agent/signer.h"
#include "agent/held.h"
#include "common/keyfile.h"
#include "agent/spool.h"
#include "common/fileio.h"
#include "common/sshsig.h"
#include "tests/runner.h"


static int px__count(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  while (d != NULL && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name), sl = strlen(suffix);
    if (len > sl && strcmp(e->d_name + len - sl, suffix) == 0)
      n++;
    if (strncmp(e->d_name, ".tmp", 4) == 0)
      n += 1000; /* a leftover temporary file is a bug */
  }
  if (d != NULL)
    closedir(d);
  return n;
}

PX_TEST(spool_lifecycle) {
  (void)state;
  char *d = px_test_tmpdir(), err[256], name[3][128], dir[512];
  px_spool_t sp;
  assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
  const char *contents[3] = {"{\"n\":1}", "{\"n\":2}", "{\"n\":3}"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(px_spool_add(&sp, contents[i], strlen(contents[i]), "SIG\n", name[i],
                                  sizeof(name[i])), 0);
  size_t p, s, r;
  assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
  assert_int_equal(p, 3);
  px_spool_list_t l;
  assert_int_equal(px_spool_pending(&sp, &l), 0);
  assert_int_equal(l.n, 3);
  char *content, *sig;
  size_t n;
  assert_int_equal(px_spool_read(&sp, l.names[0], &content, &n, &sig), 0);
  assert_int_equal(n, strlen(content));
  assert_string_equal(sig, "SIG\n");
  free(content);
  free(sig);
  assert_int_equal(px_spool_mark_sent(&sp, name[0], "uid-1"), 0);
  assert_int_equal(px_spool_mark_rejected(&sp, name[1], 422, "invalid_measurement: nope"), 0);
  px_spool_list_free(&l);
  assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
  assert_int_equal(p, 1);
  assert_int_equal(s, 1);
  assert_int_equal(r, 1);
  snprintf(dir, sizeof(dir), "%s/spool/sent", d);
  assert_int_equal(px__count(dir, ".receipt"), 1);
  snprintf(dir, sizeof(dir), "%s/spool/rejected", d);
  assert_int_equal(px__count(dir, ".reason"), 1);
  snprintf(dir, sizeof(dir), "%s/spool/pending", d);
  assert_int_equal(px__count(dir, ".jsonl"), 1);
  /* Line and signature in one file, in the shape of an export line. */
  char entry[700], *text;
  snprintf(entry, sizeof(entry), "%s/%s.jsonl", dir, name[2]);
  assert_int_equal(px_read_file(entry, &text, NULL), 0);
  assert_string_equal(text, "{\"content\":\"{\\\"n\\\":3}\",\"signature\":\"SIG\\n\"}\n");
  free(text);
  /* A half pair of an older version (no .sig) is not listed as pending. */
  char orphan[600];
  snprintf(orphan, sizeof(orphan), "%s/spool/pending/20990101T000000Z_x.json", d);
  FILE *f = fopen(orphan, "w");
  fputs("{}", f);
  fclose(f);
  assert_int_equal(px_spool_pending(&sp, &l), 0);
  assert_int_equal(l.n, 1);
  px_spool_list_free(&l);

  px_upload_state_t st = {.failures = 3, .next_attempt = 12345};
  strcpy(st.last_error, "HTTP 503: storage_error");
  assert_int_equal(px_spool_state_save(&sp, &st), 0);
  px_upload_state_t back;
  assert_int_equal(px_spool_state_load(&sp, &back), 0);
  assert_int_equal(back.failures, 3);
  assert_int_equal(back.next_attempt, 12345);
  assert_string_equal(back.last_error, "HTTP 503: storage_error");

  for (int i = 0; i < 5; i++) {
    char c[32], nm[128];
    snprintf(c, sizeof(c), "{\"k\":%d}", i);
    assert_int_equal(px_spool_add(&sp, c, strlen(c), "S", nm, sizeof(nm)), 0);
    assert_int_equal(px_spool_mark_sent(&sp, nm, "u"), 0);
  }
  assert_int_equal(px_spool_prune_sent(&sp, 2), 0);
  assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
  assert_int_equal(s, 2);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(spool_full_disk_keeps_what_it_had) {
  (void)state;
  if (geteuid() != 0)
    px_test_skip("mounting a small tmpfs needs root");
  char *d = px_test_tmpdir(), cmd[600], err[256], name[128];
  snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=64k tmpfs '%s'", d);
  if (system(cmd) != 0) {
    px_test_rmrf(d);
    px_test_skip("cannot mount tmpfs here");
  }
  px_spool_t sp;
  assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
  char *big = malloc(8192);
  memset(big, 'x', 8191);
  big[8191] = '\0';
  int stored = 0, rc = 0;
  for (int i = 0; i < 64 && rc == 0; i++) {
    big[0] = (char)('a' + i % 26);
    big[1] = (char)('a' + i / 26);
    rc = px_spool_add(&sp, big, 8191, "SIG", name, sizeof(name));
    if (rc == 0)
      stored++;
  }
  assert_int_equal(rc, -ENOSPC);
  assert_true(stored > 0);
  size_t p, s, r;
  assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
  assert_int_equal((int)p, stored);
  char dir[600];
  snprintf(dir, sizeof(dir), "%s/spool/pending", d);
  /* Complete entries only, no temporary files left behind. */
  assert_int_equal(px__count(dir, ".jsonl"), stored);
  assert_int_equal(px__count(dir, ".json"), 0);
  free(big);
  snprintf(cmd, sizeof(cmd), "umount '%s'", d);
  assert_int_equal(system(cmd), 0);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(signer_process_signs_and_holds_the_key) {
  (void)state;
  char *d = px_test_tmpdir(), key[512], err[256];
  px_signer_t s;
  snprintf(key, sizeof(key), "%s/parallax_ed25519", d);
  /* Without create and without a key: a clear error, no crash. */
  assert_int_not_equal(px_signer_start(&s, key, false, err, sizeof(err)), 0);
  assert_non_null(strstr(err, "cannot open key"));
  assert_int_equal(px_signer_start(&s, key, true, err, sizeof(err)), 0);
  assert_true(s.pid > 0);
  assert_int_equal(strncmp(s.pub.key_id, "SHA256:", 7), 0);
  const char *msg = "{\"software_name\":\"parallax\",\"test_name\":\"tls_cert_consistency\","
                    "\"probe_ip\":\"127.0.0.1\",\"x\":1}";
  for (int i = 0; i < 3; i++) {
    char *sig = NULL;
    px_ssh_pubkey_t who;
    assert_int_equal(px_signer_sign(&s, msg, strlen(msg), &sig, err, sizeof(err)), 0);
    assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE, (const uint8_t *)msg,
                                      strlen(msg), &who, NULL), 0);
    assert_string_equal(who.key_id, s.pub.key_id);
    free(sig);
  }
  /* Its descriptors: only stdio and the socket to us survive the fork,
   * so a compromised parent's other files are not reachable through it. */
  char fddir[64];
  snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int)s.pid);
  DIR *fds = opendir(fddir);
  assert_non_null(fds);
  struct dirent *e;
  while ((e = readdir(fds)) != NULL)
    if (e->d_name[0] != '.')
      assert_true(strtol(e->d_name, NULL, 10) <= 3);
  closedir(fds);
  px_signer_stop(&s);
  /* A second start reuses the key made by the first. */
  px_ssh_pubkey_t first = s.pub;
  assert_int_equal(px_signer_start(&s, key, true, err, sizeof(err)), 0);
  assert_string_equal(s.pub.key_id, first.key_id);
  px_signer_stop(&s);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(spool_without_sha256_refuses_cleanly) {
  (void)state;
  /* Only the null provider in the default library context: OpenSSL then
   * loads no default provider, SHA-256 cannot be fetched and EVP_Digest
   * fails, as it would in a broken or FIPS-misconfigured installation.
   * Each test runs in its own child, so nothing else sees this. */
  OSSL_PROVIDER *null = OSSL_PROVIDER_load(NULL, "null");
  assert_non_null(null);
  unsigned char md[32];
  if (EVP_Digest("x", 1, md, NULL, EVP_sha256(), NULL) == 1)
    px_test_skip("SHA-256 is still available with only the null provider loaded");
  char *d = px_test_tmpdir(), err[256], name[128], dir[600];
  px_spool_t sp;
  assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
  assert_int_equal(px_spool_add(&sp, "{\"n\":1}", 7, "SIG\n", name, sizeof(name)), -EIO);
  snprintf(dir, sizeof(dir), "%s/spool/pending", d);
  DIR *dh = opendir(dir);
  assert_non_null(dh);
  for (struct dirent *e; (e = readdir(dh)) != NULL;)
    assert_true(e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0));
  closedir(dh);
  /* The held directory names its files the same way: refused too, and
   * nothing written. */
  snprintf(dir, sizeof(dir), "%s/held", d);
  assert_int_equal(px_held_add(dir, "{\"n\":1}", 7, "about this machine"), -EIO);
  assert_int_equal(px_held_count(dir), 0);
  OSSL_PROVIDER_unload(null);
  px_test_rmrf(d);
  free(d);
}
