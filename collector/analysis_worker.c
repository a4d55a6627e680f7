#include "collector/analysis_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "collector/analysis.h"
#include "common/json_util.h"

/* Frames on the socket, host byte order (both ends are one binary):
 *   request:  u32 magic, u32 length, i64 judging time, content bytes
 *   answer:   u32 magic, u32 outcome, u32 length, text (summary or why) */
#define PX__MAGIC 0x70784131u /* "pxA1" */
/* Larger than any request body the collector accepts (--max-body is at
 * most 1 GiB, a measurement a fraction of it): a bound, not a limit. */
#define PX__MAX_FRAME ((uint32_t)1 << 30)

struct px_aworker {
  char *exe, *ca_file;
  unsigned timeout_ms;
  pid_t pid; /* 0: none running */
  int fd;
};

int px_aworker_new(const char *exe, const char *ca_file, unsigned timeout_ms, px_aworker_t **out) {
  px_aworker_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return -ENOMEM;
  w->exe = strdup(exe != NULL ? exe : "/proc/self/exe");
  w->ca_file = ca_file != NULL ? strdup(ca_file) : NULL;
  w->timeout_ms = timeout_ms ? timeout_ms : PX_AWORKER_TIMEOUT_MS;
#ifdef PX_TEST_HOOKS
  const char *t = getenv("PX_TEST_ANALYSIS_TIMEOUT_MS");
  long ms = t != NULL ? strtol(t, NULL, 10) : 0;
  if (ms > 0 && ms < 3600000)
    w->timeout_ms = (unsigned)ms;
#endif
  w->fd = -1;
  if (w->exe == NULL || (ca_file != NULL && w->ca_file == NULL)) {
    px_aworker_free(w);
    return -ENOMEM;
  }
  *out = w;
  return 0;
}

/* Ends the running worker (it may be stuck) and says how it ended. */
static void px__reap(px_aworker_t *w, char *how, size_t howlen) {
  if (w->fd >= 0)
    close(w->fd);
  w->fd = -1;
  if (w->pid <= 0)
    return;
  int status = 0;
  /* A worker that just closed its end is usually exiting: give it a
   * moment to say how before it is called stuck. */
  pid_t got = 0;
  for (int i = 0; i < 50 && (got = waitpid(w->pid, &status, WNOHANG)) == 0; i++) {
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (got == 0) {
    kill(w->pid, SIGKILL);
    waitpid(w->pid, &status, 0);
    snprintf(how, howlen, "stalled");
  } else if (got == w->pid && WIFSIGNALED(status)) {
    const char *name = sigdescr_np(WTERMSIG(status)); /* thread-safe, unlike strsignal */
    snprintf(how, howlen, "killed by signal %d (%s)", WTERMSIG(status), name ? name : "?");
  } else if (got == w->pid && WIFEXITED(status)) {
    snprintf(how, howlen, "exited with status %d", WEXITSTATUS(status));
  }
  w->pid = 0;
}

void px_aworker_free(px_aworker_t *w) {
  if (w == NULL)
    return;
  char how[96];
  px__reap(w, how, sizeof(how));
  free(w->exe);
  free(w->ca_file);
  free(w);
}

static int px__spawn(px_aworker_t *w) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -errno;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  /* The child's end as its stdin and stdout (dup2 clears CLOEXEC); stderr
   * stays the collector's, for the worker's own messages. */
  posix_spawn_file_actions_adddup2(&fa, sv[1], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, sv[1], STDOUT_FILENO);
  char *argv[5] = {"parallax-collector", "analysis-worker", NULL, NULL, NULL};
  if (w->ca_file != NULL) {
    argv[2] = "--ca-file";
    argv[3] = w->ca_file;
  }
  pid_t pid;
  int rc = posix_spawn(&pid, w->exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    return -rc;
  }
  w->pid = pid;
  w->fd = sv[0];
  return 0;
}

/* strerror is not thread-safe; the analysis thread is one of many. */
static const char *px__err(int rc) {
  const char *s = strerrordesc_np(-rc);
  return s != NULL ? s : "unknown error";
}

