/* A hostile signed upload, end to end: the whole path an attacker with a
 * key of their own reaches, submit -> validation -> store -> analysis ->
 * comparison -> the JSON the page reads. Structure-aware: the input is a
 * measurement (JSON text) and the custom mutator below changes one value
 * of it at a time the way issue 10's attacks did: another JSON type, a
 * string or array far beyond its bound, a member removed or added, a
 * subtree copied elsewhere. The harness signs each input, so every one
 * gets past the signature.
 *
 * Invariants: an answer is always JSON with a known status; a 422 names
 * the path its detail starts with; an accepted measurement is stored byte
 * for byte, the analysis reads it, and the comparison it takes part in
 * (with three fixed vantages) validates against schemas/compare.schema.json
 * and hands out at most PX_CONTROL_ADDRESSES_MAX control addresses. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/analysis/analysis.h"
#include "collector/ingest/jsontok.h"
#include "collector/ingest/schema.h"
#include "collector/ingest/submit.h"
#include "collector/analysis/verdict.h"
#include "common/json_util.h"
#include "tests/fuzz/fuzz_common.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static EVP_PKEY *px__key;
static px_collector_t px__c;
static unsigned px__runs;
static px_vantage_t px__others[3];

/* Three groups that saw www.example.test verify (as the analysis writes it). */
static const char px__other_summary[] =
    "{\"v\":2,\"dns\":{\"answered\":true,\"addresses\":[\"127.80.1.1\"],\"failures\":[]},"
    "\"tls\":[{\"ip\":\"127.80.1.1\",\"port\":443,\"resolved\":true,\"control\":false,"
    "\"connect_failure\":null,\"completed\":true,\"failure\":null,\"leaf_sha256\":"
    "\"5f1d0c7e1a3b4c2d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d\",\"subject\":"
    "\"CN=www.example.test\",\"issuer\":\"CN=Parallax Test Intermediate CA\",\"self_signed\":"
    "false,\"agent_verified\":true,\"verified\":true,\"hostname_match\":true,\"errors\":[],"
    "\"judged_failure\":null,\"claims_mismatch\":false}],\"claims_mismatch\":[]}";

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  px_fuzz_sqlite_init();
  px_fuzz_trust();
  px__key = px_fuzz_key(0x5a);
  static const char *const groups[3][3] = {
      {"SHA256:de", "DE", "AS3320"}, {"SHA256:us", "US", "AS7922"}, {"SHA256:fr", "FR", "AS3215"}};
  for (int i = 0; i < 3; i++) {
    px__others[i] = (px_vantage_t){.key_id = groups[i][0], .probe_cc = groups[i][1],
                                   .probe_asn = groups[i][2],
                                   .uid = "20261201000000_DE_tlscertconsistency_0000000000000000",
                                   .measurement_start_time = PX_FUZZ_NOW - 3600,
                                   .summary = json_loads(px__other_summary, 0, NULL)};
    if (px__others[i].summary == NULL)
      px_fuzz_fail("the fixed summary is not JSON");
  }
  if (px_schema_builtin("compare") == NULL)
    px_fuzz_fail("the compare schema does not compile");
  return 0;
}

/* ---- the mutator ------------------------------------------------------------ */

static uint64_t px__rng;

static unsigned px__rand(unsigned n) {
  px__rng ^= px__rng << 13;
  px__rng ^= px__rng >> 7;
  px__rng ^= px__rng << 17;
  return n ? (unsigned)(px__rng % n) : 0;
}

/* Every value of the tree, with where it hangs. */
typedef struct {
  json_t *parent; /* NULL for the root */
  const char *key; /* member name in an object parent */
  size_t index;    /* element index in an array parent */
  json_t *value;
} px__site_t;

typedef struct {
  px__site_t *v;
  size_t n, cap;
} px__sites_t;

static void px__collect(px__sites_t *s, json_t *parent, const char *key, size_t index, json_t *v) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    px__site_t *nv = realloc(s->v, cap * sizeof(*nv));
    if (nv == NULL)
      return;
    s->v = nv;
    s->cap = cap;
  }
  s->v[s->n++] = (px__site_t){parent, key, index, v};
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) px__collect(s, v, k, 0, x);
  } else if (json_is_array(v)) {
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) px__collect(s, v, NULL, i, x);
  }
}

