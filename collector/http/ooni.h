#ifndef PX_OONI_H
#define PX_OONI_H

/* The OONI form of a stored measurement (issue 16): the signed JSON
 * object with "measurement_uid" added as a top-level key, which is what
 * OONI's own JSONL carries and what its pipeline asserts. */

#include <stdbool.h>
#include <stddef.h>

/* What precedes the signed bytes after their first byte: `{"measurement_uid":"<uid>",`. */
#define PX_OONI_PREFIX_FMT "{\"measurement_uid\":\"%s\","

/* A collector uid: letters, digits, '_' and '-', shorter than PX_UID_MAX
 * (nothing in it needs escaping, in JSON or in a log line). */
bool px_ooni_uid_ok(const char *uid);

/* The OONI line of (uid, content) into *out (malloc'ed, *out_len bytes
 * plus a NUL, no newline). It is spliced, not re-serialised: uid goes in
 * as the first member and the rest is the signed bytes unchanged, so
 * '{' followed by what comes after the prefix is the signed content,
 * byte for byte. content must be what upload validation stores (one
 * compact JSON object, no duplicate keys, no top-level measurement_uid)
 * and uid a collector uid (letters, digits, '_', '-'); anything else is
 * -EINVAL and nothing is made, so a row altered in the database never
 * becomes a broken or ambiguous line. -ENOMEM when out of memory. */
int px_ooni_line(const char *uid, const char *content, size_t content_len, char **out,
                 size_t *out_len);

#endif
