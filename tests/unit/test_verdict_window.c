/* Verdicts over the whole window (issue 19): every measurement of a key
 * counts, positive evidence from one measurement, blocking from at least
 * two and at least half; `observed` says how often and whether it still
 * happens; identical measurements are judged once. */
#include <string.h>

#include "tests/unit/verdict_fixtures.h"

#define T0 ((time_t)1796083200) /* 2026-12-01 00:00:00 */
#define HOUR ((time_t)3600)

/* Keys seen verifying 203.0.113.10 the whole time (one measurement each
 * hour, all alike: one entry with three times). */
static const time_t px__hours[3] = {T0, T0 + HOUR, T0 + 2 * HOUR};
static const char *const px__uids[3] = {"u0", "u1", "u2"};

static px_vantage_t px__steady(const char *key, const char *cc, const char *asn) {
  px_vantage_t v = px__v(key, cc, asn,
                         px__tls(px__sum("203.0.113.10"), "203.0.113.10", GOOD, true, NULL));
  v.times = px__hours;
  v.uids = px__uids;
  v.ntimes = 3;
  v.measurement_start_time = px__hours[2];
  return v;
}

/* One measurement of the watched key at hour h. */
static px_vantage_t px__at(int h, json_t *summary) {
  px_vantage_t v = px__v("k-cn", "CN", "AS4134", summary);
  v.measurement_start_time = T0 + h * HOUR;
  static char uids[16][16];
  snprintf(uids[h], sizeof(uids[h]), "cn-%d", h);
  v.uid = uids[h];
  return v;
}

static json_t *px__clean(void) {
  return px__tls(px__sum("203.0.113.10"), "203.0.113.10", GOOD, true, NULL);
}

static json_t *px__mitm(void) {
  return px__tls(px__sum("203.0.113.10"), "203.0.113.10", MITM, false, NULL);
}

static json_t *px__reset(void) {
  return px__tls(px__sum("203.0.113.10"), "203.0.113.10", NULL, false, "connection_reset");
}

static json_t *px__observed(json_t *doc) {
  return json_object_get(px__group(doc, "CN"), "observed");
}

static void px__run(const px_vantage_t *cn, size_t ncn, json_t **doc, px_compare_mode_t mode) {
  px_vantage_t v[16];
  memset(v, 0, sizeof(v));
  assert_true(ncn <= 14);
  v[0] = px__steady("k-de", "DE", "AS3320");
  v[1] = px__steady("k-us", "US", "AS7922");
  memcpy(&v[2], cn, ncn * sizeof(*cn));
  *doc = px_compare_mode("www.icloud.com", v, 2 + ncn, PX_QUORUM, mode);
  json_decref(v[0].summary);
  json_decref(v[1].summary);
}

static void px__free_cn(px_vantage_t *cn, size_t n, json_t *doc) {
  for (size_t i = 0; i < n; i++)
    json_decref(cn[i].summary);
  json_decref(doc);
}

/* Clean, intercepted, clean: an intermittent interception stays visible. */
PX_TEST(verdict_window_intermittent_interception) {
  (void)state;
  px_vantage_t cn[] = {px__at(0, px__clean()), px__at(1, px__mitm()), px__at(2, px__clean())};
  json_t *doc;
  px__run(cn, 3, &doc, PX_COMPARE_WINDOW);
  assert_string_equal(px__verdict(doc, "CN"), "tls_interception");
  json_t *o = px__observed(doc);
  assert_int_equal(json_integer_value(json_object_get(o, "measurements")), 3);
  assert_int_equal(json_integer_value(json_object_get(o, "anomalous")), 1);
  assert_false(json_is_true(json_object_get(o, "ongoing")));
  assert_string_equal(json_string_value(json_object_get(o, "first_seen")), "2026-12-01 01:00:00");
  assert_string_equal(json_string_value(json_object_get(o, "last_seen")), "2026-12-01 01:00:00");
  assert_string_equal(json_string_value(json_object_get(o, "clean_since")), "2026-12-01 02:00:00");
  double conf = json_real_value(json_object_get(px__group(doc, "CN"), "confidence"));
  assert_true(conf > 0.6 && conf < 0.7); /* 0.5 + 0.5 x 1/3 */
  /* The evidence is the intercepted measurement's. */
  json_t *ev = json_array_get(json_object_get(px__group(doc, "CN"), "evidence"), 0);
  assert_string_equal(json_string_value(json_object_get(ev, "measurement_uid")), "cn-1");
  /* The uids it rests on: the intercepted one, then the key's latest;
   * the clean one before is counted, not listed. */
  json_t *uids = json_object_get(px__group(doc, "CN"), "measurements");
  assert_int_equal(json_array_size(uids), 2);
  assert_string_equal(json_string_value(json_array_get(uids, 0)), "cn-1");
  assert_string_equal(json_string_value(json_array_get(uids, 1)), "cn-2");
  assert_int_equal(json_integer_value(json_object_get(px__group(doc, "CN"), "measurements_left_out")),
                   1);
  json_decref(doc);
  /* Judged on the latest alone: clean. */
  px__run(cn, 3, &doc, PX_COMPARE_LATEST);
  assert_string_equal(px__verdict(doc, "CN"), "consistent");
  px__free_cn(cn, 3, doc);
}

