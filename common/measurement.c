#include "common/measurement.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "px_version.h"

int px_probe_cc_normalize(const char *in, char out[3]) {
  if (strlen(in) != 2 || !isalpha((unsigned char)in[0]) ||
      !isalpha((unsigned char)in[1]))
    return -EINVAL;
  out[0] = (char)toupper((unsigned char)in[0]);
  out[1] = (char)toupper((unsigned char)in[1]);
  out[2] = '\0';
  return 0;
}

int px_probe_asn_normalize(const char *in, char out[16]) {
  const char *p = in;
  if ((p[0] == 'A' || p[0] == 'a') && (p[1] == 'S' || p[1] == 's'))
    p += 2;
  if (*p == '\0' || strlen(p) > 10)
    return -EINVAL;
  uint64_t v = 0;
  for (; *p; p++) {
    if (!isdigit((unsigned char)*p))
      return -EINVAL;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (v > UINT32_MAX)
    return -EINVAL;
  snprintf(out, 16, "AS%" PRIu64, v);
  return 0;
}

int px_run_info_init(px_run_info_t *run, const char *cc, const char *asn,
                     time_t now) {
  static const char alnum[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char rnd[24];
  char suffix[sizeof(rnd) + 1];
  char stamp[PX_TIME_COMPACT_LEN];

  memset(run, 0, sizeof(*run));
  snprintf(run->probe_cc, sizeof(run->probe_cc), "%s", cc);
  snprintf(run->probe_asn, sizeof(run->probe_asn), "%s", asn);
  run->test_start_time = now;
  if (RAND_bytes(rnd, sizeof(rnd)) != 1)
    return -EIO;
  /* 62 is not a power of two; the slight bias is harmless for an id. */
  for (size_t i = 0; i < sizeof(rnd); i++)
    suffix[i] = alnum[rnd[i] % (sizeof(alnum) - 1)];
  suffix[sizeof(rnd)] = '\0';
  px_time_format_compact(now, stamp);
  /* OONI's report ids carry the bare AS number. */
  snprintf(run->report_id, sizeof(run->report_id), "%s_tlscertconsistency_%s_%s_%s",
           stamp, run->probe_cc, run->probe_asn + 2, suffix);
  run->annotations = json_object();
  return run->annotations ? 0 : -ENOMEM;
}

void px_run_info_free(px_run_info_t *run) {
  json_decref(run->annotations);
  free(run->probe_network_name);
  memset(run, 0, sizeof(*run));
}

void px_run_annotate(px_run_info_t *run, const char *key, const char *value) {
  json_object_set_new(run->annotations, key, json_string(value ? value : ""));
}

json_t *px_measurement_new(const px_run_info_t *run, const char *input,
                           time_t measurement_start, double runtime,
                           json_t *test_keys) {
  char mst[PX_TIME_OONI_LEN], tst[PX_TIME_OONI_LEN];
  json_t *m = json_object();

  px_time_format_ooni(measurement_start, mst);
  px_time_format_ooni(run->test_start_time, tst);
  json_object_set_new(m, "data_format_version", json_string(PX_DATA_FORMAT_VERSION));
  json_object_set_new(m, "measurement_start_time", json_string(mst));
  json_object_set_new(m, "test_start_time", json_string(tst));
  json_object_set_new(m, "probe_cc", json_string(run->probe_cc));
  json_object_set_new(m, "probe_asn", json_string(run->probe_asn));
  json_object_set_new(m, "probe_network_name",
                      run->probe_network_name ? json_string(run->probe_network_name)
                                              : json_null());
  /* The volunteer's address is never recorded (OONI's default too). */
  json_object_set_new(m, "probe_ip", json_string("127.0.0.1"));
  json_object_set_new(m, "resolver_ip",
                      run->resolver_ip[0] ? json_string(run->resolver_ip) : json_null());
  json_object_set_new(m, "resolver_asn", json_string("AS0"));
  json_object_set_new(m, "resolver_network_name", json_null());
  json_object_set_new(m, "software_name", json_string(PX_SOFTWARE_NAME));
  json_object_set_new(m, "software_version", json_string(PX_SOFTWARE_VERSION));
  json_object_set_new(m, "test_name", json_string(PX_TEST_NAME));
  json_object_set_new(m, "test_version", json_string(PX_TEST_VERSION));
  json_object_set_new(m, "test_runtime", json_real(runtime));
  json_object_set_new(m, "input", json_string(input));
  json_object_set_new(m, "report_id", json_string(run->report_id));
  json_object_set_new(m, "annotations", json_deep_copy(run->annotations));
  json_object_set_new(m, "test_keys", test_keys);
  return m;
}
