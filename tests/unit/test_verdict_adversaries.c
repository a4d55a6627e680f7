/* The verdict rules against real adversaries (issue 11): a MITM whose
 * chain validates (tls_divergent) and what must never be taken for one (a
 * rotated leaf, a CDN), a state-installed root (tls_interception although
 * the agent verified), a node missing its intermediate (the same-leaf
 * rule), an injector racing the genuine DNS answer (dns_injection), and a
 * certificate expired for everyone. */
#include <string.h>

#include "tests/unit/verdict_fixtures.h"

#define ROGUE "dd00000000000000000000000000000000000000000000000000000000000000"
#define NEWLEAF "ee00000000000000000000000000000000000000000000000000000000000000"
#define CA_REAL "1100000000000000000000000000000000000000000000000000000000000000"
#define CA_ROGUE "2200000000000000000000000000000000000000000000000000000000000000"

/* The last handshake entry of s gets issuer (spki and name). */
static json_t *px__issued(json_t *s, const char *spki, const char *name) {
  json_t *t = json_array_get(json_object_get(s, "tls"), json_array_size(json_object_get(s, "tls")) - 1);
  json_object_set_new(t, "issuer_spki_sha256", json_string(spki));
  json_object_set_new(t, "issuer", json_string(name));
  return s;
}

static json_t *px__set(json_t *s, const char *key, json_t *value) {
  json_t *t = json_array_get(json_object_get(s, "tls"), json_array_size(json_object_get(s, "tls")) - 1);
  json_object_set_new(t, key, value);
  return s;
}

static json_t *px__ev(json_t *doc, const char *cc) {
  return json_array_get(json_object_get(px__group(doc, cc), "evidence"), 0);
}

static json_t *px__ok(const char *ip, const char *leaf, const char *ca) {
  return px__issued(px__tls(px__sum(ip), ip, leaf, true, NULL), ca, "CN=Real CA");
}

/* The 2015 CNNIC/MCS pattern: a valid chain from another CA, at the real
 * address, in one country only. */
PX_TEST(verdict_divergent_issuer) {
  (void)state;
  px_vantage_t v[] = {
      px__v("k-eg", "EG", "AS8452",
            px__issued(px__tls(px__sum("203.0.113.60"), "203.0.113.60", ROGUE, true, NULL),
                       CA_ROGUE, "CN=Rogue Intermediate")),
      px__v("k-de", "DE", "AS3320", px__ok("203.0.113.60", GOOD, CA_REAL)),
      px__v("k-us", "US", "AS7922", px__ok("203.0.113.60", GOOD, CA_REAL)),
  };
  json_t *doc = px_compare("mail.example.net", v, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "EG"), "tls_divergent");
  assert_string_equal(px__verdict(doc, "DE"), "consistent");
  json_t *ev = px__ev(doc, "EG");
  assert_string_equal(json_string_value(json_object_get(ev, "issuer_spki_sha256")), CA_ROGUE);
  json_t *other = json_array_get(json_object_get(ev, "others_issuers"), 0);
  assert_string_equal(json_string_value(json_object_get(other, "issuer_spki_sha256")), CA_REAL);
  assert_int_equal(json_array_size(json_object_get(other, "groups")), 2);
  assert_non_null(strstr(json_string_value(json_object_get(ev, "explanation")), "not proof"));
  /* Lower confidence than interception: a lead. */
  assert_true(json_real_value(json_object_get(px__group(doc, "EG"), "confidence")) < 1.0);
  px__free(v, 3, doc);

  /* One other group only sees the real issuer: no quorum, no verdict. */
  px_vantage_t w[] = {
      px__v("k-eg", "EG", "AS8452",
            px__issued(px__tls(px__sum("203.0.113.60"), "203.0.113.60", ROGUE, true, NULL),
                       CA_ROGUE, "CN=Rogue")),
      px__v("k-de", "DE", "AS3320", px__ok("203.0.113.60", GOOD, CA_REAL)),
      px__v("k-us", "US", "AS7922", px__ok("203.0.113.61", CDNB, CA_REAL)),
  };
  doc = px_compare("mail.example.net", w, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "EG"), "consistent");
  px__free(w, 3, doc);
}

