/* The verdict rules on constructed measurement sets, including the hard
 * cases: CDNs, failures only, a single vantage, one of several vantages in
 * a country, a target down everywhere. */
#include <string.h>

#include "collector/analysis/verdict.h"
#include "tests/runner.h"

#include "tests/unit/verdict_fixtures.h"

/* The 2014 pattern: correct DNS, a self-signed leaf on the path in one
 * country, the valid leaf at the same address everywhere else. */
PX_TEST(verdict_interception_2014) {
  (void)state;
  px_vantage_t v[] = {
      px__v("k-cn", "CN", "AS4134", px__tls(px__sum("23.59.94.46"), "23.59.94.46", MITM, false, NULL)),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
  };
  json_t *doc = px_compare("www.icloud.com", v, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "CN"), "tls_interception");
  assert_string_equal(px__verdict(doc, "DE"), "consistent");
  assert_string_equal(px__verdict(doc, "US"), "consistent");
  json_t *cn = px__group(doc, "CN");
  assert_true(json_real_value(json_object_get(cn, "confidence")) == 1.0);
  json_t *ev = json_array_get(json_object_get(cn, "evidence"), 0);
  assert_string_equal(json_string_value(json_object_get(ev, "leaf_sha256")), MITM);
  assert_string_equal(json_string_value(json_object_get(ev, "address")), "23.59.94.46:443");
  assert_true(json_is_true(json_object_get(ev, "self_signed")));
  assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "others_leaf_sha256"), 0)), GOOD);
  /* Most severe first. */
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(doc, "vantages"), 0),
                                                        "probe_cc")), "CN");
  /* seen_by: two vantages saw GOOD there, one saw the MITM. */
  json_t *de_addr = json_array_get(json_object_get(px__group(doc, "DE"), "addresses"), 0);
  assert_int_equal(json_integer_value(json_object_get(de_addr, "seen_by")), 2);
  px__free(v, 3, doc);
}

/* Geo-DNS and CDNs: different but valid certificates at different
 * addresses are never flagged. */
PX_TEST(verdict_cdn_is_consistent) {
  (void)state;
  px_vantage_t v[] = {
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("203.0.113.20"), "203.0.113.20", CDNA, true, NULL)),
      px__v("k-fr", "FR", "AS3215", px__tls(px__sum("203.0.113.20"), "203.0.113.20", CDNA, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("203.0.113.21"), "203.0.113.21", CDNB, true, NULL)),
      px__v("k-jp", "JP", "AS2516", px__tls(px__sum("203.0.113.22"), "203.0.113.22", "cc00", true, NULL)),
  };
  json_t *doc = px_compare("cdn.example.com", v, 4, PX_QUORUM);
  const char *cc[] = {"DE", "FR", "US", "JP"};
  for (int i = 0; i < 4; i++)
    assert_string_equal(px__verdict(doc, cc[i]), "consistent");
  px__free(v, 4, doc);
}

/* DNS redirection: an answer nobody else gets, which does not verify. */
PX_TEST(verdict_dns_redirection) {
  (void)state;
  json_t *ir = px__sum("203.0.113.31");
  px__tls(ir, "203.0.113.31", "dd00", false, NULL);
  /* The control address verifies in IR too: the network is clean, the
   * resolver lies. */
  px__tls(ir, "203.0.113.30", GOOD, true, NULL);
  px_vantage_t v[] = {
      px__v("k-ir", "IR", "AS58224", ir),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("203.0.113.30"), "203.0.113.30", GOOD, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("203.0.113.30"), "203.0.113.30", GOOD, true, NULL)),
  };
  json_t *doc = px_compare("news.example.com", v, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "IR"), "dns_inconsistent");
  json_t *ev = json_array_get(json_object_get(px__group(doc, "IR"), "evidence"), 0);
  assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "answers"), 0)), "203.0.113.31");
  assert_string_equal(px__verdict(doc, "DE"), "consistent");
  px__free(v, 3, doc);

  /* A different answer that VERIFIES is geo-DNS, not redirection. */
  px_vantage_t w[] = {
      px__v("k-ir", "IR", "AS58224", px__tls(px__sum("203.0.113.99"), "203.0.113.99", "ee00", true, NULL)),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("203.0.113.30"), "203.0.113.30", GOOD, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("203.0.113.30"), "203.0.113.30", GOOD, true, NULL)),
  };
  doc = px_compare("news.example.com", w, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "IR"), "consistent");
  px__free(w, 3, doc);
}

