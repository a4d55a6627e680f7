#include "common/statedir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int px_state_dir_resolve(const char *flag, const char *name, char *out,
                         size_t n, char *err, size_t errlen) {
  const char *sd = getenv("STATE_DIRECTORY");
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  int w;

  if (flag != NULL && flag[0] != '\0')
    w = snprintf(out, n, "%s", flag);
  else if (sd != NULL && sd[0] != '\0')
    /* systemd lists one directory per StateDirectory= entry, ':'-separated. */
    w = snprintf(out, n, "%.*s", (int)strcspn(sd, ":"), sd);
  else if (geteuid() == 0)
    w = snprintf(out, n, "/var/lib/%s", name);
  else if (xdg != NULL && xdg[0] == '/')
    w = snprintf(out, n, "%s/%s", xdg, name);
  else if (home != NULL && home[0] == '/')
    w = snprintf(out, n, "%s/.local/state/%s", home, name);
  else {
    snprintf(err, errlen, "no state directory: give --state-dir (HOME is not set)");
    return -EINVAL;
  }
  if (w < 0 || (size_t)w >= n) {
    snprintf(err, errlen, "state directory path too long");
    return -EINVAL;
  }
  return 0;
}

int px_mkdirs(const char *path, unsigned mode) {
  char buf[PX_PATH_MAX];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(buf))
    return -ENAMETOOLONG;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, mode) != 0 && errno != EEXIST)
    return -errno;
  struct stat st;
  if (stat(buf, &st) != 0)
    return -errno;
  return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