/* Interception in the latest measurement only: ongoing. */
PX_TEST(verdict_window_interception_latest_only) {
  (void)state;
  px_vantage_t cn[] = {px__at(0, px__clean()), px__at(1, px__clean()), px__at(2, px__mitm())};
  json_t *doc;
  px__run(cn, 3, &doc, PX_COMPARE_WINDOW);
  assert_string_equal(px__verdict(doc, "CN"), "tls_interception");
  json_t *o = px__observed(doc);
  assert_true(json_is_true(json_object_get(o, "ongoing")));
  assert_true(json_is_null(json_object_get(o, "clean_since")));
  json_decref(doc);
  px__run(cn, 3, &doc, PX_COMPARE_LATEST);
  assert_string_equal(px__verdict(doc, "CN"), "tls_interception");
  px__free_cn(cn, 3, doc);
}

/* One reset among three or five clean runs is a flaky network, not a
 * block; resets in three of four are. */
PX_TEST(verdict_window_blocking_thresholds) {
  (void)state;
  for (int runs = 3; runs <= 5; runs += 2) {
    px_vantage_t cn[5] = {0};
    for (int h = 0; h < runs; h++)
      cn[h] = px__at(h, h == 1 ? px__reset() : px__clean());
    json_t *doc;
    px__run(cn, (size_t)runs, &doc, PX_COMPARE_WINDOW);
    assert_string_equal(px__verdict(doc, "CN"), "consistent");
    px__free_cn(cn, (size_t)runs, doc);
  }
  px_vantage_t cn[] = {px__at(0, px__reset()), px__at(1, px__clean()), px__at(2, px__reset()),
                       px__at(3, px__reset())};
  json_t *doc;
  px__run(cn, 4, &doc, PX_COMPARE_WINDOW);
  assert_string_equal(px__verdict(doc, "CN"), "tls_blocked");
  json_t *o = px__observed(doc);
  assert_int_equal(json_integer_value(json_object_get(o, "anomalous")), 3);
  assert_true(json_is_true(json_object_get(o, "ongoing")));
  px__free_cn(cn, 4, doc);
  /* Two resets of five: not half. */
  px_vantage_t few[] = {px__at(0, px__reset()), px__at(1, px__clean()), px__at(2, px__reset()),
                        px__at(3, px__clean()), px__at(4, px__clean())};
  px__run(few, 5, &doc, PX_COMPARE_WINDOW);
  assert_string_equal(px__verdict(doc, "CN"), "consistent");
  px__free_cn(few, 5, doc);
}

/* A DNS answer no quorum verifies, in one run of three. */
PX_TEST(verdict_window_dns_once) {
  (void)state;
  json_t *lie = px__tls(px__sum("203.0.113.31"), "203.0.113.31", "ff00", false, NULL);
  px_vantage_t cn[] = {px__at(0, px__clean()), px__at(1, lie), px__at(2, px__clean())};
  json_t *doc;
  px__run(cn, 3, &doc, PX_COMPARE_WINDOW);
  assert_string_equal(px__verdict(doc, "CN"), "dns_inconsistent");
  assert_int_equal(json_integer_value(json_object_get(px__observed(doc), "anomalous")), 1);
  px__free_cn(cn, 3, doc);
}

/* A leaf rotated mid-window, by everyone: never flagged, and every leaf
 * the group saw is listed. */
PX_TEST(verdict_window_rotation) {
  (void)state;
  px_vantage_t cn[] = {px__at(0, px__clean()), px__at(1, px__clean()),
                       px__at(2, px__tls(px__sum("203.0.113.10"), "203.0.113.10", CDNA, true, NULL))};
  json_t *doc;
  px__run(cn, 3, &doc, PX_COMPARE_WINDOW);
  assert_string_equal(px__verdict(doc, "CN"), "consistent");
  assert_int_equal(json_array_size(json_object_get(px__group(doc, "CN"), "addresses")), 2);
  json_t *o = px__observed(doc);
  assert_int_equal(json_integer_value(json_object_get(o, "measurements")), 3);
  assert_int_equal(json_integer_value(json_object_get(o, "anomalous")), 0);
  /* The steady groups: three measurements in one entry. */
  json_t *de = json_object_get(px__group(doc, "DE"), "observed");
  assert_int_equal(json_integer_value(json_object_get(de, "measurements")), 3);
  /* Consistent: its latest listed, the others counted. */
  assert_int_equal(json_array_size(json_object_get(px__group(doc, "DE"), "measurements")), 1);
  assert_int_equal(
      json_integer_value(json_object_get(px__group(doc, "DE"), "measurements_left_out")), 2);
  px__free_cn(cn, 3, doc);
}
