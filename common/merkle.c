#include "common/merkle.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/encoding.h"

int px_merkle_leaf_hash(const void *leaf, size_t n, uint8_t out[PX_MERKLE_HASH_LEN]) {
  static const uint8_t prefix = 0x00;
  uint8_t small[1 + 256];
  if (n < sizeof(small)) { /* the log's leaves: no context to allocate */
    small[0] = prefix;
    memcpy(small + 1, leaf, n);
    return SHA256(small, n + 1, out) != NULL ? 0 : -EIO;
  }
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned len = 0;
  int rc = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
                   EVP_DigestUpdate(c, &prefix, 1) == 1 && EVP_DigestUpdate(c, leaf, n) == 1 &&
                   EVP_DigestFinal_ex(c, out, &len) == 1
               ? 0
               : -EIO;
  EVP_MD_CTX_free(c);
  return rc;
}

void px_merkle_node_hash(const uint8_t left[PX_MERKLE_HASH_LEN],
                         const uint8_t right[PX_MERKLE_HASH_LEN],
                         uint8_t out[PX_MERKLE_HASH_LEN]) {
  uint8_t buf[1 + 2 * PX_MERKLE_HASH_LEN];
  buf[0] = 0x01;
  memcpy(buf + 1, left, PX_MERKLE_HASH_LEN);
  memcpy(buf + 1 + PX_MERKLE_HASH_LEN, right, PX_MERKLE_HASH_LEN);
  SHA256(buf, sizeof(buf), out); /* out may be left or right: read first */
}

