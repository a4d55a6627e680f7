#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/timeutil.h"

int px_write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int px_read_all(int fd, void *data, size_t n) {
  char *p = data;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (r == 0)
      return -EPIPE;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int px_fsync(int fd) {
#ifdef PX_TEST_HOOKS
  /* Test builds only: PX_TEST_FSYNC_DELAY_MS makes every fsync as slow as
   * an SD card's, so tests can show that no fsync runs on the agent's
   * loop. */
  const char *delay = getenv("PX_TEST_FSYNC_DELAY_MS");
  long ms = delay != NULL ? strtol(delay, NULL, 10) : 0;
  if (ms > 0 && ms <= 10000)
    px_sleep_ms((unsigned)ms);
#endif
  return fsync(fd) == 0 ? 0 : -errno;
}

/* Writes data to a new temporary file beside final and fsyncs it. */
static int px__write_tmp(const char *tmp, const void *data, size_t n, unsigned mode) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  if (fd < 0)
    return -errno;
  int rc = px_write_all(fd, data, n);
  if (rc == 0 && fchmod(fd, (mode_t)mode) != 0) /* whatever the umask said */
    rc = -errno;
  if (rc == 0)
    rc = px_fsync(fd);
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  if (rc != 0)
    unlink(tmp);
  return rc;
}

int px_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = px_fsync(fd);
  close(fd);
  return rc;
}

int px_write_file_atomic(const char *dir, const char *name, const void *data, size_t n,
                         unsigned mode) {
  char tmp[4400], final[4400];
  snprintf(tmp, sizeof(tmp), "%s/.tmp.%ld.%s", dir, (long)getpid(), name);
  snprintf(final, sizeof(final), "%s/%s", dir, name);
  unlink(tmp); /* a leftover of a crashed run with the same pid */
  int rc = px__write_tmp(tmp, data, n, mode);
  if (rc != 0)
    return rc;
  if (rename(tmp, final) != 0) {
    rc = -errno;
    unlink(tmp);
    return rc;
  }
  return px_fsync_dir(dir);
}

int px_write_file_new(const char *path, const void *data, size_t n, unsigned mode) {
  char tmp[4400];
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  unlink(tmp);
  int rc = px__write_tmp(tmp, data, n, mode);
  if (rc != 0)
    return rc;
  if (link(tmp, path) != 0)
    rc = -errno;
  unlink(tmp);
  return rc;
}

int px_read_file(const char *path, char **out, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return -errno;
  char *buf = NULL;
  size_t len = 0, cap = 0, r;
  do {
    if (len + 65536 + 1 > cap) {
      cap = cap ? cap * 2 : (size_t)2 * 65536;
      char *b = realloc(buf, cap);
      if (b == NULL) {
        free(buf);
        fclose(f);
        return -ENOMEM;
      }
      buf = b;
    }
    r = fread(buf + len, 1, cap - len - 1, f);
    len += r;
  } while (r > 0);
  int rc = ferror(f) ? -EIO : 0;
  fclose(f);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  buf[len] = '\0';
  *out = buf;
  if (n != NULL)
    *n = len;
  return 0;
}
