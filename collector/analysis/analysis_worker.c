#include "collector/analysis/analysis_worker.h"

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
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "collector/analysis/analysis.h"
#include "common/json_util.h"

#include "collector/analysis/analysis_worker_proto.h"
#include "collector/analysis/summary.h"
#include "common/encoding.h"

struct px_aworker {
  char *exe, *ca_file;
  unsigned timeout_ms;
  pid_t pid; /* 0: none running */
  int fd;
  /* The intermediate pool as the collector knows it, given to every new
   * worker before its first measurement. */
  px_blob_t *pool;
  size_t npool, cappool;
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
  for (size_t i = 0; i < w->npool; i++)
    free(w->pool[i].data);
  free(w->pool);
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
/* Sends one request frame. */
static int px__send(px_aworker_t *w, uint32_t kind, const void *data, size_t n, time_t at,
                    uint64_t deadline) {
  if (n > PX__MAX_FRAME)
    return -E2BIG;
  uint32_t head[3] = {PX__MAGIC, kind, (uint32_t)n};
  int64_t when = (int64_t)at;
  int rc = px__io(w->fd, head, sizeof(head), true, deadline);
  if (rc == 0)
    rc = px__io(w->fd, &when, sizeof(when), true, deadline);
  if (rc == 0)
    rc = px__io(w->fd, (void *)data, n, true, deadline);
  return rc;
}

static int px__exchange(px_aworker_t *w, const char *content, size_t n, time_t at, uint32_t *outcome,
                        char **text) {
  uint64_t deadline = px__now_ms() + w->timeout_ms;
  int rc = px__send(w, PX__KIND_SUMMARIZE, content, n, at, deadline);
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

/* A new worker learns the pool before anything else. */
static int px__start(px_aworker_t *w) {
  int rc = px__spawn(w);
  uint64_t deadline = px__now_ms() + w->timeout_ms;
  for (size_t i = 0; rc == 0 && i < w->npool; i++)
    rc = px__send(w, PX__KIND_POOL_ADD, w->pool[i].data, w->pool[i].len, 0, deadline);
  if (rc != 0 && w->pid > 0) {
    char how[96];
    px__reap(w, how, sizeof(how));
  }
  return rc;
}

static int px__remember(px_aworker_t *w, const uint8_t *der, size_t n) {
  if (w->npool >= PX_POOL_MAX)
    return 0;
  if (w->npool == w->cappool) {
    size_t cap = w->cappool ? w->cappool * 2 : 64;
    px_blob_t *p = realloc(w->pool, cap * sizeof(*p));
    if (p == NULL)
      return -ENOMEM;
    w->pool = p;
    w->cappool = cap;
  }
  uint8_t *copy = malloc(n ? n : 1);
  if (copy == NULL)
    return -ENOMEM;
  memcpy(copy, der, n);
  w->pool[w->npool].data = copy;
  w->pool[w->npool].len = n;
  w->npool++;
  return 0;
}

int px_aworker_pool_add(px_aworker_t *w, const uint8_t *der, size_t n) {
  int rc = px__remember(w, der, n);
  if (rc == 0 && w->pid > 0 &&
      px__send(w, PX__KIND_POOL_ADD, der, n, 0, px__now_ms() + w->timeout_ms) != 0) {
    char how[96];
    px__reap(w, how, sizeof(how)); /* the next measurement starts a new one */
  }
  return rc;
}

/* {"summary": {...}, "pool": ["base64 DER", ...]} into the summary's text
 * and the DER of each new pool certificate (remembered for new workers). */
static int px__split_answer(px_aworker_t *w, const char *text, char **summary, px_blobs_t *found) {
  json_t *doc = json_loads(text, 0, NULL);
  json_t *sum = json_object_get(doc, "summary");
  if (!json_is_object(sum)) {
    json_decref(doc);
    return -EPROTO;
  }
  *summary = px_json_dump(sum);
  size_t i;
  json_t *b64;
  json_array_foreach(json_object_get(doc, "pool"), i, b64) {
    const char *t = json_string_value(b64);
    size_t len = t ? strlen(t) : 0, n = 0;
    uint8_t *der = len ? malloc(len) : NULL;
    if (der != NULL && px_base64_decode(t, len, der, len, &n) == 0 && n > 0 &&
        px_blobs_push(found, der, n) == 0)
      px__remember(w, der, n);
    free(der);
  }
  json_decref(doc);
  return *summary != NULL ? 0 : -ENOMEM;
}

/* A measurement every worker must be able to summarise: when the worker
 * fails on this too, it is broken (a missing binary, a bad trust store),
 * and the measurement that was being analysed is not to blame. */
static const char px__canary[] =
    "{\"test_keys\":{\"queries\":[],\"tcp_connect\":[],\"tls_handshakes\":[]}}";

int px_aworker_summarize(px_aworker_t *w, const char *content, size_t n, time_t at,
                         char **summary, px_blobs_t *found, char *why, size_t whylen) {
  *summary = NULL;
  int rc = 0;
  if (w->pid == 0 && (rc = px__start(w)) != 0) {
    snprintf(why, whylen, "cannot start the analysis worker %s: %s", w->exe, px__err(rc));
    return rc;
  }
  uint32_t outcome = 0;
  char *text = NULL;
  rc = px__exchange(w, content, n, at, &outcome, &text);
  if (rc == 0 && outcome == PX_AWORKER_OK) {
    rc = px__split_answer(w, text, summary, found);
    free(text);
    if (rc == 0)
      return PX_AWORKER_OK;
    text = NULL;
  }
  if (rc == 0 && text != NULL) {
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
  int crc = px__start(w);
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

