/* The collector's own JSON readers: the submit envelope and the
 * measurement tokenizer, checked against Jansson's verdicts. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "collector/ingest/envelope.h"
#include "collector/ingest/jsontok.h"
#include "tests/runner.h"

PX_TEST(envelope_parsing) {
  px_envelope_t e;
  char why[256];
  (void)state;
  const char *ok = " {\"signature\":\"S\\n\",\"format\":\"json\",\r\n\"content\":\"{\\\"a\\\":\\\"\\u00e9\\ud83d\\ude00\\\\/\\\"}\"} ";
  assert_int_equal(px_envelope_parse(ok, strlen(ok), &e, why, sizeof(why)), 0);
  assert_string_equal(e.content, "{\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\\/\"}");
  assert_int_equal(e.content_len, strlen(e.content));
  assert_string_equal(e.signature, "S\n");
  px_envelope_free(&e);

  const char *bad[] = {
      "", "[]", "{}", "{\"format\":\"json\"}",
      "{\"format\":\"json\",\"content\":\"x\"}",
      "{\"format\":\"xml\",\"content\":\"x\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":1,\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"x\",\"signature\":\"s\",\"extra\":\"y\"}",
      "{\"format\":\"json\",\"content\":\"x\",\"content\":\"y\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"x\",\"signature\":\"s\"} trailing",
      "{\"format\":\"json\",\"content\":\"x\",\"signature\":\"s\",}",
      "{\"format\":\"json\",\"content\":\"\\u0000\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"\\ud800\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"\\udc00x\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"\\x\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"a\tb\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"\xff\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"\xc0\xaf\",\"signature\":\"s\"}",
      "{\"format\":\"json\",\"content\":\"x\",\"signature\":\"s\"",
      "{\"format\":\"json\",\"content\":\"x",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (px_envelope_parse(bad[i], strlen(bad[i]), &e, why, sizeof(why)) != -EINVAL)
      fail_msg("envelope %zu should be refused: %s", i, bad[i]);
  /* Every prefix of a valid envelope is refused, never read past. */
  for (size_t n = 0; n < strlen(ok) - 1; n++) {
    char *copy = malloc(n + 1);
    memcpy(copy, ok, n);
    if (px_envelope_parse(copy, n, &e, why, sizeof(why)) == 0)
      fail_msg("prefix of %zu bytes accepted", n);
    free(copy);
  }
}

/* The tokenizer must agree with Jansson (JSON_REJECT_DUPLICATES, no NUL)
 * on what is JSON. */
static void px__agree(const char *text) {
  px_jdoc_t d;
  char why[256];
  json_t *j = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
  int rc = px_json_tokenize(text, strlen(text), &d, 0, why, sizeof(why));
  if ((rc == 0) != (j != NULL))
    fail_msg("'%s': tokenizer %s, jansson %s", text, rc == 0 ? "accepts" : "refuses",
             j ? "accepts" : "refuses");
  json_decref(j);
  if (rc == 0)
    px_jdoc_free(&d);
}

