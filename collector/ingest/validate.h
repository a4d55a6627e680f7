#ifndef PX_VALIDATE_H
#define PX_VALIDATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/target.h"

/* What the collector indexes a measurement by, taken from its content. */
typedef struct px_measurement_meta {
  char probe_cc[3];
  char probe_asn[16];
  char test_name[64];
  char input[PX_TARGET_MAX + 1];
  char domain[PX_HOSTNAME_MAX + 1]; /* input's host name, lower case */
  time_t measurement_start_time;
} px_measurement_meta_t;

/* Checks content (the exact signed bytes) before anything is stored:
 * one line of compact, valid UTF-8 JSON without duplicate keys, that
 * validates against schemas/measurement.schema.json (built into the
 * binary: every type, size and bound the schema states, collector/ingest/schema.c)
 * and the rules a schema cannot state: real calendar times between
 * 2012-01-01 and a day after received_at (0: no upper bound), ASNs within
 * 32 bits, input a domain[:port], every peer certificate's sha256 the hash
 * of its DER. Returns 0 with *meta filled, or -EINVAL with "PATH: reason"
 * in why and PATH (test_keys.queries[0].ttl, "" for the whole document)
 * in path when path is not NULL. */
int px_validate_measurement(const char *content, size_t n, time_t received_at,
                            px_measurement_meta_t *meta, char *why, size_t whylen, char *path,
                            size_t pathlen);

/* The measurement_uid of content with this meta and SHA-256 (OONI-like,
 * a function of the content: equal content, equal uid). */
void px_measurement_uid(const px_measurement_meta_t *meta, const uint8_t sha256[32], char *out,
                        size_t n);

#endif