/* Strings an attacker would try where the code expects something else. */
static json_t *px__odd_string(void) {
  static const char *const odd[] = {"", "\x1b[2J\x1b[31mowned", "\342\200\256cod.exe", "A",
                                    "0000-01-01 00:00:00", "9999-12-31 23:59:59",
                                    "2014-02-30 12:00:00", "unknown_failure: x", "::1",
                                    "127.0.0.1", "[::1]:443", "1.2.3.4:0", "AS4294967296",
                                    "ssl_unknown_authority", "null", "<script>alert(1)</script>"};
  return json_string(odd[px__rand(sizeof(odd) / sizeof(odd[0]))]);
}

static json_t *px__any_value(json_t *elsewhere) {
  static const double reals[] = {1.5, -1.0, 1e308, 86400.5, 0.0, 4294967296.0};
  static const json_int_t ints[] = {0, 1, -1, 65536, 1000001, 9007199254740993LL, 4294967296LL};
  switch (px__rand(9)) {
  case 0: return json_null();
  case 1: return json_boolean(px__rand(2));
  case 2: return json_integer(ints[px__rand(sizeof(ints) / sizeof(ints[0]))]);
  case 3: return json_real(reals[px__rand(sizeof(reals) / sizeof(reals[0]))]);
  case 4: return px__odd_string();
  case 5: return json_array();
  case 6: return json_object();
  case 7: return json_pack("[i]", 1);
  default: return elsewhere != NULL ? json_deep_copy(elsewhere) : json_null();
  }
}

/* Makes v larger than any bound: strings repeated, arrays replicated,
 * objects with extra members. Returns the replacement, or NULL. */
static json_t *px__grow(json_t *v) {
  /* Just past the schema's bounds (64, 128, 256, 1,024, 2,048, 4,096
   * items or characters), the largest seldom: big inputs are slow. */
  static const size_t sizes[] = {2, 65, 129, 257, 65, 129, 257, 1025, 2049, 4097};
  size_t k = sizes[px__rand(sizeof(sizes) / sizeof(sizes[0]))];
  if (json_is_string(v)) {
    size_t n = json_string_length(v) ? json_string_length(v) : 1, total = n * k;
    if (total > 150000)
      total = 150000;
    char *buf = malloc(total + 1);
    if (buf == NULL)
      return NULL;
    for (size_t i = 0; i < total; i++)
      buf[i] = json_string_length(v) ? json_string_value(v)[i % n] : 'A';
    json_t *s = json_stringn(buf, total);
    free(buf);
    return s;
  }
  if (json_is_array(v) && json_array_size(v) > 0) {
    json_t *a = json_array(), *first = json_array_get(v, px__rand((unsigned)json_array_size(v)));
    for (size_t i = 0; i < k && i < 2100; i++)
      json_array_append_new(a, json_deep_copy(first));
    return a;
  }
  if (json_is_object(v)) {
    json_t *o = json_deep_copy(v);
    for (size_t i = 0; i < k && i < 100; i++) {
      char name[24];
      snprintf(name, sizeof(name), "x_%zu", i);
      json_object_set_new(o, name, json_integer((json_int_t)i));
    }
    return o;
  }
  return NULL;
}

static void px__put(const px__site_t *s, json_t *nv) {
  if (nv == NULL)
    return;
  if (json_is_object(s->parent))
    json_object_set_new(s->parent, s->key, nv);
  else
    json_array_set_new(s->parent, s->index, nv);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
  px__rng = ((uint64_t)seed << 32) | 0x9e3779b9u;
  json_t *doc = json_loadb((const char *)data, size, 0, NULL);
  if (doc == NULL || px__rand(16) == 0) {
    json_decref(doc);
    return LLVMFuzzerMutate(data, size, max_size);
  }
  px__sites_t sites = {NULL, 0, 0};
  px__collect(&sites, NULL, NULL, 0, doc);
  if (sites.n > 1) {
    const px__site_t *s = &sites.v[1 + px__rand((unsigned)sites.n - 1)];
    const px__site_t *other = &sites.v[px__rand((unsigned)sites.n)];
    switch (px__rand(4)) {
    case 0: px__put(s, px__any_value(other->value)); break;
    case 1: px__put(s, px__grow(s->value)); break;
    case 2:
      if (json_is_object(s->parent))
        json_object_del(s->parent, s->key);
      else
        json_array_remove(s->parent, s->index);
      break;
    default:
      if (json_is_object(s->value))
        json_object_set_new(s->value, "unexpected", px__any_value(NULL));
      else
        px__put(s, px__any_value(other->value));
    }
  }
  free(sites.v);
  char *text = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  size_t n = text != NULL ? strlen(text) : 0;
  if (text == NULL || n > max_size) {
    free(text);
    return LLVMFuzzerMutate(data, size, max_size);
  }
  memcpy(data, text, n);
  free(text);
  return n;
}

