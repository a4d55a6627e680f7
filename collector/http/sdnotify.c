#include "collector/http/sdnotify.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/encoding.h"

int px_sd_notify(const char *state) {
  const char *name = getenv("NOTIFY_SOCKET");
  if (name == NULL || name[0] == '\0')
    return 0;
  /* Only paths and abstract names; newer managers also speak vsock:, which
   * a collector on the host is never given. */
  if (name[0] != '/' && name[0] != '@')
    return -EAFNOSUPPORT;
  struct sockaddr_un sun;
  size_t n = strlen(name);
  if (n > sizeof(sun.sun_path) || (name[0] == '/' && n == sizeof(sun.sun_path)))
    return -ENAMETOOLONG;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, name, n);
  /* An abstract name is the exact bytes after its NUL: no terminator
   * counted, or the peer's name would not match. */
  if (name[0] == '@')
    sun.sun_path[0] = '\0';
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  /* The manager learns our pid from the kernel (SCM_CREDENTIALS on its
   * side), so one plain datagram is the whole protocol. */
  ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
  int rc = sent < 0 ? -errno : (size_t)sent == strlen(state) ? 0 : -EMSGSIZE;
  close(fd);
  return rc;
}

uint64_t px_sd_watchdog_usec(void) {
  const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
  unsigned long v, p;
  if (usec == NULL || px_parse_ulong(usec, 1, ULONG_MAX, &v) != 0)
    return 0;
  /* Inherited by a child of the service, it is not ours to answer. */
  if (pid != NULL && (px_parse_ulong(pid, 1, (unsigned long)INT32_MAX, &p) != 0 ||
                      (pid_t)p != getpid()))
    return 0;
  return v;
}
