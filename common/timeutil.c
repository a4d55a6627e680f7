#include "common/timeutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void px__utc(time_t t, struct tm *tm) {
  if (gmtime_r(&t, tm) == NULL)
    memset(tm, 0, sizeof(*tm));
}

void px_time_format_ooni(time_t t, char out[PX_TIME_OONI_LEN]) {
  struct tm tm;
  px__utc(t, &tm);
  strftime(out, PX_TIME_OONI_LEN, "%Y-%m-%d %H:%M:%S", &tm);
}

void px_time_format_iso(time_t t, char out[PX_TIME_ISO_LEN]) {
  struct tm tm;
  px__utc(t, &tm);
  strftime(out, PX_TIME_ISO_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void px_time_format_compact(time_t t, char out[PX_TIME_COMPACT_LEN]) {
  struct tm tm;
  px__utc(t, &tm);
  strftime(out, PX_TIME_COMPACT_LEN, "%Y%m%dT%H%M%SZ", &tm);
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

void px_sleep_ms(unsigned ms) {
  struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR)
    ;
}
