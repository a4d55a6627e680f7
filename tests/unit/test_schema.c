/* The collector's JSON Schema interpreter (collector/ingest/schema.c) and its
 * pattern matcher (collector/ingest/pattern.c): the built-in schemas compile,
 * every keyword does what JSON Schema 2020-12 says, and the matcher
 * agrees with POSIX regexec on every pattern the schemas use. */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/ingest/jsontok.h"
#include "collector/ingest/pattern.h"
#include "collector/ingest/schema.h"
#include "tests/runner.h"

static px_schema_t *px__compile(const char *text) {
  char err[256];
  px_schema_t *s = NULL;
  int rc = px_schema_compile(text, strlen(text), &s, err, sizeof(err));
  if (rc != 0)
    fail_msg("schema does not compile: %s", err);
  return s;
}

/* 0 when doc is valid; else -EINVAL with the path in path. */
static int px__check(const px_schema_t *s, const char *doc, char *why, char *path) {
  px_jdoc_t d;
  if (px_json_tokenize(doc, strlen(doc), &d, 0, why, 256) != 0)
    fail_msg("not JSON: %s", doc);
  int rc = px_schema_validate(s, &d, 0, why, 256, path, 128);
  px_jdoc_free(&d);
  return rc;
}

static void px__expect(const px_schema_t *s, const char *doc, const char *want_path) {
  char why[256], path[128];
  int rc = px__check(s, doc, why, path);
  if (want_path == NULL && rc != 0)
    fail_msg("%s should be valid: %s", doc, why);
  if (want_path != NULL && rc == 0)
    fail_msg("%s should be refused at %s", doc, want_path);
  if (want_path != NULL && strcmp(path, want_path) != 0)
    fail_msg("%s: refused at '%s' (%s), not at '%s'", doc, path, why, want_path);
}

PX_TEST(schema_builtin_compiles) {
  (void)state;
  assert_non_null(px_schema_measurement());
  assert_non_null(px_schema_builtin("compare"));
  assert_null(px_schema_builtin("nonesuch"));
  /* Keywords the interpreter does not implement are refused, so a schema
   * cannot promise a check nobody makes. */
  const char *bad[] = {"{\"type\":\"string\",\"uniqueItems\":true}",
                       "{\"$ref\":\"#/$defs/missing\"}",
                       "{\"pattern\":\"a(b)+\"}",
                       "{\"pattern\":\"\\\\d+\"}",
                       "{\"type\":\"str\"}",
                       "{\"format\":\"email\"}",
                       "[]"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char err[256];
    px_schema_t *s = NULL;
    if (px_schema_compile(bad[i], strlen(bad[i]), &s, err, sizeof(err)) == 0)
      fail_msg("%s should not compile", bad[i]);
    assert_null(s);
  }
}