int px_merkle_log_leaf(const uint8_t content_sha256[32], const char *uid, time_t received_at,
                       char *out, size_t n) {
  char sha[65], when[32];
  if (uid[0] == '\0')
    return -EINVAL; /* the leaf text's fields are separated by one space */
  for (const char *p = uid; *p != '\0'; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return -EINVAL;
  px_hex_encode(content_sha256, 32, sha);
  struct tm tm;
  if (gmtime_r(&received_at, &tm) == NULL ||
      strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return -EINVAL;
  int len = snprintf(out, n, "%s %s %s", sha, uid, when);
  return len < 0 || (size_t)len >= n ? -ENOBUFS : len;
}

int px_merkle_sth_text(uint64_t size, const uint8_t root[PX_MERKLE_HASH_LEN], time_t timestamp,
                       char *out, size_t n) {
  char h[2 * PX_MERKLE_HASH_LEN + 1], when[32];
  px_hex_encode(root, PX_MERKLE_HASH_LEN, h);
  struct tm tm;
  if (gmtime_r(&timestamp, &tm) == NULL ||
      strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return -EINVAL;
  int len = snprintf(out, n, "{\"tree_size\":%llu,\"root_hash\":\"%s\",\"timestamp\":\"%s\"}",
                     (unsigned long long)size, h, when);
  return len < 0 || (size_t)len >= n ? -ENOBUFS : len;
}

void px_merkle_frontier_init(px_merkle_frontier_t *f) {
  memset(f, 0, sizeof(*f));
}

int px_merkle_append(px_merkle_frontier_t *f, const uint8_t leaf_hash[PX_MERKLE_HASH_LEN],
                     px_merkle_node_t completed[PX_MERKLE_MAX_DEPTH]) {
  uint8_t cur[PX_MERKLE_HASH_LEN];
  unsigned level = 0;
  int count = 0;
  memcpy(cur, leaf_hash, sizeof(cur));
  for (;;) {
    if (completed != NULL) {
      completed[count].level = level;
      completed[count].index = f->size >> level;
      memcpy(completed[count].hash, cur, sizeof(cur));
    }
    count++;
    /* A perfect subtree of this level already ends the tree: the two
     * make one of the next level. */
    if (level + 1 >= PX_MERKLE_MAX_DEPTH || (f->size & ((uint64_t)1 << level)) == 0)
      break;
    px_merkle_node_hash(f->nodes[level], cur, cur);
    level++;
  }
  memcpy(f->nodes[level], cur, sizeof(cur));
  f->size++;
  return count;
}

void px_merkle_root(const px_merkle_frontier_t *f, uint8_t out[PX_MERKLE_HASH_LEN]) {
  if (f->size == 0) {
    SHA256((const uint8_t *)"", 0, out);
    return;
  }
  bool have = false;
  uint8_t r[PX_MERKLE_HASH_LEN];
  /* From the smallest subtree (the rightmost) up: each larger one is the
   * left sibling of everything to its right. */
  for (unsigned k = 0; k < PX_MERKLE_MAX_DEPTH; k++) {
    if ((f->size & ((uint64_t)1 << k)) == 0)
      continue;
    if (!have)
      memcpy(r, f->nodes[k], sizeof(r));
    else
      px_merkle_node_hash(f->nodes[k], r, r);
    have = true;
  }
  memcpy(out, r, sizeof(r));
}

/* The largest power of two strictly below n (n >= 2). */
static uint64_t px__split(uint64_t n) {
  uint64_t k = 1;
  while (k < n - k) /* k * 2 < n without overflow */
    k <<= 1;
  return k;
}

static bool px__pow2(uint64_t n) {
  return n != 0 && (n & (n - 1)) == 0;
}

static unsigned px__log2(uint64_t n) {
  unsigned l = 0;
  while (n > 1) {
    n >>= 1;
    l++;
  }
  return l;
}

/* Recursion depth is at most 64: each call halves the range. */
/* NOLINTNEXTLINE(misc-no-recursion) */
int px_merkle_subtree_hash(px_merkle_get_fn get, void *ctx, uint64_t lo, uint64_t hi,
                           uint8_t out[PX_MERKLE_HASH_LEN]) {
  if (hi <= lo)
    return -EINVAL;
  uint64_t n = hi - lo;
  if (px__pow2(n)) {
    unsigned level = px__log2(n);
    if ((lo & (n - 1)) != 0)
      return -EINVAL; /* not a subtree of the tree */
    return get(ctx, level, lo >> level, out);
  }
  uint64_t k = px__split(n);
  uint8_t left[PX_MERKLE_HASH_LEN], right[PX_MERKLE_HASH_LEN];
  int rc = px_merkle_subtree_hash(get, ctx, lo, lo + k, left);
  if (rc == 0)
    rc = px_merkle_subtree_hash(get, ctx, lo + k, hi, right);
  if (rc == 0)
    px_merkle_node_hash(left, right, out);
  return rc;
}

static int px__push(px_merkle_proof_t *p, px_merkle_get_fn get, void *ctx, uint64_t lo,
                    uint64_t hi) {
  if (p->n >= PX_MERKLE_PROOF_MAX)
    return -E2BIG;
  int rc = px_merkle_subtree_hash(get, ctx, lo, hi, p->hashes[p->n]);
  if (rc == 0)
    p->n++;
  return rc;
}

/* PATH(m, D[lo:hi]): the deepest sibling first. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__path(px_merkle_get_fn get, void *ctx, uint64_t m, uint64_t lo, uint64_t hi,
                    px_merkle_proof_t *p) {
  uint64_t n = hi - lo;
  if (n <= 1)
    return 0;
  uint64_t k = px__split(n);
  int rc;
  if (m < k) {
    if ((rc = px__path(get, ctx, m, lo, lo + k, p)) != 0)
      return rc;
    return px__push(p, get, ctx, lo + k, hi);
  }
  if ((rc = px__path(get, ctx, m - k, lo + k, hi, p)) != 0)
    return rc;
  return px__push(p, get, ctx, lo, lo + k);
}

int px_merkle_inclusion_proof(px_merkle_get_fn get, void *ctx, uint64_t index, uint64_t size,
                              px_merkle_proof_t *out) {
  out->n = 0;
  if (index >= size)
    return -EINVAL;
  return px__path(get, ctx, index, 0, size, out);
}

/* SUBPROOF(m, D[lo:hi], whole): whole says D[lo:lo+m] is the old tree
 * itself, whose root the verifier has. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static int px__subproof(px_merkle_get_fn get, void *ctx, uint64_t m, uint64_t lo, uint64_t hi,
                        bool whole, px_merkle_proof_t *p) {
  uint64_t n = hi - lo;
  if (m == n)
    return whole ? 0 : px__push(p, get, ctx, lo, hi);
  uint64_t k = px__split(n);
  int rc;
  if (m <= k) {
    if ((rc = px__subproof(get, ctx, m, lo, lo + k, whole, p)) != 0)
      return rc;
    return px__push(p, get, ctx, lo + k, hi);
  }
  if ((rc = px__subproof(get, ctx, m - k, lo + k, hi, false, p)) != 0)
    return rc;
  return px__push(p, get, ctx, lo, lo + k);
}

int px_merkle_consistency_proof(px_merkle_get_fn get, void *ctx, uint64_t first,
                                uint64_t second, px_merkle_proof_t *out) {
  out->n = 0;
  if (first == 0 || first > second)
    return -EINVAL;
  return px__subproof(get, ctx, first, 0, second, true, out);
}

int px_merkle_verify_inclusion(uint64_t index, uint64_t size,
                               const uint8_t leaf_hash[PX_MERKLE_HASH_LEN],
                               const px_merkle_proof_t *proof,
                               const uint8_t root[PX_MERKLE_HASH_LEN]) {
  if (index >= size)
    return -EINVAL;
  uint64_t fn = index, sn = size - 1;
  uint8_t r[PX_MERKLE_HASH_LEN];
  memcpy(r, leaf_hash, sizeof(r));
  for (size_t i = 0; i < proof->n; i++) {
    const uint8_t *p = proof->hashes[i];
    if (sn == 0)
      return -EBADMSG; /* longer than the tree is deep */
    if ((fn & 1) != 0 || fn == sn) {
      px_merkle_node_hash(p, r, r);
      if ((fn & 1) == 0)
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
    } else {
      px_merkle_node_hash(r, p, r);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && memcmp(r, root, sizeof(r)) == 0 ? 0 : -EBADMSG;
}

int px_merkle_verify_consistency(uint64_t first, uint64_t second,
                                 const uint8_t first_root[PX_MERKLE_HASH_LEN],
                                 const uint8_t second_root[PX_MERKLE_HASH_LEN],
                                 const px_merkle_proof_t *proof) {
  if (first == 0 || first > second)
    return -EINVAL;
  if (first == second) /* nothing to prove but that the roots agree */
    return proof->n == 0 && memcmp(first_root, second_root, PX_MERKLE_HASH_LEN) == 0 ? 0
                                                                                    : -EBADMSG;
  if (proof->n == 0)
    return -EBADMSG;
  /* The path, with the old root in front when the old tree is a perfect
   * subtree of the new one (the proof leaves it out: the verifier has it). */
  const uint8_t *path[PX_MERKLE_PROOF_MAX + 1];
  size_t n = 0;
  if (px__pow2(first))
    path[n++] = first_root;
  for (size_t i = 0; i < proof->n; i++)
    path[n++] = proof->hashes[i];
  uint64_t fn = first - 1, sn = second - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  uint8_t fr[PX_MERKLE_HASH_LEN], sr[PX_MERKLE_HASH_LEN];
  memcpy(fr, path[0], sizeof(fr));
  memcpy(sr, path[0], sizeof(sr));
  for (size_t i = 1; i < n; i++) {
    const uint8_t *c = path[i];
    if (sn == 0)
      return -EBADMSG;
    if ((fn & 1) != 0 || fn == sn) {
      px_merkle_node_hash(c, fr, fr);
      px_merkle_node_hash(c, sr, sr);
      if ((fn & 1) == 0)
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
    } else {
      px_merkle_node_hash(sr, c, sr);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && memcmp(fr, first_root, sizeof(fr)) == 0 &&
                 memcmp(sr, second_root, sizeof(sr)) == 0
             ? 0
             : -EBADMSG;
}
