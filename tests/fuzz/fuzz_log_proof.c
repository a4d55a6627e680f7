/* The measurement log's answers as `parallax audit` and `parallax verify
 * --log` read them (collector-client/log_proof.h), and the tree-head
 * text the collector's signer agrees to sign (collector/log/sth.c). The
 * input is one JSON answer; the harness holds a real 37-leaf log
 * (leaf i: SHA-256 of "measurement i", uid "uid-i", received
 * PX_FUZZ_NOW + i) and its roots at every size, so beyond "no crash" it
 * checks soundness: a hostile collector never gets a leaf proven at an
 * index other than its own, with another received_at, or a forked old
 * head accepted as a prefix. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector-client/log_proof.h"
#include "collector/log/sth.h"
#include "common/encoding.h"
#include "common/timeutil.h"
#include "tests/fuzz/fuzz_common.h"

#define PX__LEAVES 37

static uint8_t px__sha[PX__LEAVES][32];
static uint8_t px__roots[PX__LEAVES + 1][PX_MERKLE_HASH_LEN]; /* root of the first n leaves */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  px_merkle_frontier_t f;
  px_merkle_frontier_init(&f);
  px_merkle_root(&f, px__roots[0]);
  for (int i = 0; i < PX__LEAVES; i++) {
    char m[32], uid[16], leaf[PX_MERKLE_LEAF_MAX];
    uint8_t hash[PX_MERKLE_HASH_LEN];
    snprintf(m, sizeof(m), "measurement %d", i);
    snprintf(uid, sizeof(uid), "uid-%d", i);
    SHA256((const uint8_t *)m, strlen(m), px__sha[i]);
    int len = px_merkle_log_leaf(px__sha[i], uid, PX_FUZZ_NOW + i, leaf, sizeof(leaf));
    if (len < 0 || px_merkle_leaf_hash(leaf, (size_t)len, hash) != 0)
      px_fuzz_fail("fixture leaf %d", i);
    px_merkle_append(&f, hash, NULL);
    px_merkle_root(&f, px__roots[i + 1]);
  }
  return 0;
}

static px_log_verified_head_t px__head(uint64_t size) {
  px_log_verified_head_t h = {.size = size};
  memcpy(h.root, px__roots[size], PX_MERKLE_HASH_LEN);
  return h;
}

/* Which of the harness's leaves the answer speaks of (by its uid), or 5. */
static int px__which(const json_t *doc) {
  const char *uid = json_string_value(json_object_get(doc, "measurement_uid"));
  for (int k = 0; uid != NULL && k < PX__LEAVES; k++) {
    char mine[16];
    snprintf(mine, sizeof(mine), "uid-%d", k);
    if (strcmp(uid, mine) == 0)
      return k;
  }
  return 5;
}

static void px__inclusion(const json_t *doc) {
  int k = px__which(doc);
  char uid[16];
  snprintf(uid, sizeof(uid), "uid-%d", k);
  const json_t *ts = json_object_get(doc, "tree_size");
  uint64_t size = json_is_integer(ts) && json_integer_value(ts) > k &&
                          json_integer_value(ts) <= PX__LEAVES
                      ? (uint64_t)json_integer_value(ts)
                      : PX__LEAVES;
  px_log_verified_head_t head = px__head(size);
  uint64_t at;
  if (px_log_inclusion_check(doc, uid, px__sha[k], &head, &at) == 0) {
    if (at != (uint64_t)k)
      px_fuzz_fail("leaf %d proven at index %llu", k, (unsigned long long)at);
    char want[32];
    struct tm tm;
    time_t t = PX_FUZZ_NOW + k;
    gmtime_r(&t, &tm);
    strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (strcmp(json_string_value(json_object_get(doc, "received_at")), want) != 0)
      px_fuzz_fail("leaf %d proven with another received_at", k);
  }
  /* Bytes the log never held: no proof may pass. */
  uint8_t other[32];
  memcpy(other, px__sha[k], 32);
  other[0] ^= 1;
  if (px_log_inclusion_check(doc, uid, other, &head, &at) == 0)
    px_fuzz_fail("altered bytes of leaf %d proven", k);
}

static void px__consistency(const json_t *doc) {
  const json_t *first = json_object_get(doc, "first");
  uint64_t m = json_is_integer(first) && json_integer_value(first) > 0 &&
                       json_integer_value(first) < PX__LEAVES
                   ? (uint64_t)json_integer_value(first)
                   : 10;
  px_log_verified_head_t old = px__head(m), now = px__head(PX__LEAVES);
  (void)px_log_consistency_check(doc, &old, &now); /* genuine: either answer is sound */
  old.root[PX_MERKLE_HASH_LEN - 1] ^= 0x80;       /* a forked history of the same size */
  if (px_log_consistency_check(doc, &old, &now) == 0)
    px_fuzz_fail("a forked head of size %llu accepted as a prefix", (unsigned long long)m);
}

static void px__leaves(const json_t *doc) {
  const json_t *leaves = json_object_get(doc, "leaves");
  for (size_t i = 0; i < json_array_size(leaves) && i < 64; i++) {
    uint8_t hash[PX_MERKLE_HASH_LEN], sha[32];
    char uid[PX_MERKLE_LEAF_MAX];
    if (px_log_leaf_parse(json_array_get(leaves, i), hash, sha, uid, sizeof(uid)) == 0 &&
        (uid[0] == '\0' || strpbrk(uid, " \t\r\n") != NULL))
      px_fuzz_fail("leaf %zu: uid '%s' would not round-trip through the leaf text", i, uid);
  }
}

/* What the signer signs must be a head the collector could have written. */
static void px__signer_text(const uint8_t *data, size_t size) {
  char why[128];
  if (px_sth_signer_policy.check((const char *)data, size, why, sizeof(why)) != 0)
    return;
  json_error_t e;
  json_t *doc = json_loadb((const char *)data, size, 0, &e);
  uint8_t root[32];
  time_t ts;
  const json_t *n = json_object_get(doc, "tree_size");
  char again[PX_STH_TEXT_MAX + 1];
  if (doc == NULL || json_object_size(doc) != 3 || !json_is_integer(n) ||
      json_integer_value(n) < 0 ||
      px_hex_decode(json_string_value(json_object_get(doc, "root_hash")), root, 32) != 0 ||
      json_string_value(json_object_get(doc, "timestamp")) == NULL ||
      px_time_parse_utc(json_string_value(json_object_get(doc, "timestamp")), &ts) != 0 ||
      px_sth_text((uint64_t)json_integer_value(n), root, ts, again, sizeof(again)) != (int)size ||
      memcmp(again, data, size) != 0)
    px_fuzz_fail("the signer agreed to sign something else than a tree head");
  json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  px__signer_text(data, size);
  json_t *doc = json_loadb((const char *)data, size, 0, NULL);
  if (doc == NULL)
    return 0;
  px_log_verified_head_t h;
  const char *why = NULL;
  if (px_log_head_parse(doc, &h, &why) != 0 && why == NULL)
    px_fuzz_fail("a refused head without a reason");
  px_merkle_proof_t *p = malloc(sizeof(*p));
  if (p != NULL && px_log_path_parse(json_object_get(doc, "audit_path"), p) == 0 &&
      p->n > PX_MERKLE_PROOF_MAX)
    px_fuzz_fail("a path of %zu hashes", p->n);
  free(p);
  px__inclusion(doc);
  px__consistency(doc);
  px__leaves(doc);
  json_decref(doc);
  return 0;
}
