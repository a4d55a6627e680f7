#ifndef PX_SDNOTIFY_H
#define PX_SDNOTIFY_H

#include <stdint.h>

/* The service manager's readiness protocol (sd_notify(3)) without linking
 * libsystemd: state ("READY=1\nSTATUS=...") goes as one datagram to the
 * AF_UNIX socket named by $NOTIFY_SOCKET, a leading '@' meaning the
 * abstract namespace. Returns 0 when sent, or when NOTIFY_SOCKET is unset
 * (not started by systemd: nothing to tell); a negative errno otherwise. */
int px_sd_notify(const char *state);

/* The keep-alive interval systemd asks for (WatchdogSec=, through
 * $WATCHDOG_USEC and $WATCHDOG_PID), in microseconds; 0 when there is no
 * watchdog or it is meant for another process. */
uint64_t px_sd_watchdog_usec(void);

#endif
