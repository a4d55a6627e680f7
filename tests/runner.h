#ifndef PX_TEST_RUNNER_H
#define PX_TEST_RUNNER_H

/* cmocka's assertions inside a libuv-style runner: every test runs in its
 * own child process with a timeout (tests/runner.c), so a crash or a hang
 * fails one test, not the suite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#define PX_TEST(name)                     \
  void px_test_##name(void **state);    \
  void px_test_##name(void **state)

/* Exit code ctest reads as "skipped" (SKIP_RETURN_CODE). */
#define PX_TEST_SKIP_CODE 77

/* Ends the test as skipped, with the reason on stderr. Never used to hide a
 * failure: only for a missing precondition the suite cannot create. */
void px_test_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Runs the loop until idle, then fails the test if any handle is still
 * open (naming each), and asserts uv_loop_close() == 0. */
void px_test_close_loop(uv_loop_t *loop);

/* A fresh directory under /tmp (caller frees the string) and its removal. */
char *px_test_tmpdir(void);
void px_test_rmrf(const char *dir);

/* The value of KEY in tests/peers/peers.env, or NULL. */
const char *px_test_peer(const char *key);
/* Skips the test unless the peers fixture is up (PX_PEERS_DIR/state.env
 * says PEERS_READY=1). */
void px_test_require_peers(void);
/* A file written by the fixture, e.g. "pki/ca.pem", as a full path
 * (static buffer, valid until the next call). */
const char *px_test_peers_path(const char *rel);
/* Value of KEY in PX_PEERS_DIR/state.env, or NULL. */
const char *px_test_peers_state(const char *key);

#endif
