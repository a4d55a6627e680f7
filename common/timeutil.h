#ifndef PX_TIMEUTIL_H
#define PX_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

#define PX_TIME_OONI_LEN 20    /* "YYYY-MM-DD HH:MM:SS" + NUL */
#define PX_TIME_ISO_LEN 21     /* "YYYY-MM-DDTHH:MM:SSZ" + NUL */
#define PX_TIME_COMPACT_LEN 17 /* "YYYYMMDDTHHMMSSZ" + NUL */

/* OONI's UTC timestamp form, used for measurement_start_time. */
void px_time_format_ooni(time_t t, char out[PX_TIME_OONI_LEN]);
/* ISO 8601 UTC with a Z, used for certificate validity. */
void px_time_format_iso(time_t t, char out[PX_TIME_ISO_LEN]);
/* The basic ISO 8601 form OONI puts at the front of report ids. */
void px_time_format_compact(time_t t, char out[PX_TIME_COMPACT_LEN]);

/* Parses "YYYY-MM-DDTHH:MM:SSZ", "YYYY-MM-DD HH:MM:SS" (UTC) or
 * "YYYY-MM-DD" (midnight UTC). Returns 0 or -EINVAL. */
int px_time_parse_utc(const char *s, time_t *out);

/* Seconds between two monotonic nanosecond readings, rounded to the
 * microsecond so the JSON shows no binary-fraction noise. */
double px_elapsed_seconds(uint64_t from_ns, uint64_t to_ns);

/* The wall clock the agent keeps its books by: the upload backoff, the
 * run records, what `status` compares them with. time(NULL), except in
 * test builds (PX_TEST_HOOKS), where PX_TEST_CLOCK_OFFSET_S seconds are
 * added: a test can then let hours pass (a simulated week, a suspend)
 * in seconds. Measurements keep the real clock (and the check-in's
 * correction of it): the collector, another machine, did not jump. */
time_t px_time_now(void);

/* Sleeps ms milliseconds, signals or not. (usleep is gone from POSIX 2008
 * and may refuse a second or more.) */
void px_sleep_ms(unsigned ms);

#endif
