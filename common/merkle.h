#ifndef PX_MERKLE_H
#define PX_MERKLE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The measurement log's Merkle tree, in RFC 9162's structure (section
 * 2.1, the same as RFC 6962's): the hash of a leaf is SHA-256(0x00 ||
 * leaf), of an interior node SHA-256(0x01 || left || right), and a tree of
 * n leaves splits at the largest power of two below n. Shared by the
 * collector (which appends and proves) and the agent (which checks).
 *
 * A tree is never held whole. Appending keeps its frontier, the roots of
 * the perfect subtrees an n-leaf tree is made of (one per set bit of n):
 * O(log n) work and memory a leaf. Proofs read the hashes of perfect
 * subtrees through a callback, from wherever the caller keeps them (the
 * collector's store records each one as it is completed). */
#define PX_MERKLE_HASH_LEN 32
#define PX_MERKLE_MAX_DEPTH 64 /* levels of a tree of up to 2^64 - 1 leaves */

/* 0, or -EIO when OpenSSL cannot hash (out of memory). */
int px_merkle_leaf_hash(const void *leaf, size_t n, uint8_t out[PX_MERKLE_HASH_LEN]);
void px_merkle_node_hash(const uint8_t left[PX_MERKLE_HASH_LEN],
                         const uint8_t right[PX_MERKLE_HASH_LEN],
                         uint8_t out[PX_MERKLE_HASH_LEN]);

/* The bytes of the measurement log's leaf for one stored measurement
 * (docs/transparency.md): the SHA-256 of its exact signed bytes in hex,
 * its measurement_uid and the time the collector stored it, e.g.
 *   "9f86…0f00a08 20141020120000_CN_tlscertconsistency_1d9b26917f723166 2014-10-20T12:00:07Z"
 * Text, so that a leaf hash can be checked by hand (printf '\000%s' LEAF |
 * sha256sum). Writes it NUL-terminated into out; returns its length, or
 * -ENOBUFS / -EINVAL (an empty uid, or one with a space or a control
 * character). */
#define PX_MERKLE_LEAF_MAX 192
int px_merkle_log_leaf(const uint8_t content_sha256[32], const char *uid, time_t received_at,
                       char *out, size_t n);

/* The bytes a signed tree head covers (docs/transparency.md):
 * {"tree_size":N,"root_hash":"<64 hex>","timestamp":"YYYY-MM-DDTHH:MM:SSZ"},
 * compact, in that order (what `jq -cj '{tree_size,root_hash,timestamp}'`
 * prints of the API's answer); SSHSIG namespace PX_MERKLE_STH_NAMESPACE.
 * Returns the length, or a negative errno. */
#define PX_MERKLE_STH_NAMESPACE "parallax-sth-v1"
#define PX_MERKLE_STH_TEXT_MAX 160
int px_merkle_sth_text(uint64_t size, const uint8_t root[PX_MERKLE_HASH_LEN], time_t timestamp,
                       char *out, size_t n);

typedef struct px_merkle_frontier {
  uint64_t size;
  /* nodes[k]: the root of the perfect subtree of 2^k leaves, present when
   * bit k of size is set. */
  uint8_t nodes[PX_MERKLE_MAX_DEPTH][PX_MERKLE_HASH_LEN];
} px_merkle_frontier_t;

void px_merkle_frontier_init(px_merkle_frontier_t *f);

/* Appends a leaf (its leaf hash). When completed is not NULL, it receives
 * the perfect subtrees this leaf completes, as (level, index) pairs with
 * their hashes: level 0 is the leaf itself, index counts subtrees of that
 * level from the left. Returns how many (1 to 64), so a store can keep
 * every perfect subtree, which is all proofs ever need. */
typedef struct px_merkle_node {
  unsigned level;
  uint64_t index;
  uint8_t hash[PX_MERKLE_HASH_LEN];
} px_merkle_node_t;

int px_merkle_append(px_merkle_frontier_t *f, const uint8_t leaf_hash[PX_MERKLE_HASH_LEN],
                     px_merkle_node_t completed[PX_MERKLE_MAX_DEPTH]);

/* MTH of the frontier's tree (SHA-256 of nothing for the empty tree). */
void px_merkle_root(const px_merkle_frontier_t *f, uint8_t out[PX_MERKLE_HASH_LEN]);

/* Yields the hash of the perfect subtree (level, index): leaves
 * [index * 2^level, (index + 1) * 2^level). 0, or a negative errno that
 * the proof functions return as is. */
typedef int (*px_merkle_get_fn)(void *ctx, unsigned level, uint64_t index,
                                uint8_t out[PX_MERKLE_HASH_LEN]);

/* MTH(D[lo:hi]) for 0 <= lo < hi, lo a multiple of the largest power of
 * two not above hi - lo (every range the proofs ask for is). */
int px_merkle_subtree_hash(px_merkle_get_fn get, void *ctx, uint64_t lo, uint64_t hi,
                           uint8_t out[PX_MERKLE_HASH_LEN]);

/* A proof: at most 2 * 64 hashes (a consistency proof of a 2^64-leaf
 * tree is longer than an inclusion proof). */
#define PX_MERKLE_PROOF_MAX ((size_t)2 * PX_MERKLE_MAX_DEPTH)
typedef struct px_merkle_proof {
  size_t n;
  uint8_t hashes[PX_MERKLE_PROOF_MAX][PX_MERKLE_HASH_LEN];
} px_merkle_proof_t;

/* RFC 9162 2.1.3.1: the inclusion proof of leaf index in the tree of
 * size leaves. -EINVAL unless index < size. */
int px_merkle_inclusion_proof(px_merkle_get_fn get, void *ctx, uint64_t index, uint64_t size,
                              px_merkle_proof_t *out);

/* RFC 9162 2.1.4.1: the consistency proof between the trees of first and
 * second leaves. -EINVAL unless 0 < first <= second. */
int px_merkle_consistency_proof(px_merkle_get_fn get, void *ctx, uint64_t first,
                                uint64_t second, px_merkle_proof_t *out);

/* RFC 9162 2.1.3.2 and 2.1.4.2: 0 when the proof shows it, -EBADMSG when
 * it does not (a wrong hash, a proof of the wrong length), -EINVAL for
 * sizes that cannot have a proof. */
int px_merkle_verify_inclusion(uint64_t index, uint64_t size,
                               const uint8_t leaf_hash[PX_MERKLE_HASH_LEN],
                               const px_merkle_proof_t *proof,
                               const uint8_t root[PX_MERKLE_HASH_LEN]);
int px_merkle_verify_consistency(uint64_t first, uint64_t second,
                                 const uint8_t first_root[PX_MERKLE_HASH_LEN],
                                 const uint8_t second_root[PX_MERKLE_HASH_LEN],
                                 const px_merkle_proof_t *proof);

#endif
