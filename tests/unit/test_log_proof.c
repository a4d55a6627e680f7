/* collector-client/log_proof.c against answers computed by an
 * independent implementation (tests/tools/make-log-seeds.py, which also
 * writes them as the seeds of tests/fuzz/fuzz_log_proof): every genuine
 * answer passes, every changed one fails for the right reason. */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector-client/log_proof.h"
#include "common/encoding.h"
#include "tests/runner.h"

static json_t *px__seed(const char *name) {
  char path[512];
  snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/log_proof/%s", PX_SOURCE_DIR, name);
  json_error_t e;
  json_t *doc = json_load_file(path, 0, &e);
  assert_non_null(doc);
  return doc;
}

static px_log_verified_head_t px__head_of(const json_t *doc, const char *size_key, const char *root_key) {
  px_log_verified_head_t h = {.size = (uint64_t)json_integer_value(json_object_get(doc, size_key))};
  assert_int_equal(px_hex_decode(json_string_value(json_object_get(doc, root_key)), h.root, 32),
                   0);
  return h;
}

PX_TEST(log_proof_inclusion_independent) {
  (void)state;
  static const int cases[][2] = {{0, 1}, {5, 37}, {36, 37}, {12, 13}, {31, 32}};
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    char name[64], uid[16], m[32];
    snprintf(name, sizeof(name), "inclusion-%d-%d.json", cases[c][0], cases[c][1]);
    snprintf(uid, sizeof(uid), "uid-%d", cases[c][0]);
    snprintf(m, sizeof(m), "measurement %d", cases[c][0]);
    uint8_t sha[32];
    SHA256((const uint8_t *)m, strlen(m), sha);
    json_t *doc = px__seed(name);
    px_log_verified_head_t head = px__head_of(doc, "tree_size", "root_hash");
    uint64_t at = 99;
    assert_int_equal(px_log_inclusion_check(doc, uid, sha, &head, &at), 0);
    assert_int_equal(at, (uint64_t)cases[c][0]);
    /* Other bytes, another uid, another time, another index: refused. */
    sha[3] ^= 1;
    assert_int_equal(px_log_inclusion_check(doc, uid, sha, &head, &at), -EBADMSG);
    sha[3] ^= 1;
    assert_int_equal(px_log_inclusion_check(doc, "uid-99", sha, &head, &at), -EBADMSG);
    json_t *copy = json_deep_copy(doc);
    json_object_set_new(copy, "received_at", json_string("2027-01-01T00:10:00Z"));
    assert_int_equal(px_log_inclusion_check(copy, uid, sha, &head, &at), -EBADMSG);
    json_object_set_new(copy, "received_at", json_string("yesterday"));
    assert_int_equal(px_log_inclusion_check(copy, uid, sha, &head, &at), -EINVAL);
    json_decref(copy);
    if (head.size > 1) {
      copy = json_deep_copy(doc);
      json_object_set_new(copy, "leaf_index", json_integer(cases[c][0] ^ 1));
      assert_int_equal(px_log_inclusion_check(copy, uid, sha, &head, &at), -EBADMSG);
      json_array_set_new(json_object_get(copy, "audit_path"), 0, json_string("00"));
      assert_int_equal(px_log_inclusion_check(copy, uid, sha, &head, &at), -EINVAL);
      json_decref(copy);
    }
    json_decref(doc);
  }
}

PX_TEST(log_proof_consistency_independent) {
  (void)state;
  static const int firsts[] = {1, 10, 16, 36};
  for (size_t c = 0; c < sizeof(firsts) / sizeof(firsts[0]); c++) {
    char name[64];
    snprintf(name, sizeof(name), "consistency-%d-37.json", firsts[c]);
    json_t *doc = px__seed(name);
    px_log_verified_head_t old = px__head_of(doc, "first", "first_root_hash");
    px_log_verified_head_t now = px__head_of(doc, "second", "second_root_hash");
    assert_int_equal(px_log_consistency_check(doc, &old, &now), 0);
    old.root[0] ^= 1; /* a fork of the same size */
    assert_int_equal(px_log_consistency_check(doc, &old, &now), -EBADMSG);
    old.root[0] ^= 1;
    now.root[31] ^= 1; /* a rewritten newer history */
    assert_int_equal(px_log_consistency_check(doc, &old, &now), -EBADMSG);
    json_decref(doc);
  }
}

PX_TEST(log_proof_leaves_and_head) {
  (void)state;
  json_t *doc = px__seed("leaves-0-8.json");
  json_t *leaves = json_object_get(doc, "leaves");
  assert_int_equal(json_array_size(leaves), 8);
  for (size_t i = 0; i < json_array_size(leaves); i++) {
    uint8_t hash[32], sha[32], want[32];
    char uid[64];
    json_t *l = json_array_get(leaves, i);
    assert_int_equal(px_log_leaf_parse(l, hash, sha, uid, sizeof(uid)), 0);
    assert_int_equal(px_hex_decode(json_string_value(json_object_get(l, "leaf_hash")), want, 32),
                     0);
    assert_memory_equal(hash, want, 32);
    json_object_set_new(l, "measurement_uid", json_string("two words"));
    assert_int_equal(px_log_leaf_parse(l, hash, sha, uid, sizeof(uid)), -EINVAL);
  }
  json_decref(doc);

  doc = px__seed("sth-signed.json");
  px_log_verified_head_t h;
  const char *why = NULL;
  assert_int_equal(px_log_head_parse(doc, &h, &why), 0);
  assert_int_equal(h.size, 37);
  json_object_set_new(doc, "tree_size", json_integer(36));
  assert_int_equal(px_log_head_parse(doc, &h, &why), -EBADMSG);
  assert_non_null(why);
  json_decref(doc);
}
