#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/merkle.h"
#include "tests/runner.h"

/* RFC 6962's test data (also RFC 9162's structure): eight leaves and the
 * root of each prefix of them. */
static const char *const px__leaves_hex[] = {
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f"};
static const char *const px__roots_hex[] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", /* empty */
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

static void px__unhex(const char *hex, uint8_t *out, size_t *n) {
  *n = strlen(hex) / 2;
  assert_int_equal(px_hex_decode(hex, out, *n), 0);
}

/* The perfect subtrees px_merkle_append reports, kept as a store would. */
typedef struct {
  px_merkle_node_t *nodes;
  size_t n, cap;
  int gets;
} px__mem_t;

static int px__get(void *ctx, unsigned level, uint64_t index, uint8_t out[PX_MERKLE_HASH_LEN]) {
  px__mem_t *m = ctx;
  m->gets++;
  for (size_t i = 0; i < m->n; i++)
    if (m->nodes[i].level == level && m->nodes[i].index == index) {
      memcpy(out, m->nodes[i].hash, PX_MERKLE_HASH_LEN);
      return 0;
    }
  return -ENOENT;
}

static void px__append(px__mem_t *m, px_merkle_frontier_t *f, const uint8_t leaf[32]) {
  px_merkle_node_t done[PX_MERKLE_MAX_DEPTH];
  int k = px_merkle_append(f, leaf, done);
  assert_true(k >= 1);
  for (int i = 0; i < k; i++) {
    if (m->n == m->cap) {
      m->cap = m->cap ? 2 * m->cap : 64;
      m->nodes = realloc(m->nodes, m->cap * sizeof(*m->nodes));
      assert_non_null(m->nodes);
    }
    m->nodes[m->n++] = done[i];
  }
}

/* MTH straight from RFC 9162 2.1.1, over the leaf hashes: the reference
 * the frontier and the proofs are held to. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void px__mth(const uint8_t (*leaf)[32], size_t n, uint8_t out[32]) {
  if (n == 1) {
    memcpy(out, leaf[0], 32);
    return;
  }
  size_t k = 1;
  while (k * 2 < n)
    k *= 2;
  uint8_t l[32], r[32];
  px__mth(leaf, k, l);
  px__mth(leaf + k, n - k, r);
  px_merkle_node_hash(l, r, out);
}

PX_TEST(merkle_rfc6962_vectors) {
  (void)state;
  px_merkle_frontier_t f;
  px__mem_t mem = {0};
  uint8_t root[32], want[32], leaf[64], lh[32];
  size_t n;
  px_merkle_frontier_init(&f);
  px_merkle_root(&f, root);
  px__unhex(px__roots_hex[0], want, &n);
  assert_memory_equal(root, want, 32);
  for (size_t i = 0; i < 8; i++) {
    px__unhex(px__leaves_hex[i], leaf, &n);
    assert_int_equal(px_merkle_leaf_hash(leaf, n, lh), 0);
    px__append(&mem, &f, lh);
    px_merkle_root(&f, root);
    px__unhex(px__roots_hex[i + 1], want, &n);
    assert_memory_equal(root, want, 32);
  }
  /* The RFC's inclusion proof of leaf 0 in the 8-leaf tree. */
  static const char *const path0[] = {
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"};
  px_merkle_proof_t p;
  assert_int_equal(px_merkle_inclusion_proof(px__get, &mem, 0, 8, &p), 0);
  assert_int_equal(p.n, 3);
  for (size_t i = 0; i < 3; i++) {
    px__unhex(path0[i], want, &n);
    assert_memory_equal(p.hashes[i], want, 32);
  }
  px_merkle_leaf_hash("", 0, lh);
  assert_int_equal(px_merkle_verify_inclusion(0, 8, lh, &p, root), 0);
  free(mem.nodes);
}

/* Every proof of every tree up to 70 leaves verifies; every altered one
 * (a hash changed, one missing or added, another index, another root)
 * does not. */
PX_TEST(merkle_proofs_exhaustive) {
  (void)state;
  enum { N = 70 };
  uint8_t leaves[N][32], roots[N + 1][32];
  px_merkle_frontier_t f;
  px__mem_t mem = {0};
  px_merkle_frontier_init(&f);
  for (size_t i = 0; i < N; i++) {
    uint8_t data[8];
    memcpy(data, &i, sizeof(data));
    assert_int_equal(px_merkle_leaf_hash(data, sizeof(data), leaves[i]), 0);
    px__append(&mem, &f, leaves[i]);
    px_merkle_root(&f, roots[i + 1]);
    uint8_t ref[32];
    px__mth(leaves, i + 1, ref);
    assert_memory_equal(roots[i + 1], ref, 32);
    uint8_t sub[32];
    assert_int_equal(px_merkle_subtree_hash(px__get, &mem, 0, i + 1, sub), 0);
    assert_memory_equal(sub, ref, 32);
  }
  px_merkle_proof_t p;
  for (uint64_t size = 1; size <= N; size++) {
    for (uint64_t i = 0; i < size; i++) {
      assert_int_equal(px_merkle_inclusion_proof(px__get, &mem, i, size, &p), 0);
      assert_int_equal(px_merkle_verify_inclusion(i, size, leaves[i], &p, roots[size]), 0);
      if (size > 1)
        assert_int_equal(px_merkle_verify_inclusion((i + 1) % size, size, leaves[i], &p,
                                                    roots[size]),
                         -EBADMSG);
      assert_int_equal(px_merkle_verify_inclusion(i, size, leaves[(i + 1) % N], &p,
                                                  roots[size]),
                       -EBADMSG);
      for (size_t k = 0; k < p.n; k++) {
        p.hashes[k][k % 32] ^= 0x40;
        assert_int_equal(px_merkle_verify_inclusion(i, size, leaves[i], &p, roots[size]),
                         -EBADMSG);
        p.hashes[k][k % 32] ^= 0x40;
      }
      if (p.n > 0) {
        p.n--;
        assert_int_equal(px_merkle_verify_inclusion(i, size, leaves[i], &p, roots[size]),
                         -EBADMSG);
        p.n++;
      }
      memcpy(p.hashes[p.n], leaves[0], 32);
      p.n++;
      assert_int_equal(px_merkle_verify_inclusion(i, size, leaves[i], &p, roots[size]),
                       -EBADMSG);
    }
    assert_int_equal(px_merkle_inclusion_proof(px__get, &mem, size, size, &p), -EINVAL);
    for (uint64_t first = 1; first <= size; first++) {
      assert_int_equal(px_merkle_consistency_proof(px__get, &mem, first, size, &p), 0);
      assert_int_equal(px_merkle_verify_consistency(first, size, roots[first], roots[size], &p),
                       0);
      if (first < size) {
        /* The old root of another size, or a root not in this history. */
        assert_int_equal(
            px_merkle_verify_consistency(first, size, roots[first + 1], roots[size], &p),
            -EBADMSG);
        assert_int_equal(px_merkle_verify_consistency(first, size, roots[first],
                                                      roots[first + 1], &p),
                         first + 1 == size ? 0 : -EBADMSG);
      }
      for (size_t k = 0; k < p.n; k++) {
        p.hashes[k][31 - k % 32] ^= 1;
        assert_int_equal(
            px_merkle_verify_consistency(first, size, roots[first], roots[size], &p), -EBADMSG);
        p.hashes[k][31 - k % 32] ^= 1;
      }
    }
  }
  assert_int_equal(px_merkle_consistency_proof(px__get, &mem, 0, 5, &p), -EINVAL);
  assert_int_equal(px_merkle_consistency_proof(px__get, &mem, 6, 5, &p), -EINVAL);
  free(mem.nodes);
}

/* Two histories that differ in one leaf (a collector that showed one
 * researcher another tree): no consistency proof of the honest log makes
 * the forked root follow from the honest old one. */
PX_TEST(merkle_fork_is_caught) {
  (void)state;
  enum { N = 37, FORK = 20 };
  px_merkle_frontier_t honest, forked;
  px__mem_t mh = {0}, mf = {0};
  uint8_t old_root[32], honest_root[32], forked_root[32], lh[32];
  px_merkle_frontier_init(&honest);
  px_merkle_frontier_init(&forked);
  for (size_t i = 0; i < N; i++) {
    uint8_t data[16] = {0};
    memcpy(data, &i, sizeof(i));
    px_merkle_leaf_hash(data, sizeof(data), lh);
    px__append(&mh, &honest, lh);
    data[15] = i == FORK;
    px_merkle_leaf_hash(data, sizeof(data), lh);
    px__append(&mf, &forked, lh);
    if (i == 9)
      px_merkle_root(&honest, old_root);
  }
  px_merkle_root(&honest, honest_root);
  px_merkle_root(&forked, forked_root);
  assert_memory_not_equal(honest_root, forked_root, 32);
  px_merkle_proof_t p;
  assert_int_equal(px_merkle_consistency_proof(px__get, &mh, 10, N, &p), 0);
  assert_int_equal(px_merkle_verify_consistency(10, N, old_root, honest_root, &p), 0);
  assert_int_equal(px_merkle_verify_consistency(10, N, old_root, forked_root, &p), -EBADMSG);
  assert_int_equal(px_merkle_consistency_proof(px__get, &mf, 10, N, &p), 0);
  /* The fork's own proof is consistent with its own root (the first ten
   * leaves agree), but not with the honest one. */
  assert_int_equal(px_merkle_verify_consistency(10, N, old_root, forked_root, &p), 0);
  assert_int_equal(px_merkle_verify_consistency(10, N, old_root, honest_root, &p), -EBADMSG);
  /* Proofs read O(log n) subtrees, not the leaves. */
  mh.gets = 0;
  assert_int_equal(px_merkle_inclusion_proof(px__get, &mh, 17, N, &p), 0);
  assert_true(mh.gets <= 2 * 6);
  free(mh.nodes);
  free(mf.nodes);
}