/* A leaf rotated under the same issuer, old and new side by side: the
 * issuer is shared, nothing is divergent. */
PX_TEST(verdict_rotation_is_consistent) {
  (void)state;
  px_vantage_t v[] = {
      px__v("k-a", "DE", "AS3320", px__ok("203.0.113.64", NEWLEAF, CA_REAL)),
      px__v("k-b", "US", "AS7922", px__ok("203.0.113.64", GOOD, CA_REAL)),
      px__v("k-c", "FR", "AS3215", px__ok("203.0.113.64", GOOD, CA_REAL)),
      px__v("k-d", "JP", "AS2516", px__ok("203.0.113.64", NEWLEAF, CA_REAL)),
  };
  json_t *doc = px_compare("rotate.example.com", v, 4, PX_QUORUM);
  const char *cc[] = {"DE", "US", "FR", "JP"};
  for (int i = 0; i < 4; i++)
    assert_string_equal(px__verdict(doc, cc[i]), "consistent");
  px__free(v, 4, doc);

  /* A geo-CDN with another CA at another address is not compared. */
  px_vantage_t w[] = {
      px__v("k-a", "DE", "AS3320", px__ok("203.0.113.20", CDNA, CA_REAL)),
      px__v("k-b", "US", "AS7922", px__ok("203.0.113.20", CDNA, CA_REAL)),
      px__v("k-c", "BR", "AS28573", px__ok("203.0.113.21", CDNB, CA_ROGUE)),
  };
  doc = px_compare("cdn.example.com", w, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "BR"), "consistent");
  px__free(w, 3, doc);
}

/* A state-installed root (Kazakhstan, 2019): the agent's store accepts
 * the chain, the collector's does not; everyone else verifies another
 * leaf there. */
PX_TEST(verdict_state_root_is_interception) {
  (void)state;
  json_t *kz = px__tls(px__sum("203.0.113.61"), "203.0.113.61", MITM, false, NULL);
  px__set(kz, "agent_verified", json_true());
  px__set(kz, "self_signed", json_false());
  px_vantage_t v[] = {
      px__v("k-kz", "KZ", "AS9198", kz),
      px__v("k-de", "DE", "AS3320", px__ok("203.0.113.61", GOOD, CA_REAL)),
      px__v("k-us", "US", "AS7922", px__ok("203.0.113.61", GOOD, CA_REAL)),
  };
  json_t *doc = px_compare("bank.example.net", v, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "KZ"), "tls_interception");
  json_t *ev = px__ev(doc, "KZ");
  assert_true(json_is_true(json_object_get(ev, "agent_verified")));
  assert_non_null(strstr(json_string_value(json_object_get(ev, "explanation")),
                         "agent's own trust store accepts it"));
  px__free(v, 3, doc);
}

/* A geo-DNS node that serves the leaf everyone else sees verified, but
 * without its intermediate: a misconfiguration, never interference. Both
 * when the collector completed the chain from its pool, and when it could
 * not (the same-leaf rule). */
PX_TEST(verdict_missing_intermediate_is_not_flagged) {
  (void)state;
  for (int pooled = 0; pooled < 2; pooled++) {
    json_t *br = pooled ? px__ok("203.0.113.63", GOOD, CA_REAL)
                        : px__tls(px__sum("203.0.113.63"), "203.0.113.63", GOOD, false, NULL);
    if (pooled)
      px__set(br, "completed_from_pool", json_true());
    px_vantage_t v[] = {
        px__v("k-br", "BR", "AS28573", br),
        px__v("k-de", "DE", "AS3320", px__ok("203.0.113.62", GOOD, CA_REAL)),
        px__v("k-us", "US", "AS7922", px__ok("203.0.113.62", GOOD, CA_REAL)),
        px__v("k-fr", "FR", "AS3215", px__ok("203.0.113.62", GOOD, CA_REAL)),
    };
    json_t *doc = px_compare("shop.example.com", v, 4, PX_QUORUM);
    assert_string_equal(px__verdict(doc, "BR"), "consistent");
    json_t *row = json_array_get(json_object_get(px__group(doc, "BR"), "addresses"), 0);
    assert_int_equal(json_is_true(json_object_get(row, "completed_from_pool")), pooled);
    px__free(v, 4, doc);
  }
  /* The same leaf unverified at the address everyone else verifies it:
   * not interception either. */
  px_vantage_t w[] = {
      px__v("k-br", "BR", "AS28573", px__tls(px__sum("203.0.113.62"), "203.0.113.62", GOOD, false, NULL)),
      px__v("k-de", "DE", "AS3320", px__ok("203.0.113.62", GOOD, CA_REAL)),
      px__v("k-us", "US", "AS7922", px__ok("203.0.113.62", GOOD, CA_REAL)),
  };
  json_t *doc = px_compare("shop.example.com", w, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "BR"), "consistent");
  px__free(w, 3, doc);
}