/* Handshakes reset where a quorum completes them. */
PX_TEST(verdict_blocking) {
  (void)state;
  px_vantage_t v[] = {
      px__v("k-ru", "RU", "AS12389",
            px__tls(px__sum("203.0.113.40"), "203.0.113.40", NULL, false, "connection_reset")),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("203.0.113.40"), "203.0.113.40", GOOD, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("203.0.113.40"), "203.0.113.40", GOOD, true, NULL)),
  };
  /* One measurement judged alone (--latest): over a window, blocking needs
   * two (test_verdict_window.c). */
  json_t *doc = px_compare_mode("social.example.org", v, 3, PX_QUORUM, PX_COMPARE_LATEST);
  assert_string_equal(px__verdict(doc, "RU"), "tls_blocked");
  json_t *ev = json_array_get(json_object_get(px__group(doc, "RU"), "evidence"), 0);
  assert_string_equal(json_string_value(json_object_get(ev, "failure")), "connection_reset");
  px__free(v, 3, doc);

  /* A broken IPv6 route beside a working IPv4 handshake is not blocking. */
  json_t *ru = px__sum("203.0.113.40 2001:db8::40");
  px__tls(ru, "203.0.113.40", GOOD, true, NULL);
  px__tls(ru, "2001:db8::40", NULL, false, "generic_timeout_error");
  json_t *de = px__sum("203.0.113.40 2001:db8::40");
  px__tls(de, "203.0.113.40", GOOD, true, NULL);
  px__tls(de, "2001:db8::40", GOOD, true, NULL);
  json_t *us = px__sum("203.0.113.40 2001:db8::40");
  px__tls(us, "203.0.113.40", GOOD, true, NULL);
  px__tls(us, "2001:db8::40", GOOD, true, NULL);
  px_vantage_t w[] = {px__v("k-ru", "RU", "AS1", ru), px__v("k-de", "DE", "AS2", de),
                      px__v("k-us", "US", "AS3", us)};
  doc = px_compare("social.example.org", w, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "RU"), "consistent");
  px__free(w, 3, doc);
}

/* Not enough to compare: a single vantage; only one other group; a
 * vantage with nothing but failures. */
PX_TEST(verdict_insufficient_data) {
  (void)state;
  px_vantage_t one[] = {
      px__v("k-cn", "CN", "AS4134", px__tls(px__sum("23.59.94.46"), "23.59.94.46", MITM, false, NULL)),
  };
  json_t *doc = px_compare("www.icloud.com", one, 1, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "CN"), "insufficient_data");
  px__free(one, 1, doc);

  px_vantage_t two[] = {
      px__v("k-cn", "CN", "AS4134", px__tls(px__sum("23.59.94.46"), "23.59.94.46", MITM, false, NULL)),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      /* Same group as DE: still only one OTHER group for CN. */
      px__v("k-de2", "DE", "AS3320", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
  };
  doc = px_compare("www.icloud.com", two, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "CN"), "insufficient_data");
  assert_int_equal(json_integer_value(json_object_get(px__group(doc, "DE"), "vantage_count")), 2);
  px__free(two, 3, doc);

  /* DNS timed out, nothing probed: no evidence at all. */
  px_vantage_t fails[] = {
      px__v("k-xx", "XX", "AS1", px__sum(NULL)),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("k-fr", "FR", "AS3215", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
  };
  doc = px_compare("www.icloud.com", fails, 4, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "XX"), "insufficient_data");
  /* A vantage without evidence does not count towards anyone's quorum. */
  assert_string_equal(px__verdict(doc, "DE"), "consistent");
  px__free(fails, 4, doc);
}

/* One vantage of three in a country is intercepted: the group is flagged,
 * with the share of its vantages that saw it. */
