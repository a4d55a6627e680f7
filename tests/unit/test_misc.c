#include <errno.h>
#include <openssl/x509_vfy.h>
#include <string.h>

#include "common/failure.h"
#include "common/measurement.h"
#include "common/timeutil.h"
#include "tests/runner.h"

PX_TEST(time_format_and_parse) {
  char ooni[PX_TIME_OONI_LEN], iso[PX_TIME_ISO_LEN], compact[PX_TIME_COMPACT_LEN];
  time_t t;
  (void)state;
  /* 2014-10-20 12:34:56 UTC, the week of the iCloud interception. */
  time_t when = 1413808496;
  px_time_format_ooni(when, ooni);
  px_time_format_iso(when, iso);
  px_time_format_compact(when, compact);
  assert_string_equal(ooni, "2014-10-20 12:34:56");
  assert_string_equal(iso, "2014-10-20T12:34:56Z");
  assert_string_equal(compact, "20141020T123456Z");
  assert_int_equal(px_time_parse_utc("2014-10-20T12:34:56Z", &t), 0);
  assert_int_equal(t, when);
  assert_int_equal(px_time_parse_utc("2014-10-20 12:34:56", &t), 0);
  assert_int_equal(t, when);
  assert_int_equal(px_time_parse_utc("2014-10-20", &t), 0);
  assert_int_equal(t, when - (12 * 3600 + 34 * 60 + 56));
  const char *bad[] = {"", "2014-10-20T12:34", "2014-13-01", "2014-02-30", "2014/10/20",
                       "2014-10-20T25:00:00Z", "2014-10-20T12:34:56+02:00", "20141020"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (px_time_parse_utc(bad[i], &t) != -EINVAL)
      fail_msg("'%s' should be refused", bad[i]);
  assert_true(px_elapsed_seconds(1000, 1500000) == 0.001499);
  assert_true(px_elapsed_seconds(5, 4) == 0.0);
}

PX_TEST(failure_mappings) {
  char buf[PX_FAILURE_MAX];
  (void)state;
  assert_null(px_failure_from_rcode(0, buf, sizeof(buf)));
  assert_string_equal(px_failure_from_rcode(2, buf, sizeof(buf)), "dns_servfail_error");
  assert_string_equal(px_failure_from_rcode(3, buf, sizeof(buf)), "dns_nxdomain_error");
  assert_string_equal(px_failure_from_rcode(5, buf, sizeof(buf)), "dns_refused_error");
  assert_string_equal(px_failure_from_rcode(1, buf, sizeof(buf)), "dns_server_misbehaving");
  assert_string_equal(px_failure_from_rcode(9, buf, sizeof(buf)), "unknown_failure: dns rcode 9");
  assert_string_equal(px_failure_from_errno(-ECONNREFUSED, buf, sizeof(buf)), "connection_refused");
  assert_string_equal(px_failure_from_errno(-ECONNRESET, buf, sizeof(buf)), "connection_reset");
  assert_string_equal(px_failure_from_errno(-ETIMEDOUT, buf, sizeof(buf)), "generic_timeout_error");
  assert_string_equal(px_failure_from_errno(-ENETUNREACH, buf, sizeof(buf)), "network_unreachable");
  assert_string_equal(px_failure_from_errno(-EHOSTUNREACH, buf, sizeof(buf)), "host_unreachable");
  assert_string_equal(px_failure_from_errno(-EACCES, buf, sizeof(buf)), "permission_denied");
  assert_string_equal(px_failure_from_errno(-EPERM, buf, sizeof(buf)), "permission_denied");
  assert_string_equal(px_failure_from_errno(-ENETDOWN, buf, sizeof(buf)), "network_down");
  assert_string_equal(px_failure_from_errno(-ECONNABORTED, buf, sizeof(buf)), "connection_aborted");
  assert_true(strncmp(px_failure_from_errno(-EADDRINUSE, buf, sizeof(buf)), "unknown_failure: ", 17) == 0);
  assert_string_equal(px_failure_from_x509(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT), "ssl_unknown_authority");
  assert_string_equal(px_failure_from_x509(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY), "ssl_unknown_authority");
  assert_string_equal(px_failure_from_x509(X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN), "ssl_unknown_authority");
  assert_string_equal(px_failure_from_x509(X509_V_ERR_CERT_HAS_EXPIRED), "ssl_invalid_certificate");
  assert_string_equal(px_failure_from_x509(X509_V_ERR_CERT_NOT_YET_VALID), "ssl_invalid_certificate");
  assert_string_equal(px_failure_from_x509(X509_V_ERR_INVALID_PURPOSE), "ssl_invalid_certificate");
}

PX_TEST(measurement_envelope) {
  px_run_info_t run;
  (void)state;
  assert_int_equal(px_run_info_init(&run, "CN", "AS4134", 1413808496), 0);
  /* YYYYMMDDTHHMMSSZ_tlscertconsistency_CC_ASN_<random> */
  assert_true(strncmp(run.report_id, "20141020T123456Z_tlscertconsistency_CN_4134_", 44) == 0);
  assert_int_equal(strlen(run.report_id), 44 + 24);
  px_run_info_t other;
  assert_int_equal(px_run_info_init(&other, "CN", "AS4134", 1413808496), 0);
  assert_string_not_equal(run.report_id, other.report_id);
  px_run_info_free(&other);

  px_run_annotate(&run, "engine_name", "parallax");
  json_t *m = px_measurement_new(&run, "www.icloud.com", 1413808500, 1.5, json_object());
  const char *order[] = {"data_format_version", "measurement_start_time", "test_start_time",
                         "probe_cc", "probe_asn", "probe_network_name", "probe_ip",
                         "resolver_ip", "resolver_asn", "resolver_network_name",
                         "software_name", "software_version", "test_name", "test_version",
                         "test_runtime", "input", "report_id", "annotations", "test_keys"};
  size_t i = 0;
  const char *key;
  json_t *value;
  json_object_foreach(m, key, value) {
    assert_true(i < sizeof(order) / sizeof(order[0]));
    assert_string_equal(key, order[i++]);
  }
  assert_int_equal(i, sizeof(order) / sizeof(order[0]));
  assert_string_equal(json_string_value(json_object_get(m, "probe_ip")), "127.0.0.1");
  assert_string_equal(json_string_value(json_object_get(m, "measurement_start_time")), "2014-10-20 12:35:00");
  assert_string_equal(json_string_value(json_object_get(m, "test_start_time")), "2014-10-20 12:34:56");
  assert_string_equal(json_string_value(json_object_get(m, "test_name")), "tls_cert_consistency");
  assert_true(json_is_null(json_object_get(m, "resolver_ip")));
  json_decref(m);
  px_run_info_free(&run);
}

PX_TEST(measurement_cc_asn) {
  char cc[3], asn[16];
  (void)state;
  assert_int_equal(px_probe_cc_normalize("cn", cc), 0);
  assert_string_equal(cc, "CN");
  assert_int_equal(px_probe_cc_normalize("ZZ", cc), 0);
  assert_int_equal(px_probe_cc_normalize("C", cc), -EINVAL);
  assert_int_equal(px_probe_cc_normalize("CHN", cc), -EINVAL);
  assert_int_equal(px_probe_cc_normalize("c1", cc), -EINVAL);
  assert_int_equal(px_probe_asn_normalize("AS4134", asn), 0);
  assert_string_equal(asn, "AS4134");
  assert_int_equal(px_probe_asn_normalize("as3320", asn), 0);
  assert_string_equal(asn, "AS3320");
  assert_int_equal(px_probe_asn_normalize("4294967295", asn), 0);
  assert_int_equal(px_probe_asn_normalize("4294967296", asn), -EINVAL);
  assert_int_equal(px_probe_asn_normalize("AS", asn), -EINVAL);
  assert_int_equal(px_probe_asn_normalize("AS12a", asn), -EINVAL);
  assert_int_equal(px_probe_asn_normalize("", asn), -EINVAL);
}
