#ifndef PX_MEASUREMENT_H
#define PX_MEASUREMENT_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#define PX_REPORT_ID_MAX 96

/* What every measurement of one run shares (OONI df-000 top-level keys). */
typedef struct px_run_info {
  char probe_cc[3];          /* "ZZ" when unknown */
  char probe_asn[16];        /* "AS0" when unknown */
  char *probe_network_name;  /* NULL when unknown (owned) */
  char resolver_ip[64];      /* "" when no resolver was used */
  time_t test_start_time;
  char report_id[PX_REPORT_ID_MAX];
  json_t *annotations;       /* flat string->string map (owned) */
} px_run_info_t;

/* "us" -> "US"; "ZZ" allowed. Returns 0 or -EINVAL. */
int px_probe_cc_normalize(const char *in, char out[3]);
/* "AS1234" or "1234" -> "AS1234" (0..4294967295). Returns 0 or -EINVAL. */
int px_probe_asn_normalize(const char *in, char out[16]);

/* Fills run with cc/asn (already normalised), the start time and a fresh
 * report id "YYYYMMDDTHHMMSSZ_tlscertconsistency_CC_ASN_<random>".
 * annotations starts empty; add with px_run_annotate. */
int px_run_info_init(px_run_info_t *run, const char *cc, const char *asn,
                     time_t now);
void px_run_info_free(px_run_info_t *run);
void px_run_annotate(px_run_info_t *run, const char *key, const char *value);

/* A complete measurement object in df-000 key order. test_keys is stolen.
 * input is the target exactly as given. */
json_t *px_measurement_new(const px_run_info_t *run, const char *input,
                           time_t measurement_start, double runtime,
                           json_t *test_keys);

#endif