/* The first DNS answer forged, the genuine one 62 ms later. */
PX_TEST(verdict_dns_injection) {
  (void)state;
  json_t *tr = px__tls(px__sum("203.0.113.31"), "203.0.113.31", "ff00", false, NULL);
  json_t *late = json_pack("{s:s,s:s,s:[s],s:[s],s:f}", "query_type", "A", "resolver_address",
                           "198.51.100.111:53", "first", "203.0.113.31", "late", "203.0.113.67",
                           "delay", 0.062);
  json_object_set_new(json_object_get(tr, "dns"), "late", json_pack("[o]", late));
  px_vantage_t v[] = {
      px__v("k-tr", "TR", "AS9121", tr),
      px__v("k-de", "DE", "AS3320", px__ok("203.0.113.67", GOOD, CA_REAL)),
      px__v("k-us", "US", "AS7922", px__ok("203.0.113.67", GOOD, CA_REAL)),
  };
  json_t *doc = px_compare("forum.example.org", v, 3, PX_QUORUM);
  assert_string_equal(px__verdict(doc, "TR"), "dns_inconsistent");
  json_t *ev = px__ev(doc, "TR");
  assert_string_equal(json_string_value(json_object_get(ev, "rule")), "dns_injection");
  assert_int_equal(json_integer_value(json_object_get(ev, "delay_ms")), 62);
  assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "late_answers"), 0)),
                      "203.0.113.67");
  px__free(v, 3, doc);

  /* A late reply with an address nobody verified is no injection proof
   * (the rule falls back to plain dns_inconsistent). */
  json_t *tr2 = px__tls(px__sum("203.0.113.31"), "203.0.113.31", "ff00", false, NULL);
  json_object_set_new(json_object_get(tr2, "dns"), "late",
                      json_pack("[{s:s,s:[s],s:[s],s:f}]", "query_type", "A", "first",
                                "203.0.113.31", "late", "203.0.113.99", "delay", 0.05));
  px_vantage_t w[] = {
      px__v("k-tr", "TR", "AS9121", tr2),
      px__v("k-de", "DE", "AS3320", px__ok("203.0.113.67", GOOD, CA_REAL)),
      px__v("k-us", "US", "AS7922", px__ok("203.0.113.67", GOOD, CA_REAL)),
  };
  doc = px_compare("forum.example.org", w, 3, PX_QUORUM);
  assert_string_equal(json_string_value(json_object_get(px__ev(doc, "TR"), "rule")),
                      "dns_inconsistent");
  px__free(w, 3, doc);
}

/* Expired for everyone: nobody verifies, no quorum, nothing flagged. */
PX_TEST(verdict_expired_everywhere_is_consistent) {
  (void)state;
  px_vantage_t v[] = {
      px__v("a", "CN", "AS1", px__tls(px__sum("203.0.113.65"), "203.0.113.65", "ab00", false, NULL)),
      px__v("b", "DE", "AS2", px__tls(px__sum("203.0.113.65"), "203.0.113.65", "ab00", false, NULL)),
      px__v("c", "US", "AS3", px__tls(px__sum("203.0.113.65"), "203.0.113.65", "ab00", false, NULL)),
  };
  json_t *doc = px_compare("expired.example.org", v, 3, PX_QUORUM);
  for (int i = 0; i < 3; i++)
    assert_string_equal(px__verdict(doc, v[i].probe_cc), "consistent");
  px__free(v, 3, doc);
}