PX_TEST(verdict_partial_interception_in_a_country) {
  (void)state;
  px_vantage_t v[] = {
      px__v("k-cn1", "CN", "AS4134", px__tls(px__sum("23.59.94.46"), "23.59.94.46", MITM, false, NULL)),
      px__v("k-cn2", "CN", "AS4134", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("k-cn3", "CN", "AS4134", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("k-de", "DE", "AS3320", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("k-us", "US", "AS7922", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
  };
  json_t *doc = px_compare("www.icloud.com", v, 5, PX_QUORUM);
  json_t *cn = px__group(doc, "CN");
  assert_string_equal(json_string_value(json_object_get(cn, "verdict")), "tls_interception");
  double conf = json_real_value(json_object_get(cn, "confidence"));
  assert_true(conf > 0.33 && conf < 0.34);
  assert_int_equal(json_array_size(json_object_get(cn, "evidence")), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(cn, "evidence"), 0),
                                                        "key_id")), "k-cn1");
  px__free(v, 5, doc);
}

/* Down everywhere, or a self-signed site everywhere: everyone sees the
 * same thing, so nothing is flagged. */
PX_TEST(verdict_same_view_everywhere) {
  (void)state;
  px_vantage_t down[] = {
      px__v("a", "CN", "AS1", px__tls(px__sum("203.0.113.50"), "203.0.113.50", NULL, false, "connection_refused")),
      px__v("b", "DE", "AS2", px__tls(px__sum("203.0.113.50"), "203.0.113.50", NULL, false, "connection_refused")),
      px__v("c", "US", "AS3", px__tls(px__sum("203.0.113.50"), "203.0.113.50", NULL, false, "connection_refused")),
  };
  json_t *doc = px_compare("down.example.net", down, 3, PX_QUORUM);
  for (int i = 0; i < 3; i++)
    assert_string_equal(px__verdict(doc, down[i].probe_cc), "consistent");
  px__free(down, 3, doc);

  px_vantage_t selfsigned[] = {
      px__v("a", "CN", "AS1", px__tls(px__sum("203.0.113.60"), "203.0.113.60", "ff00", false, NULL)),
      px__v("b", "DE", "AS2", px__tls(px__sum("203.0.113.60"), "203.0.113.60", "ff00", false, NULL)),
      px__v("c", "US", "AS3", px__tls(px__sum("203.0.113.60"), "203.0.113.60", "ff00", false, NULL)),
  };
  doc = px_compare("selfsigned.example", selfsigned, 3, PX_QUORUM);
  for (int i = 0; i < 3; i++)
    assert_string_equal(px__verdict(doc, selfsigned[i].probe_cc), "consistent");
  px__free(selfsigned, 3, doc);
}

PX_TEST(control_addresses_rule) {
  (void)state;
  px_vantage_t v[] = {
      px__v("a", "DE", "AS2", px__tls(px__sum("23.59.94.46"), "23.59.94.46", GOOD, true, NULL)),
      px__v("b", "US", "AS3", px__tls(px__sum("23.59.94.46 23.59.94.47"), "23.59.94.46", GOOD, true, NULL)),
      /* Verified by one group only: not a control address. */
      px__v("c", "FR", "AS4", px__tls(px__sum("23.59.94.47"), "23.59.94.47", GOOD, true, NULL)),
      /* Seen by two groups but never verified: not one either. */
      px__v("d", "CN", "AS5", px__tls(px__sum("23.59.94.48"), "23.59.94.48", MITM, false, NULL)),
      px__v("e", "IR", "AS6", px__tls(px__sum("23.59.94.48"), "23.59.94.48", MITM, false, NULL)),
      /* Two vantages of one group count once. */
      px__v("f", "RU", "AS7", px__tls(px__sum("23.59.94.49"), "23.59.94.49", GOOD, true, NULL)),
      px__v("g", "RU", "AS7", px__tls(px__sum("23.59.94.49"), "23.59.94.49", GOOD, true, NULL)),
      /* Documentation addresses only when allowed. */
      px__v("h", "DE", "AS2", px__tls(px__sum("203.0.113.10"), "203.0.113.10", GOOD, true, NULL)),
      px__v("i", "US", "AS3", px__tls(px__sum("203.0.113.10"), "203.0.113.10", GOOD, true, NULL)),
  };
  json_t *c = px_control_addresses(v, 9, 2, false);
  char *s = json_dumps(c, JSON_COMPACT);
  assert_string_equal(s, "[\"23.59.94.46\"]");
  free(s);
  json_decref(c);
  c = px_control_addresses(v, 9, 2, true);
  assert_int_equal(json_array_size(c), 2);
  json_decref(c);
  for (size_t i = 0; i < 9; i++)
    json_decref(v[i].summary);
}
