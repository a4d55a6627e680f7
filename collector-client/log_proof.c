#include "collector-client/log_proof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/timeutil.h"

int px_log_head_parse(const json_t *doc, px_log_verified_head_t *h, const char **why) {
  memset(h, 0, sizeof(*h));
  const json_t *size = json_object_get(doc, "tree_size");
  const char *root = json_string_value(json_object_get(doc, "root_hash"));
  const char *when = json_string_value(json_object_get(doc, "timestamp"));
  const char *key_id = json_string_value(json_object_get(doc, "key_id"));
  const char *sig = json_string_value(json_object_get(doc, "signature"));
  *why = "not a signed tree head";
  if (!json_is_integer(size) || json_integer_value(size) < 0 || key_id == NULL || sig == NULL ||
      when == NULL || px_hex_decode(root, h->root, sizeof(h->root)) != 0 ||
      px_time_parse_utc(when, &h->timestamp) != 0)
    return -EBADMSG;
  h->size = (uint64_t)json_integer_value(size);
  char text[PX_MERKLE_STH_TEXT_MAX + 1];
  int n = px_merkle_sth_text(h->size, h->root, h->timestamp, text, sizeof(text));
  px_ssh_pubkey_t signer;
  if (n < 0 || px_sshsig_verify(sig, strlen(sig), PX_MERKLE_STH_NAMESPACE, (const uint8_t *)text,
                                (size_t)n, &signer, why) != 0)
    return -EBADMSG;
  if (strcmp(signer.key_id, key_id) != 0) {
    *why = "signed by another key than the one it names";
    return -EBADMSG;
  }
  snprintf(h->key_id, sizeof(h->key_id), "%s", key_id);
  return 0;
}

int px_log_path_parse(const json_t *a, px_merkle_proof_t *p) {
  p->n = 0;
  if (!json_is_array(a) || json_array_size(a) > PX_MERKLE_PROOF_MAX)
    return -EINVAL;
  for (size_t i = 0; i < json_array_size(a); i++)
    if (px_hex_decode(json_string_value(json_array_get(a, i)), p->hashes[p->n++],
                      PX_MERKLE_HASH_LEN) != 0)
      return -EINVAL;
  return 0;
}

/* The leaf text of (content_sha256, uid, received_at) and its hash. */
static int px__leaf_hash(const uint8_t sha[32], const char *uid, const char *when,
                         uint8_t hash[PX_MERKLE_HASH_LEN]) {
  char text[PX_MERKLE_LEAF_MAX];
  time_t received;
  if (uid == NULL || when == NULL || px_time_parse_utc(when, &received) != 0)
    return -EINVAL;
  int len = px_merkle_log_leaf(sha, uid, received, text, sizeof(text));
  return len < 0 || px_merkle_leaf_hash(text, (size_t)len, hash) != 0 ? -EINVAL : 0;
}

int px_log_leaf_parse(const json_t *leaf, uint8_t hash[PX_MERKLE_HASH_LEN],
                      uint8_t content_sha256[32], char *uid, size_t uid_len) {
  const char *u = json_string_value(json_object_get(leaf, "measurement_uid"));
  if (px_hex_decode(json_string_value(json_object_get(leaf, "content_sha256")), content_sha256,
                    32) != 0 ||
      px__leaf_hash(content_sha256, u, json_string_value(json_object_get(leaf, "received_at")), hash) != 0)
    return -EINVAL;
  if ((size_t)snprintf(uid, uid_len, "%s", u) >= uid_len)
    return -EINVAL;
  return 0;
}

int px_log_inclusion_check(const json_t *doc, const char *uid,
                           const uint8_t content_sha256[32], const px_log_verified_head_t *head,
                           uint64_t *index) {
  const json_t *idx = json_object_get(doc, "leaf_index");
  uint8_t hash[PX_MERKLE_HASH_LEN];
  /* received_at is the collector's to say; the bytes and the uid are ours. */
  if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
      px__leaf_hash(content_sha256, uid, json_string_value(json_object_get(doc, "received_at")),
                    hash) != 0)
    return -EINVAL;
  px_merkle_proof_t *proof = malloc(sizeof(*proof));
  if (proof == NULL)
    return -ENOMEM;
  int rc = px_log_path_parse(json_object_get(doc, "audit_path"), proof);
  *index = (uint64_t)json_integer_value(idx);
  if (rc == 0 &&
      px_merkle_verify_inclusion(*index, head->size, hash, proof, head->root) != 0)
    rc = -EBADMSG;
  free(proof);
  return rc;
}

int px_log_consistency_check(const json_t *doc, const px_log_verified_head_t *old,
                             const px_log_verified_head_t *now) {
  px_merkle_proof_t *p = malloc(sizeof(*p));
  if (p == NULL)
    return -ENOMEM;
  int rc = px_log_path_parse(json_object_get(doc, "consistency_path"), p);
  if (rc == 0 &&
      px_merkle_verify_consistency(old->size, now->size, old->root, now->root, p) != 0)
    rc = -EBADMSG;
  free(p);
  return rc;
}
