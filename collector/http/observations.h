#ifndef PX_OBSERVATIONS_H
#define PX_OBSERVATIONS_H

/* GET /api/v1/observations.csv (docs/api.md): the measurements flattened
 * for pandas, R and DuckDB, one CSV row (RFC 4180: CRLF, fields quoted
 * when they hold a comma, a quote, CR or LF, quotes doubled) per
 * observation: a DNS answer (or a query without one), a late DNS reply's
 * answer, a TCP connect, a TLS handshake. */

#include <stddef.h>

/* The header row, CRLF included. */
extern const char px_observations_csv_header[];

/* Appends the rows of one stored measurement (its signed JSON, uid) to
 * out[*len..] (growing *out, *cap as needed; each row ends in CRLF).
 * -EINVAL when the content is not a JSON object (nothing appended),
 * -ENOMEM. */
int px_observations_csv(const char *uid, const char *content, size_t content_len, char **out,
                        size_t *len, size_t *cap);

#endif
