#include "agent/runstate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/encoding.h"
#include "common/fileio.h"
#include "common/json_util.h"

int px_run_lock(const char *state_dir, int *fd, pid_t *holder, char *err, size_t errlen) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/run.lock", state_dir);
  *holder = 0;
  int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (f < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  if (flock(f, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EWOULDBLOCK) {
      char buf[32] = "";
      ssize_t n = pread(f, buf, sizeof(buf) - 1, 0);
      unsigned long pid;
      buf[n > 0 ? n : 0] = '\0';
      buf[strcspn(buf, "\n")] = '\0';
      if (px_parse_ulong(buf, 1, 4194304, &pid) == 0)
        *holder = (pid_t)pid;
    } else {
      snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
    }
    close(f);
    return -e;
  }
  /* The pid is only for the message of the run that finds the lock
   * taken: the lock itself is the flock, released by the kernel when we
   * exit however we exit. */
  char pid[32];
  int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
  if (ftruncate(f, 0) == 0)
    (void)!pwrite(f, pid, (size_t)n, 0);
  *fd = f;
  return 0;
}

pid_t px_run_holder(const char *state_dir) {
  char path[4200], want[64], line[256];
  struct stat st;
  snprintf(path, sizeof(path), "%s/run.lock", state_dir);
  if (stat(path, &st) != 0)
    return 0;
  /* How the kernel names a file in /proc/locks: MAJOR:MINOR:INODE. */
  snprintf(want, sizeof(want), "%02x:%02x:%llu", major(st.st_dev), minor(st.st_dev),
           (unsigned long long)st.st_ino);
  FILE *f = fopen("/proc/locks", "r");
  if (f == NULL)
    return 0;
  pid_t holder = 0;
  /* "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF"; a waiter's line
   * has "->" after the number and holds nothing. */
  while (holder == 0 && fgets(line, sizeof(line), f) != NULL) {
    char *save = NULL, *tok[6] = {NULL};
    int n = 0;
    for (char *t = strtok_r(line, " \t\n", &save); t != NULL && n < 6;
         t = strtok_r(NULL, " \t\n", &save))
      tok[n++] = t;
    unsigned long pid;
    if (n == 6 && strcmp(tok[1], "FLOCK") == 0 && strcmp(tok[5], want) == 0 &&
        px_parse_ulong(tok[4], 1, 4194304, &pid) == 0)
      holder = (pid_t)pid;
  }
  fclose(f);
  return holder;
}

void px_run_unlock(int fd) {
  if (fd >= 0)
    close(fd);
}

static void px__path(const char *state_dir, const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/%s", state_dir, name);
}

int px_consent_load(const char *state_dir, json_t **doc) {
  char path[4200], *text = NULL;
  size_t n;
  px__path(state_dir, PX_CONSENT_FILE, path, sizeof(path));
  int rc = px_read_file(path, &text, &n);
  if (rc != 0)
    return rc;
  if (doc != NULL) {
    *doc = json_loadb(text, n, 0, NULL);
    if (*doc == NULL)
      *doc = json_object(); /* an older or hand-made marker still counts */
  }
  free(text);
  return 0;
}

int px_consent_save(const char *state_dir, const json_t *doc) {
  char *text = json_dumps(doc, JSON_INDENT(2)), *line = NULL;
  int n = text != NULL ? asprintf(&line, "%s\n", text) : -1;
  free(text);
  if (n < 0)
    return -ENOMEM;
  /* Readable by everyone: the unit's ConditionPathExists= and a curious
   * volunteer both look at it; it holds nothing secret. */
  int rc = px_write_file_atomic(state_dir, PX_CONSENT_FILE, line, (size_t)n, 0644);
  free(line);
  return rc;
}

int px_consent_withdraw(const char *state_dir) {
  char path[4200];
  px__path(state_dir, PX_CONSENT_FILE, path, sizeof(path));
  if (unlink(path) != 0 && errno != ENOENT)
    return -errno;
  return px_fsync_dir(state_dir);
}

json_t *px_runs_load(const char *state_dir) {
  char path[4200], *text = NULL;
  size_t n;
  json_t *runs = json_array();
  px__path(state_dir, "runs.jsonl", path, sizeof(path));
  if (px_read_file(path, &text, &n) != 0)
    return runs;
  for (char *line = text, *next; line < text + n; line = next) {
    char *nl = memchr(line, '\n', (size_t)(text + n - line));
    next = nl != NULL ? nl + 1 : text + n;
    json_t *r = json_loadb(line, (size_t)(next - line), 0, NULL);
    if (json_is_object(r))
      json_array_append(runs, r);
    json_decref(r);
  }
  free(text);
  return runs;
}

int px_runs_append(const char *state_dir, const json_t *record) {
  json_t *runs = px_runs_load(state_dir);
  json_array_append(runs, (json_t *)record);
  size_t total = json_array_size(runs), skip = total > PX_RUNS_KEPT ? total - PX_RUNS_KEPT : 0;
  /* Rewritten whole, atomically: a crash never leaves half a line. The
   * file stays small (PX_RUNS_KEPT short lines). */
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (mem == NULL) {
    json_decref(runs);
    return -ENOMEM;
  }
  for (size_t i = skip; i < total; i++) {
    char *line = px_json_dump(json_array_get(runs, i));
    if (line != NULL)
      fprintf(mem, "%s\n", line);
    free(line);
  }
  fclose(mem);
  json_decref(runs);
  int rc = buf != NULL ? px_write_file_atomic(state_dir, "runs.jsonl", buf, len, 0600) : -ENOMEM;
  free(buf);
  return rc;
}

size_t px_cursor_load(const char *state_dir) {
  char path[4200], *text = NULL;
  size_t n;
  unsigned long v = 0;
  px__path(state_dir, "cursor", path, sizeof(path));
  if (px_read_file(path, &text, &n) == 0) {
    text[strcspn(text, "\n")] = '\0';
    if (px_parse_ulong(text, 0, 100000000, &v) != 0)
      v = 0;
  }
  free(text);
  return (size_t)v;
}

int px_cursor_save(const char *state_dir, size_t next) {
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "%zu\n", next);
  return px_write_file_atomic(state_dir, "cursor", buf, (size_t)n, 0600);
}

json_t *px_public_addresses_load(const char *state_dir) {
  char path[4200];
  px__path(state_dir, "public-addresses", path, sizeof(path));
  json_t *list = json_load_file(path, 0, NULL);
  if (!json_is_array(list)) {
    json_decref(list);
    list = json_array();
  }
  return list;
}

int px_public_address_remember(const char *state_dir, const char *ip) {
  json_t *list = px_public_addresses_load(state_dir);
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), ip) == 0) {
      json_array_remove(list, i); /* moved to the end: newest last */
      break;
    }
  }
  json_array_append_new(list, json_string(ip));
  while (json_array_size(list) > PX_PUBLIC_KEPT)
    json_array_remove(list, 0);
  char *text = px_json_dump(list);
  json_decref(list);
  if (text == NULL)
    return -ENOMEM;
  int rc = px_write_file_atomic(state_dir, "public-addresses", text, strlen(text), 0600);
  free(text);
  return rc;
}
