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

/* Checks content (the exact signed bytes) against the rules of
 * schemas/measurement.schema.json that matter for storing and comparing:
 * one line of valid UTF-8 JSON, no duplicate keys, every required key with
 * its type and format, no unknown top-level or test_keys keys, probe_ip
 * 127.0.0.1, and every peer certificate's sha256 equal to the hash of its
 * DER. Returns 0 with *meta filled, or -EINVAL with a reason in why. */
int px_validate_measurement(const char *content, size_t n,
                            px_measurement_meta_t *meta, char *why,
                            size_t whylen);

/* The measurement_uid of content with this meta and SHA-256 (OONI-like,
 * a function of the content: equal content, equal uid). */
void px_measurement_uid(const px_measurement_meta_t *meta, const uint8_t sha256[32], char *out,
                        size_t n);

#endif