PX_TEST(json_tokenizer) {
  px_jdoc_t d;
  char why[256], buf[64];
  (void)state;
  const char *doc = "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\u00e9\",\"d\":{},\"e\":[],\"f\":-1.5e3,"
                    "\"g\":true,\"h\":false,\"k\\u0065y\":7}";
  assert_int_equal(px_json_tokenize(doc, strlen(doc), &d, 0, why, sizeof(why)), 0);
  assert_int_equal(px_jtype(&d, 0), PX_JT_OBJECT);
  assert_int_equal(d.tok[0].size, 8);
  assert_int_equal(d.tok[0].next, d.n);
  int a = px_jobj_get(&d, 0, "a");
  assert_int_equal(px_jtype(&d, a), PX_JT_ARRAY);
  assert_int_equal(d.tok[a].size, 3);
  int third = px_jarr_get(&d, (uint32_t)a, 2);
  assert_int_equal(px_jtype(&d, px_jobj_get(&d, (uint32_t)third, "b")), PX_JT_NULL);
  assert_int_equal(px_jarr_get(&d, (uint32_t)a, 3), -1);
  assert_int_equal(px_jstr(&d, px_jobj_get(&d, 0, "c"), buf, sizeof(buf)), 3);
  assert_string_equal(buf, "x\xc3\xa9");
  assert_true(px_jstr_eq(&d, px_jobj_get(&d, 0, "c"), "x\xc3\xa9"));
  double v;
  int64_t iv;
  assert_true(px_jnum(&d, px_jobj_get(&d, 0, "f"), &v));
  assert_true(v == -1500.0);
  assert_false(px_jint(&d, px_jobj_get(&d, 0, "f"), &iv));
  /* An escaped key is found by its meaning. */
  assert_true(px_jint(&d, px_jobj_get(&d, 0, "key"), &iv));
  assert_int_equal(iv, 7);
  assert_int_equal(px_jobj_get(&d, 0, "nope"), -1);
  assert_int_equal(px_jtype(&d, px_jobj_get(&d, 0, "g")), PX_JT_TRUE);
  px_jdoc_free(&d);

  const char *cases[] = {
      "{}", "[]", "0", "-0", "1e5", "\"s\"", "null", " [ 1 , 2 ] ", "{\"a\":{\"a\":{}}}",
      "01", "1.", ".5", "-", "1e", "+1", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\"1}", "{a:1}",
      "[1 2]", "tru", "nul", "\"\\u12\"", "\"\\uDC00\"", "\"\\uD800\\u0041\"", "\"\\u0000\"",
      "\"a\nb\"", "\"\xe2\x82\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "[1]x",
      "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}", "{\"x\":[{\"b\":1,\"b\":2}]}", "",
      "   ", "[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]", "[1e-7,1E+2,0.5,-0.0]",
      /* Numbers Jansson cannot hold are refused too (fuzz_jsontok found
       * the tokenizer taking them): integers beyond int64, reals that
       * overflow a double. Underflow reads as 0 in both. */
      "9223372036854775807", "-9223372036854775808", "9223372036854775808",
      "-9223372036854775809", "33353333353333333533", "[1e308]", "1e309", "-1e400",
      "1e-400", "[0.000000000000000000000000000000000000000000000001e-300]",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    px__agree(cases[i]);

  /* Large objects: duplicates found (also when written with escapes), and
   * 40,000 distinct keys cost n log n, not n squared (the runner's timeout
   * would catch the quadratic version). */
  enum { N = 40000 };
  char *big = malloc(N * 16 + 16), *p = big;
  p += sprintf(p, "{");
  for (int i = 0; i < N; i++)
    p += sprintf(p, "%s\"k%d\":1", i ? "," : "", i);
  memcpy(p, "}", sizeof("}"));
  assert_int_equal(px_json_tokenize(big, strlen(big), &d, 0, why, sizeof(why)), 0);
  assert_int_equal(d.tok[0].size, N);
  px_jdoc_free(&d);
  p[-4] = '0'; /* the last key, k39999, becomes a second "k39990" */
  assert_int_equal(px_json_tokenize(big, strlen(big), &d, 0, why, sizeof(why)), -EINVAL);
  assert_non_null(strstr(why, "duplicate"));
  free(big);
  char esc[512];
  p = esc;
  p += sprintf(p, "{");
  for (int i = 0; i < 20; i++)
    p += sprintf(p, "\"k%d\":1,", i);
  sprintf(p, "\"\\u006b7\":2}");
  assert_int_equal(px_json_tokenize(esc, strlen(esc), &d, 0, why, sizeof(why)), -EINVAL);

  /* The compact form is enforced only when asked. */
  assert_int_equal(px_json_tokenize("{\"a\": 1}", 8, &d, PX_JSON_COMPACT, why, sizeof(why)), -EINVAL);
  assert_non_null(strstr(why, "compact"));
  assert_int_equal(px_json_tokenize("{\"a\":\" x \"}", 11, &d, PX_JSON_COMPACT, why, sizeof(why)), 0);
  px_jdoc_free(&d);

  /* Nesting is bounded: no stack to exhaust. */
  char deep[300];
  memset(deep, '[', 200);
  deep[200] = '\0';
  assert_int_equal(px_json_tokenize(deep, 200, &d, 0, why, sizeof(why)), -EINVAL);
  assert_non_null(strstr(why, "deeply"));
}
