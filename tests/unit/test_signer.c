/* The signer's boundary (agent/signer_policy.c): it signs only what is
 * shaped like this agent's own measurement, whatever the parent sends,
 * and once it holds its key it can do nothing but sign. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/signer.h"
#include "agent/signer_policy.h"
#include "common/fileio.h"
#include "common/sshsig.h"
#include "tests/runner.h"

#define PX__OURS "\"software_name\":\"parallax\",\"test_name\":\"tls_cert_consistency\","

/* Frames a compromised parent could send, each refused with its reason. */
static const struct {
  const char *frame, *reason;
} px__refused[] = {
    {"", "empty"},
    {"not json", "not one JSON object"},
    {"[1,2]", "not one JSON object"},
    {"\"parallax\"", "not one JSON object"},
    {"{\"software_name\":\"parallax\"", "not one JSON object"},
    {"{" PX__OURS "\"probe_ip\":\"127.0.0.1\"} {}", "not one JSON object"},
    {"{" PX__OURS "\"probe_ip\":\"127.0.0.1\",\"probe_ip\":\"198.51.100.7\"}",
     "not one JSON object"},
    {"{\"test_name\":\"tls_cert_consistency\",\"probe_ip\":\"127.0.0.1\"}", "software_name"},
    {"{\"software_name\":\"ooniprobe\",\"test_name\":\"tls_cert_consistency\","
     "\"probe_ip\":\"127.0.0.1\"}",
     "software_name"},
    {"{\"software_name\":[\"parallax\"],\"test_name\":\"tls_cert_consistency\","
     "\"probe_ip\":\"127.0.0.1\"}",
     "software_name"},
    {"{\"software_name\":\"parallax\",\"test_name\":\"web_connectivity\","
     "\"probe_ip\":\"127.0.0.1\"}",
     "test_name"},
    {"{" PX__OURS "\"probe_ip\":\"198.51.100.7\"}", "probe_ip"},
    {"{" PX__OURS "\"x\":1}", "probe_ip"},
    {"{" PX__OURS "\"probe_ip\":\"127.0.0.1\",\n\"x\":1}", "more than one line"},
    {"{" PX__OURS "\"probe_ip\":\"127.0.0.1\"}\r", "more than one line"},
};

PX_TEST(signer_refuses_what_is_not_our_measurement) {
  (void)state;
  char *d = px_test_tmpdir(), key[512], err[512];
  snprintf(key, sizeof(key), "%s/parallax_ed25519", d);
  px_signer_t s;
  assert_int_equal(px_signer_start(&s, key, true, err, sizeof(err)), 0);
  const char *ours = "{" PX__OURS "\"probe_ip\":\"127.0.0.1\",\"input\":\"mail.test\"}";
  for (size_t i = 0; i < sizeof(px__refused) / sizeof(px__refused[0]); i++) {
    const char *f = px__refused[i].frame;
    char why[512], *sig = NULL;
    assert_int_not_equal(px_signer_frame_check(f, strlen(f), why, sizeof(why)), 0);
    if (strstr(why, px__refused[i].reason) == NULL)
      fail_msg("frame %zu: \"%s\" does not say %s", i, why, px__refused[i].reason);
    /* The signer itself refuses it too, says why, and keeps serving. */
    assert_int_equal(px_signer_sign(&s, f, strlen(f), &sig, err, sizeof(err)), -EINVAL);
    assert_null(sig);
    assert_non_null(strstr(err, px__refused[i].reason));
    assert_int_equal(px_signer_sign(&s, ours, strlen(ours), &sig, err, sizeof(err)), 0);
    assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE, (const uint8_t *)ours,
                                      strlen(ours), NULL, NULL), 0);
    free(sig);
  }
  /* Larger than the bound: refused before it is sent at all. */
  size_t big = PX_SIGNER_MAX_LINE + 1;
  char *huge = malloc(big), *sig = NULL;
  assert_non_null(huge);
  memset(huge, ' ', big);
  assert_int_equal(px_signer_frame_check(huge, big, err, sizeof(err)), -EMSGSIZE);
  assert_int_equal(px_signer_sign(&s, huge, big, &sig, err, sizeof(err)), -EMSGSIZE);
  free(huge);
  assert_int_equal(px_signer_sign(&s, ours, strlen(ours), &sig, err, sizeof(err)), 0);
  free(sig);
  px_signer_stop(&s);
  px_test_rmrf(d);
  free(d);
}

/* A value of /proc/PID/status, or -1. */
static long px__status(pid_t pid, const char *field) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  long v = -1;
  size_t fl = strlen(field);
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, field, fl) == 0 && line[fl] == ':')
      v = strtol(line + fl + 1, NULL, 10);
  if (f != NULL)
    fclose(f);
  return v;
}

PX_TEST(signer_runs_confined) {
  (void)state;
  char *d = px_test_tmpdir(), key[512], err[512];
  snprintf(key, sizeof(key), "%s/parallax_ed25519", d);
  px_signer_t s;
  assert_int_equal(px_signer_start(&s, key, true, err, sizeof(err)), 0);
  /* The running signer: no new privileges, a seccomp filter (mode 2). */
  assert_int_equal(px__status(s.pid, "NoNewPrivs"), 1);
#if defined(__x86_64__) || defined(__aarch64__) || defined(__arm__)
  assert_int_equal(px__status(s.pid, "Seccomp"), 2);
#endif
  px_signer_stop(&s);

  /* What the box forbids, tried from inside one. */
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    int r[4] = {0, 0, 0, 0};
    if (px_signer_sandbox() != 0)
      _exit(2);
    /* Opening the key again, a socket to the network, a new process,
     * another program. */
    int fd = open(key, O_RDONLY | O_CLOEXEC);
    r[0] = fd >= 0 ? 0 : errno;
    int so = socket(AF_INET, SOCK_STREAM, 0);
    r[1] = so >= 0 ? 0 : errno;
    pid_t kid = fork();
    if (kid == 0)
      _exit(0);
    r[2] = kid >= 0 ? 0 : errno;
    char *argv[] = {(char *)"/bin/true", NULL};
    execv("/bin/true", argv);
    r[3] = errno;
    (void)px_write_all(pfd[1], r, sizeof(r));
    _exit(0);
  }
  close(pfd[1]);
  int r[4];
  assert_int_equal(px_read_all(pfd[0], r, sizeof(r)), 0);
  close(pfd[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_not_equal(r[0], 0);
  assert_int_not_equal(r[2], 0);
  assert_int_not_equal(r[1], 0);
  assert_int_not_equal(r[3], 0);
  px_test_rmrf(d);
  free(d);
}
