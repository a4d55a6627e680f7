#ifndef PX_SYSRESOLVER_H
#define PX_SYSRESOLVER_H

#include <stddef.h>
#include <sys/socket.h>

/* The nameservers of the system configuration, as c-ares reads it
 * (path NULL: /etc/resolv.conf; c-ares falls back to 127.0.0.1 when the
 * file names none, like the C library). Sets *out (caller frees) and *n.
 * Returns 0 or a negative error with a one-line reason in err. */
int px_sysresolver_servers(const char *path, struct sockaddr_storage **out,
                           size_t *n, char *err, size_t errlen);

#endif
