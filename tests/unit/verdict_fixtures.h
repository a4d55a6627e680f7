#ifndef PX_TESTS_VERDICT_FIXTURES_H
#define PX_TESTS_VERDICT_FIXTURES_H

/* Summaries as collector/analysis/summary.c writes them, built by hand for the
 * verdict tests (test_verdict*.c). */
#include <stdio.h>
#include <string.h>

#include "collector/analysis/verdict.h"
#include "tests/runner.h"

#define GOOD "aa00000000000000000000000000000000000000000000000000000000000000"
#define MITM "bb00000000000000000000000000000000000000000000000000000000000000"
#define CDNA "ca00000000000000000000000000000000000000000000000000000000000000"
#define CDNB "cb00000000000000000000000000000000000000000000000000000000000000"

/* A summary, as collector/analysis/analysis.c writes it. */
static inline json_t *px__sum(const char *answers /* "ip ip" or NULL: no answer */) {
  json_t *s = json_object(), *dns = json_object(), *addrs = json_array();
  if (answers != NULL) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", answers);
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
      json_array_append_new(addrs, json_string(t));
  }
  json_object_set_new(dns, "answered", json_boolean(json_array_size(addrs) > 0));
  json_object_set_new(dns, "addresses", addrs);
  json_object_set_new(dns, "failures", json_array());
  json_object_set_new(s, "v", json_integer(1));
  json_object_set_new(s, "dns", dns);
  json_object_set_new(s, "tls", json_array());
  return s;
}

/* A handshake (leaf != NULL) or a failure (failure != NULL). */
static inline json_t *px__tls(json_t *s, const char *ip, const char *leaf, bool verified,
                       const char *failure) {
  json_t *t = json_object();
  json_object_set_new(t, "ip", json_string(ip));
  json_object_set_new(t, "port", json_integer(443));
  bool resolved = false;
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(json_object_get(s, "dns"), "addresses"), i, a)
    if (strcmp(json_string_value(a), ip) == 0)
      resolved = true;
  json_object_set_new(t, "resolved", json_boolean(resolved));
  json_object_set_new(t, "control", json_false());
  json_object_set_new(t, "connect_failure", json_null());
  json_object_set_new(t, "completed", json_boolean(leaf != NULL));
  json_object_set_new(t, "failure", failure ? json_string(failure) : json_null());
  json_object_set_new(t, "leaf_sha256", leaf ? json_string(leaf) : json_null());
  json_object_set_new(t, "subject", json_string(leaf && strcmp(leaf, MITM) == 0
                                                    ? "CN=www.icloud.com,O=www.icloud.com,C=cn"
                                                    : "CN=www.icloud.com"));
  json_object_set_new(t, "issuer", json_string("CN=Test CA"));
  json_object_set_new(t, "self_signed", json_boolean(leaf && strcmp(leaf, MITM) == 0));
  json_object_set_new(t, "verified", json_boolean(verified));
  json_object_set_new(t, "agent_verified", json_boolean(verified));
  json_object_set_new(t, "errors", json_array());
  json_array_append_new(json_object_get(s, "tls"), t);
  return s;
}

static inline px_vantage_t px__v(const char *key, const char *cc, const char *asn, json_t *summary) {
  px_vantage_t v = {.key_id = key, .probe_cc = cc, .probe_asn = asn, .uid = key,
                    .summary = summary};
  return v;
}

static inline json_t *px__group(json_t *doc, const char *cc) {
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(doc, "vantages"), i, g)
    if (strcmp(json_string_value(json_object_get(g, "probe_cc")), cc) == 0)
      return g;
  fail_msg("no group %s", cc);
  return NULL;
}

static inline const char *px__verdict(json_t *doc, const char *cc) {
  return json_string_value(json_object_get(px__group(doc, cc), "verdict"));
}

static inline void px__free(px_vantage_t *v, size_t n, json_t *doc) {
  for (size_t i = 0; i < n; i++)
    json_decref(v[i].summary);
  json_decref(doc);
}


#endif
