/* What tests share: the loop-leak check and the local test world. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/runner.h"

void px_test_skip(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("[  SKIPPED ] ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(NULL);
  _exit(PX_TEST_SKIP_CODE);
}

char *px_test_tmpdir(void) {
  char *d = strdup("/tmp/px-test-XXXXXX");
  assert_non_null(d);
  assert_non_null(mkdtemp(d));
  return d;
}

void px_test_rmrf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void px__report_leak(uv_handle_t *h, void *arg) {
  int *leaks = arg;
  if (uv_is_closing(h))
    return;
  fprintf(stderr, "leaked handle: %s (active=%d)\n", uv_handle_type_name(uv_handle_get_type(h)),
          uv_is_active(h));
  (*leaks)++;
}

void px_test_close_loop(uv_loop_t *loop) {
  int leaks = 0;
  uv_run(loop, UV_RUN_DEFAULT);
  uv_walk(loop, px__report_leak, &leaks);
  assert_int_equal(leaks, 0);
  assert_int_equal(uv_loop_close(loop), 0);
}

/* KEY=VALUE file lookup. Values are kept for the life of the (short) test
 * process, so several may be used in one expression. */
static const char *px__env_file_get(const char *path, const char *key) {
  static struct {
    char *path, *key, *value;
  } cache[256];
  static size_t ncache;
  char line[1024];
  size_t klen = strlen(key);

  for (size_t i = 0; i < ncache; i++)
    if (strcmp(cache[i].path, path) == 0 && strcmp(cache[i].key, key) == 0)
      return cache[i].value;
  FILE *f = fopen(path, "r");
  const char *found = NULL;
  if (f == NULL)
    return NULL;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
      line[strcspn(line, "\r\n")] = '\0';
      if (ncache < sizeof(cache) / sizeof(cache[0])) {
        cache[ncache].path = strdup(path);
        cache[ncache].key = strdup(key);
        cache[ncache].value = strdup(line + klen + 1);
        found = cache[ncache++].value;
      }
      break;
    }
  }
  fclose(f);
  return found;
}

const char *px_test_peer(const char *key) {
  const char *path = getenv("PX_PEERS_ENV");
  return px__env_file_get(path ? path : PX_SOURCE_DIR "/tests/peers/peers.env", key);
}

const char *px_test_peers_path(const char *rel) {
  static char path[1024];
  const char *dir = getenv("PX_PEERS_DIR");
  snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", rel);
  return path;
}

const char *px_test_peers_state(const char *key) {
  const char *dir = getenv("PX_PEERS_DIR");
  char path[1024];
  if (dir == NULL)
    return NULL;
  snprintf(path, sizeof(path), "%s/state.env", dir);
  return px__env_file_get(path, key);
}

void px_test_require_peers(void) {
  const char *ready = px_test_peers_state("PEERS_READY");
  if (ready == NULL || strcmp(ready, "1") != 0)
    px_test_skip("the local test world is not up (run through ctest, which starts "
                 "tests/peers/peers.sh)");
}
