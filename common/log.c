#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/termsafe.h"

static const char *px__prog = "parallax";
static int px__level = PX_LOG_INFO;
static int px__journal = -1; /* not yet known */

static const char *const px__names[] = {"error", "warning", "notice", "info", "debug"};

/* The journal's stream is ours only if $JOURNAL_STREAM names the very
 * file stderr is: a child whose stderr was redirected must not prefix. */
static int px__stderr_is_journal(void) {
  const char *js = getenv("JOURNAL_STREAM");
  struct stat st;
  if (js == NULL || fstat(STDERR_FILENO, &st) != 0)
    return 0;
  /* "DEV:INO", both decimal; anything else (overflow included) is not ours. */
  char *colon, *end;
  errno = 0;
  unsigned long long dev = strtoull(js, &colon, 10);
  if (colon == js || *colon != ':')
    return 0;
  unsigned long long ino = strtoull(colon + 1, &end, 10);
  if (end == colon + 1 || *end != '\0' || errno != 0)
    return 0;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void px_log_setup(const char *prog, int level) {
  if (prog != NULL)
    px__prog = prog;
  if (level >= PX_LOG_ERR && level <= PX_LOG_DEBUG)
    px__level = level;
  px__journal = px__stderr_is_journal();
}

int px_log_level_parse(const char *s, int *level) {
  for (int i = 0; i < 5; i++)
    if (strcasecmp(s, px__names[i]) == 0 || (s[0] == '0' + PX_LOG_ERR + i && s[1] == '\0')) {
      *level = PX_LOG_ERR + i;
      return 0;
    }
  if (strcasecmp(s, "warn") == 0) {
    *level = PX_LOG_WARNING;
    return 0;
  }
  return -EINVAL;
}

const char *px_log_level_name(int level) {
  return level >= PX_LOG_ERR && level <= PX_LOG_DEBUG ? px__names[level - PX_LOG_ERR] : "?";
}

int px_log_enabled(int prio) {
  return prio <= px__level;
}

void px_log(int prio, const char *fmt, ...) {
  if (!px_log_enabled(prio))
    return;
  if (px__journal < 0)
    px__journal = px__stderr_is_journal();
  /* One write per line, so lines from the signer child never interleave
   * mid-line with ours. */
  char msg[2048], line[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  size_t mlen = n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
  while (mlen > 0 && msg[mlen - 1] == '\n')
    mlen--;
  int off = px__journal ? snprintf(line, sizeof(line), "<%d>", prio) : 0;
  off += snprintf(line + off, sizeof(line) - (size_t)off, "%s: ", px__prog);
  /* Messages quote what collectors, peers and files said: rendered so
   * that none of it can drive the terminal (or forge a journal line). */
  (void)px_term_escape(msg, mlen, line + off, sizeof(line) - 1 - (size_t)off);
  size_t len = strlen(line);
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}
