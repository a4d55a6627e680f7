#ifndef PX_JSON_UTIL_H
#define PX_JSON_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* Flags for every document we emit: compact, key order as built, and
 * enough digits for microsecond timings over a day-long run without the
 * binary-fraction noise of %.17g. */
#define PX_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))

/* A JSON string from bytes a peer chose (certificate names, SANs): valid
 * UTF-8 is kept, every invalid byte becomes U+FFFD. Never NULL unless out
 * of memory. */
json_t *px_json_string_lossy(const char *s, size_t n);

/* json_string, or json_null() when s is NULL. */
json_t *px_json_string_or_null(const char *s);

/* A deep copy of v, or json_null() when v is absent: summaries keep every
 * key even when the measurement lacked the field. */
json_t *px_json_copy_or_null(const json_t *v);

/* Compact serialisation (caller frees); NULL when out of memory. */
char *px_json_dump(const json_t *v);

#endif