static uint64_t px__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* All of buf to or from fd before deadline (monotonic ms). -ETIMEDOUT,
 * -EPIPE (the other end is gone) or another negative errno. */
static int px__io(int fd, void *buf, size_t n, bool writing, uint64_t deadline) {
  char *p = buf;
  while (n > 0) {
    uint64_t now = px__now_ms();
    if (now >= deadline)
      return -ETIMEDOUT;
    struct pollfd pfd = {fd, writing ? POLLOUT : POLLIN, 0};
    int r = poll(&pfd, 1, (int)(deadline - now));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return -ETIMEDOUT;
    ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, n, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (k < 0)
      return errno == ECONNRESET ? -EPIPE : -errno;
    if (k == 0)
      return -EPIPE;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* One request and its answer. 0 with *outcome and *text, or a negative
 * error (the worker must then be reaped). */
static int px__exchange(px_aworker_t *w, const char *content, size_t n, time_t at, uint32_t *outcome,
                        char **text) {
  uint64_t deadline = px__now_ms() + w->timeout_ms;
  if (n > PX__MAX_FRAME)
    return -E2BIG;
  uint32_t head[2] = {PX__MAGIC, (uint32_t)n};
  int64_t when = (int64_t)at;
  int rc = px__io(w->fd, head, sizeof(head), true, deadline);
  if (rc == 0)
    rc = px__io(w->fd, &when, sizeof(when), true, deadline);
  if (rc == 0)
    rc = px__io(w->fd, (void *)content, n, true, deadline);
  uint32_t answer[3] = {0, 0, 0};
  if (rc == 0)
    rc = px__io(w->fd, answer, sizeof(answer), false, deadline);
  if (rc != 0)
    return rc;
  if (answer[0] != PX__MAGIC || answer[1] > PX_AWORKER_FAILED || answer[2] > PX__MAX_FRAME)
    return -EPROTO;
  char *t = malloc((size_t)answer[2] + 1);
  if (t == NULL)
    return -ENOMEM;
  if ((rc = px__io(w->fd, t, answer[2], false, deadline)) != 0) {
    free(t);
    return rc;
  }
  t[answer[2]] = '\0';
  *outcome = answer[1];
  *text = t;
  return 0;
}

/* A measurement every worker must be able to summarise: when the worker
 * fails on this too, it is broken (a missing binary, a bad trust store),
 * and the measurement that was being analysed is not to blame. */
static const char px__canary[] =
    "{\"test_keys\":{\"queries\":[],\"tcp_connect\":[],\"tls_handshakes\":[]}}";

int px_aworker_summarize(px_aworker_t *w, const char *content, size_t n, time_t at,
                         char **summary, char *why, size_t whylen) {
  *summary = NULL;
  int rc = 0;
  if (w->pid == 0 && (rc = px__spawn(w)) != 0) {
    snprintf(why, whylen, "cannot start the analysis worker %s: %s", w->exe, px__err(rc));
    return rc;
  }
  uint32_t outcome = 0;
  char *text = NULL;
  rc = px__exchange(w, content, n, at, &outcome, &text);
  if (rc == 0 && outcome == PX_AWORKER_OK) {
    *summary = text;
    return PX_AWORKER_OK;
  }
  if (rc == 0) {
    snprintf(why, whylen, "%s", text);
    free(text);
    return PX_AWORKER_UNREADABLE;
  }
  char how[96] = "";
  px__reap(w, how, sizeof(how));
  if (rc == -ETIMEDOUT)
    snprintf(how, sizeof(how), "stalled for more than %u ms", w->timeout_ms);
  else if (how[0] == '\0')
    snprintf(how, sizeof(how), "failed (%s)", px__err(rc));
  /* Was it this measurement? A fresh worker must read the canary. */
  char *check = NULL;
  int crc = px__spawn(w);
  if (crc == 0)
    crc = px__exchange(w, px__canary, sizeof(px__canary) - 1, at, &outcome, &check);
  if (crc != 0 || outcome != PX_AWORKER_OK) {
    char ignored[96];
    px__reap(w, ignored, sizeof(ignored));
    free(check);
    snprintf(why, whylen, "the analysis worker %s, and fails on a known-good measurement too", how);
    return crc != 0 ? crc : -EIO;
  }
  free(check);
  snprintf(why, whylen, "the analysis worker %s on this measurement", how);
  return PX_AWORKER_FAILED;
}

/* ---- the worker process ---------------------------------------------------- */

static int px__read_all(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int px__write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int px__answer(uint32_t outcome, const char *text) {
  uint32_t head[3] = {PX__MAGIC, outcome, (uint32_t)strlen(text)};
  return px__write_all(STDOUT_FILENO, head, sizeof(head)) == 0 &&
                 px__write_all(STDOUT_FILENO, text, strlen(text)) == 0
             ? 0
             : -1;
}

/* What the worker needs, nothing more: no new privileges, no core dumps
 * of what it read, a ceiling on memory (a chain crafted to need gigabytes
 * fails here, not in the collector). Best effort: a sandbox that forbids
 * setrlimit (the unit's ~@resources) has bounded the process already. */
static void px__confine(void) {
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
#if !defined(__SANITIZE_ADDRESS__) && !defined(PX_FUZZING)
  struct rlimit mem = {(rlim_t)2 << 30, (rlim_t)2 << 30};
  setrlimit(RLIMIT_AS, &mem);
#endif
}

#ifdef PX_TEST_HOOKS
/* Test builds only: PX_TEST_ANALYSIS_CRASH=TEXT crashes the worker (a
 * real SIGSEGV) on any measurement containing TEXT, and
 * PX_TEST_ANALYSIS_STALL=TEXT makes it hang, so the tests can prove that
 * a poison row costs one measurement and never the collector. */
static void px__test_faults(const char *content, size_t n) {
  const char *crash = getenv("PX_TEST_ANALYSIS_CRASH"), *stall = getenv("PX_TEST_ANALYSIS_STALL");
  if (crash != NULL && crash[0] != '\0' && memmem(content, n, crash, strlen(crash)) != NULL) {
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
  }
  if (stall != NULL && stall[0] != '\0' && memmem(content, n, stall, strlen(stall)) != NULL)
    for (;;)
      pause();
}
#endif

int px_aworker_main(int argc, char **argv) {
  const char *ca_file = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--ca-file") == 0 && i + 1 < argc)
      ca_file = argv[++i];
    else {
      fprintf(stderr, "parallax-collector analysis-worker: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  px__confine();
  X509_STORE *trust = NULL;
  char desc[512], sha[65], err[256];
  if (px_trust_store_load(ca_file, &trust, desc, sizeof(desc), sha, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax-collector analysis-worker: %s\n", err);
    return 1;
  }
  px_x509_judge_cache_t *cache = px_x509_judge_cache_new(4096);
  int status = 0;
  for (;;) {
    uint32_t head[2];
    int64_t when;
    if (px__read_all(STDIN_FILENO, head, sizeof(head)) != 0)
      break; /* the collector closed its end: done */
    if (head[0] != PX__MAGIC || head[1] > PX__MAX_FRAME ||
        px__read_all(STDIN_FILENO, &when, sizeof(when)) != 0) {
      status = 1;
      break;
    }
    char *content = malloc((size_t)head[1] + 1);
    if (content == NULL || px__read_all(STDIN_FILENO, content, head[1]) != 0) {
      free(content);
      status = 1;
      break;
    }
#ifdef PX_TEST_HOOKS
    px__test_faults(content, head[1]);
#endif
    json_t *sum = px_summarize(content, head[1], (time_t)when, trust, cache);
    free(content);
    char *text = sum != NULL ? px_json_dump(sum) : NULL;
    json_decref(sum);
    int wrc = text != NULL ? px__answer(PX_AWORKER_OK, text)
                           : px__answer(PX_AWORKER_UNREADABLE,
                                        sum == NULL ? "the analysis cannot read it as a measurement"
                                                    : "out of memory");
    free(text);
    if (wrc != 0) {
      status = 1;
      break;
    }
  }
  px_x509_judge_cache_free(cache);
  X509_STORE_free(trust);
  return status;
}