/* ---- the path ----------------------------------------------------------------- */

static void px__check_compare(json_t *doc) {
  char *text = px_json_dump(doc), why[256], path[128];
  px_jdoc_t d;
  if (text == NULL || px_json_tokenize(text, strlen(text), &d, 0, why, sizeof(why)) != 0)
    px_fuzz_fail("the comparison is not JSON");
  if (px_schema_validate(px_schema_builtin("compare"), &d, 0, why, sizeof(why), path,
                         sizeof(path)) != 0)
    px_fuzz_fail("the comparison breaks its schema: %s", why);
  px_jdoc_free(&d);
  free(text);
}

static void px__accepted(const char *uid) {
  char *content = NULL, *sig = NULL, *key_id = NULL;
  size_t n = 0;
  if (px_store_get(px__c.store, uid, &content, &n, &sig, &key_id) != 0)
    px_fuzz_fail("%s acknowledged but not found", uid);
  px_measurement_meta_t meta;
  char why[256];
  if (px_validate_measurement(content, n, PX_FUZZ_NOW, &meta, why, sizeof(why), NULL, 0) != 0)
    px_fuzz_fail("stored content no longer validates: %s", why);
  json_t *sum = px_summarize(content, n, meta.measurement_start_time, px_fuzz_trust(), NULL);
  if (sum == NULL)
    px_fuzz_fail("%s is stored but the analysis cannot read it", uid);
  char *stext = px_json_dump(sum);
  json_decref(sum);
  px_vantage_t v[4] = {px__others[0], px__others[1], px__others[2],
                       {.key_id = key_id, .probe_cc = meta.probe_cc, .probe_asn = meta.probe_asn,
                        .uid = uid, .measurement_start_time = meta.measurement_start_time,
                        .summary = json_loads(stext, 0, NULL)}};
  if (v[3].summary == NULL)
    px_fuzz_fail("a summary does not read back");
  json_t *doc = px_compare(meta.domain, v, 4, PX_QUORUM);
  /* What the API adds around the rules' document. */
  json_object_set_new(doc, "since", json_string("2026-11-30T00:00:00Z"));
  json_object_set_new(doc, "until", json_string("2027-01-01T00:00:00Z"));
  json_object_set_new(doc, "trust_store", json_string("file:root.pem"));
  json_object_set_new(doc, "analysis_complete", json_true());
  px__check_compare(doc);
  json_decref(doc);
  json_t *controls = px_control_addresses(v, 4, PX_QUORUM, true);
  if (json_array_size(controls) > PX_CONTROL_ADDRESSES_MAX)
    px_fuzz_fail("more control addresses than a measurement may hold");
  json_decref(controls);
  json_decref(v[3].summary);
  free(stext);
  free(content);
  free(sig);
  free(key_id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* One store for many inputs (a fresh one each would cost more than the
   * path itself), renewed so memory stays bounded. */
  if (px__c.store == NULL || ++px__runs % 4096 == 0) {
    if (px__c.store != NULL)
      px_store_close(px__c.store);
    px__c.store = px_fuzz_store_open("px-fuzz-hostile");
  }
  size_t len = 0;
  char *body = px_fuzz_envelope(data, size, px__key, NULL, &len);
  struct sockaddr_in client = {.sin_family = AF_INET, .sin_port = htons(40000),
                               .sin_addr.s_addr = htonl(0xcb007109)}; /* 203.0.113.9 */
  json_t *answer = NULL;
  unsigned status =
      px_submit_process(&px__c, (struct sockaddr *)&client, body, len, PX_FUZZ_NOW, &answer);
  if (answer == NULL)
    px_fuzz_fail("status %u without a JSON answer", status);
  if (status == 200) {
    px__accepted(json_string_value(json_object_get(answer, "measurement_uid")));
  } else if (status == 422) {
    const char *path = json_string_value(json_object_get(answer, "path"));
    const char *detail = json_string_value(json_object_get(answer, "detail"));
    if (path == NULL || detail == NULL ||
        (path[0] != '\0' && strncmp(detail, path, strlen(path)) != 0))
      px_fuzz_fail("a 422 without the path its detail starts with: %s", detail ? detail : "?");
  } else if (status != 400) {
    px_fuzz_fail("status %u: %s", status, json_string_value(json_object_get(answer, "detail")));
  }
  json_decref(answer);
  free(body);
  return 0;
}
