#ifndef PX_LOG_H
#define PX_LOG_H

/* Messages for the people running us. On a terminal they are plain
 * "prog: message" lines; when stderr is connected to the journal (systemd
 * sets $JOURNAL_STREAM to the device and inode of that stream) each line
 * starts with a sd-daemon(3) priority prefix such as "<4>", so
 * `journalctl -p warning` finds the warnings. The message part goes
 * through px_term_escape (common/termsafe.h): messages quote collectors,
 * peers and files, so control characters, bidi controls and invalid UTF-8
 * appear as visible escapes and a backslash is doubled. */
enum {
  PX_LOG_ERR = 3,
  PX_LOG_WARNING = 4,
  PX_LOG_NOTICE = 5,
  PX_LOG_INFO = 6,
  PX_LOG_DEBUG = 7,
};

/* prog prefixes every message (not copied: keep it alive); messages less
 * urgent than level are dropped. Safe to call again. */
void px_log_setup(const char *prog, int level);

/* "error", "warning", "notice", "info", "debug" (or 3..7): 0, or -EINVAL. */
int px_log_level_parse(const char *s, int *level);
const char *px_log_level_name(int level);

/* True when messages of this priority are printed. */
int px_log_enabled(int prio);

__attribute__((format(printf, 2, 3)))
void px_log(int prio, const char *fmt, ...);

#endif
