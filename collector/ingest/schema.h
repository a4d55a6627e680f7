#ifndef PX_SCHEMA_H
#define PX_SCHEMA_H

#include <stddef.h>

#include "collector/ingest/jsontok.h"

/* The collector checks every upload against the same JSON Schema files
 * that schemas/ publishes (compiled into the binary), so what researchers
 * read in the schema is what ingest enforces, and no field that the
 * analysis or the page reads can have a type or size the schema does not
 * allow. The interpreter knows the subset of JSON Schema 2020-12 those
 * files use, and refuses to compile a schema with any other validation
 * keyword, so a schema can never promise a check that is not made:
 *   type, const, enum, required, properties, additionalProperties,
 *   propertyNames, minProperties, maxProperties, items, minItems,
 *   maxItems, minLength, maxLength (code points), pattern (the subset of
 *   collector/ingest/pattern.h),
 *   format (ipv4, ipv6), minimum, maximum, anyOf, oneOf, allOf, not,
 *   if/then/else, $ref to "#/$defs/NAME".
 * Annotations ($schema, $id, title, description, $comment,
 * contentEncoding, contentMediaType, examples, default) are ignored. */
typedef struct px_schema px_schema_t;

/* Compiles a schema document (JSON text). 0, or -EINVAL with the reason
 * in err. The result is immutable: any number of threads may validate
 * with it at once. */
int px_schema_compile(const char *text, size_t n, px_schema_t **out, char *err, size_t errlen);
void px_schema_free(px_schema_t *s);

/* Validates the value at token idx of d. 0, or -EINVAL with
 * "PATH: reason" in why, PATH naming the first offending value the way a
 * researcher would write it (test_keys.queries[0].answers[2].ttl; the
 * empty path is the document itself). *path_out, if not NULL, receives a
 * pointer into why at the path (NUL-terminated copy in path, pathlen). */
int px_schema_validate(const px_schema_t *s, const px_jdoc_t *d, int idx, char *why,
                       size_t whylen, char *path, size_t pathlen);

/* A schema of schemas/ built into the binary ("measurement", "compare"),
 * compiled on first use; NULL for another name, or if it does not
 * compile, which the unit tests rule out. */
const px_schema_t *px_schema_builtin(const char *name);
/* px_schema_builtin("measurement"). */
const px_schema_t *px_schema_measurement(void);

#endif