PX_TEST(schema_keywords) {
  (void)state;
  px_schema_t *s = px__compile(
      "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"a\",\"n\"],"
      "\"properties\":{"
      "\"a\":{\"type\":\"array\",\"maxItems\":2,\"items\":{\"$ref\":\"#/$defs/small\"}},"
      "\"n\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10},"
      "\"s\":{\"type\":[\"string\",\"null\"],\"maxLength\":3,\"pattern\":\"^[a-z]+$\"},"
      "\"e\":{\"enum\":[\"x\",\"y\"]},\"c\":{\"const\":false},"
      "\"o\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]},"
      "\"m\":{\"type\":\"object\",\"maxProperties\":1,\"propertyNames\":{\"maxLength\":2},"
      "\"additionalProperties\":{\"type\":\"string\"}},"
      "\"ip\":{\"type\":\"string\",\"anyOf\":[{\"format\":\"ipv4\"},{\"format\":\"ipv6\"}]}},"
      "\"$defs\":{\"small\":{\"type\":\"number\",\"maximum\":1.5}}}");
  px__expect(s, "{\"a\":[1,1.5],\"n\":3}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1.0}", NULL); /* 1.0 is an integer */
  px__expect(s, "{\"a\":[],\"n\":1e1}", NULL);
  px__expect(s, "{\"a\":[],\"n\":10.5}", "n");
  px__expect(s, "{\"a\":[],\"n\":0}", "n");
  px__expect(s, "{\"a\":[],\"n\":true}", "n");
  px__expect(s, "{\"a\":[2],\"n\":1}", "a[0]");
  px__expect(s, "{\"a\":[1,1,1],\"n\":1}", "a");
  px__expect(s, "{\"a\":[]}", "");
  px__expect(s, "{\"a\":[],\"n\":1,\"z\":1}", "z");
  px__expect(s, "{\"a\":[],\"n\":1,\"s\":null}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"s\":\"abc\"}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"s\":\"abcd\"}", "s");
  px__expect(s, "{\"a\":[],\"n\":1,\"s\":\"aB\"}", "s");
  /* Length in code points: three characters, six bytes. */
  px__expect(s, "{\"a\":[],\"n\":1,\"m\":{\"k\":\"\\u00e9\\u00e9\\u00e9\"}}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"e\":\"y\"}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"e\":\"z\"}", "e");
  px__expect(s, "{\"a\":[],\"n\":1,\"c\":false}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"c\":0}", "c");
  px__expect(s, "{\"a\":[],\"n\":1,\"o\":\"x\"}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"o\":[]}", "o");
  px__expect(s, "{\"a\":[],\"n\":1,\"m\":{\"ab\":\"x\"}}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"m\":{\"abc\":\"x\"}}", "m.abc");
  px__expect(s, "{\"a\":[],\"n\":1,\"m\":{\"a\":\"x\",\"b\":\"y\"}}", "m");
  px__expect(s, "{\"a\":[],\"n\":1,\"m\":{\"a\":1}}", "m.a");
  px__expect(s, "{\"a\":[],\"n\":1,\"ip\":\"192.0.2.1\"}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"ip\":\"2001:db8::1\"}", NULL);
  px__expect(s, "{\"a\":[],\"n\":1,\"ip\":\"192.0.2.01\"}", "ip");
  px__expect(s, "{\"a\":[],\"n\":1,\"ip\":\"example.org\"}", "ip");
  char why[256], path[128];
  assert_int_equal(px__check(s, "{\"a\":[],\"n\":\"3\"}", why, path), -EINVAL);
  assert_string_equal(why, "n: expected integer, got string");
  px_schema_free(s);
}

/* Every pattern of the built-in schemas, and some of our own, against a
 * spread of subjects: the same answer as POSIX regexec, which implements
 * the same language for these. */
PX_TEST(pattern_matches_like_posix) {
  (void)state;
  const char *patterns[] = {
      "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
      "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
      "^AS[0-9]+$", "^[0-9a-fA-F:.]+$", "^[0-9a-f]{64}$", "^unknown_failure: ",
      "^([0-9.]+|\\[[0-9a-fA-F:.]+\\]):[0-9]+$", "^[A-Z]{2}$",
      "^[0-9]{8}T[0-9]{6}Z_tlscertconsistency_[A-Z]{2}_[0-9]+_[A-Za-z0-9]+$",
      "^[0-9]+\\.[0-9]+\\.[0-9]+", "^X509_V_ERR_[A-Z0-9_]+$", "ab?c*d{2,3}", "x|y[^a-c]",
      "^(a|bc)d$", "e.f", "[.]z$"};
  const char *subjects[] = {
      "", "2014-10-20 12:00:00", "2014-10-20 12:00:0", "2014-10-20T12:00:00Z", "AS0", "AS",
      "AS12x", "2001:db8::1", "127.0.0.1", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF",
      "unknown_failure: x", "xunknown_failure: ", "127.0.0.1:53", "[::1]:53", "[::1:53",
      "CN", "cn", "CNN", "20141020T115959Z_tlscertconsistency_CN_4134_abc123", "0.1.0", "0.1",
      "X509_V_ERR_CERT_HAS_EXPIRED", "X509_V_ERR_", "acdd", "abccccddd", "add", "zzyd", "xa",
      "ad", "bcd", "abcd", "eXf", ".z", "az"};
  for (size_t p = 0; p < sizeof(patterns) / sizeof(patterns[0]); p++) {
    const char *why = NULL;
    px_pattern_t *mine = px_pattern_compile(patterns[p], &why);
    if (mine == NULL)
      fail_msg("%s: %s", patterns[p], why);
    regex_t posix;
    assert_int_equal(regcomp(&posix, patterns[p], REG_EXTENDED | REG_NOSUB), 0);
    for (size_t s = 0; s < sizeof(subjects) / sizeof(subjects[0]); s++) {
      bool want = regexec(&posix, subjects[s], 0, NULL, 0) == 0;
      if (px_pattern_match(mine, subjects[s], strlen(subjects[s])) != want)
        fail_msg("/%s/ on \"%s\": posix says %d", patterns[p], subjects[s], want);
    }
    regfree(&posix);
    px_pattern_free(mine);
  }
}
