/* The test runner: `px-tests` runs every test, `px-tests NAME` one, each
 * in a forked child with a timeout. A test passes when its child exits 0,
 * is skipped on exit 77, and fails otherwise (assertion, crash, timeout). */
#include "tests/runner.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/leakcheck.h"
#include "common/timeutil.h"

#define PX_TEST_ENTRY(name, needs) PX_TEST(name);
#include "tests/test-list.h"
#undef PX_TEST_ENTRY

typedef struct {
  const char *name;
  CMUnitTestFunction fn;
} px__test_t;

#define PX_TEST_ENTRY(name, needs) {#name, px_test_##name},
static const px__test_t px__tests[] = {
#include "tests/test-list.h"
};
#undef PX_TEST_ENTRY

#define PX__NTESTS (sizeof(px__tests) / sizeof(px__tests[0]))

static int px__timeout_s(void) {
  const char *s = getenv("PX_TEST_TIMEOUT");
  char *end = NULL;
  long v = s ? strtol(s, &end, 10) : 0;
  return s != NULL && *end == '\0' && v > 0 && v <= 86400 ? (int)v : 60;
}

/* Runs one test in a child; returns 0 pass, 77 skip, 1 fail. */
static int px__run_one(const px__test_t *t) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    struct CMUnitTest one = {t->name, t->fn, NULL, NULL, NULL};
    int failed = _cmocka_run_group_tests(t->name, &one, 1, NULL, NULL);
    /* _exit skips the leak check LeakSanitizer runs at exit: run it
     * here, so a test that leaks fails. */
    if (px_leak_check() != 0) {
      fprintf(stderr, "[ LEAKED   ] %s\n", t->name);
      failed = 1;
    }
    fflush(NULL);
    _exit(failed ? 1 : 0);
  }
  int status = 0;
  time_t deadline = time(NULL) + px__timeout_s();
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR) {
      perror("waitpid");
      return 1;
    }
    if (time(NULL) > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fprintf(stderr, "[ TIMEOUT  ] %s: killed after %d s\n", t->name, px__timeout_s());
      return 1;
    }
    px_sleep_ms(10);
  }
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "[ CRASHED  ] %s: signal %d\n", t->name, WTERMSIG(status));
    return 1;
  }
  int code = WEXITSTATUS(status);
  if (code == PX_TEST_SKIP_CODE)
    return PX_TEST_SKIP_CODE;
  return code == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < PX__NTESTS; i++)
      puts(px__tests[i].name);
    return 0;
  }
  if (argc == 2) {
    for (size_t i = 0; i < PX__NTESTS; i++)
      if (strcmp(px__tests[i].name, argv[1]) == 0)
        return px__run_one(&px__tests[i]);
    fprintf(stderr, "px-tests: no test named '%s' (see --list)\n", argv[1]);
    return 2;
  }
  int failed = 0, skipped = 0;
  for (size_t i = 0; i < PX__NTESTS; i++) {
    int rc = px__run_one(&px__tests[i]);
    if (rc == PX_TEST_SKIP_CODE)
      skipped++;
    else if (rc != 0)
      failed++;
  }
  printf("%zu tests: %zu passed, %d skipped, %d failed\n", PX__NTESTS,
         PX__NTESTS - (size_t)failed - (size_t)skipped, skipped, failed);
  return failed ? 1 : 0;
}
