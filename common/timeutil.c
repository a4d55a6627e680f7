#include "common/timeutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void px__utc(time_t t, struct tm *tm) {
  if (gmtime_r(&t, tm) == NULL)
    memset(tm, 0, sizeof(*tm));
}

/* Four-digit years whatever the time: strftime's %Y writes 999 or 10000
 * as they are, which no reader of our formats expects (and overflows the
 * fixed-size buffers). Times outside years 0..9999 are clamped. */
static void px__fields(time_t t, int f[6]) {
  struct tm tm;
  px__utc(t, &tm);
  long year = (long)tm.tm_year + 1900;
  if (year < 0 || year > 9999) {
    memset(&tm, 0, sizeof(tm));
    tm.tm_mday = year < 0 ? 1 : 31;
    tm.tm_mon = year < 0 ? 0 : 11;
    if (year > 9999) {
      tm.tm_hour = 23;
      tm.tm_min = tm.tm_sec = 59;
    }
    year = year < 0 ? 0 : 9999;
  }
  f[0] = (int)year;
  f[1] = tm.tm_mon + 1;
  f[2] = tm.tm_mday;
  f[3] = tm.tm_hour;
  f[4] = tm.tm_min;
  f[5] = tm.tm_sec;
}

void px_time_format_ooni(time_t t, char out[PX_TIME_OONI_LEN]) {
  int f[6];
  px__fields(t, f);
  snprintf(out, PX_TIME_OONI_LEN, "%04d-%02d-%02d %02d:%02d:%02d", f[0], f[1], f[2], f[3], f[4],
           f[5]);
}

void px_time_format_iso(time_t t, char out[PX_TIME_ISO_LEN]) {
  int f[6];
  px__fields(t, f);
  snprintf(out, PX_TIME_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02dZ", f[0], f[1], f[2], f[3], f[4],
           f[5]);
}

void px_time_format_compact(time_t t, char out[PX_TIME_COMPACT_LEN]) {
  int f[6];
  px__fields(t, f);
  snprintf(out, PX_TIME_COMPACT_LEN, "%04d%02d%02dT%02d%02d%02dZ", f[0], f[1], f[2], f[3], f[4],
           f[5]);
}

static int px__digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -EINVAL;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

int px_time_parse_utc(const char *s, time_t *out) {
  struct tm tm;
  int y, mo, d, h = 0, mi = 0, se = 0;
  size_t n = strlen(s);

  memset(&tm, 0, sizeof(tm));
  if (n < 10 || s[4] != '-' || s[7] != '-' || px__digits(s, 4, &y) ||
      px__digits(s + 5, 2, &mo) || px__digits(s + 8, 2, &d))
    return -EINVAL;
  if (n > 10) {
    if ((s[10] != 'T' && s[10] != ' ') || n < 19 || s[13] != ':' ||
        s[16] != ':' || px__digits(s + 11, 2, &h) ||
        px__digits(s + 14, 2, &mi) || px__digits(s + 17, 2, &se))
      return -EINVAL;
    if (!(n == 19 || (n == 20 && s[19] == 'Z')))
      return -EINVAL;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return -EINVAL;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  *out = timegm(&tm);
  /* timegm normalises 2023-02-31 into March; refuse instead of guessing. */
  struct tm back;
  px__utc(*out, &back);
  if (back.tm_mday != d || back.tm_mon != mo - 1)
    return -EINVAL;
  return 0;
}

double px_elapsed_seconds(uint64_t from_ns, uint64_t to_ns) {
  if (to_ns <= from_ns)
    return 0.0;
  return round((double)(to_ns - from_ns) / 1e3) / 1e6;
}

time_t px_time_now(void) {
  time_t now = time(NULL);
#ifdef PX_TEST_HOOKS
  const char *offset = getenv("PX_TEST_CLOCK_OFFSET_S");
  if (offset != NULL)
    now += (time_t)strtoll(offset, NULL, 10);
#endif
  return now;
}

void px_sleep_ms(unsigned ms) {
  struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR)
    ;
}
