#ifndef PX_LOG_PROOF_H
#define PX_LOG_PROOF_H

/* A client's reading of the collector's measurement log answers
 * (docs/transparency.md, docs/api.md "Log"): every function takes the
 * JSON as the collector sent it, trusts none of it, and recomputes what
 * it checks (common/merkle.h). Used by `parallax audit` and `parallax
 * verify --log`; tests/fuzz/fuzz_log_proof.c feeds them hostile answers. */

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "common/merkle.h"
#include "common/sshsig.h"

typedef struct px_log_verified_head {
  uint64_t size;
  uint8_t root[PX_MERKLE_HASH_LEN];
  time_t timestamp;
  char key_id[PX_KEY_ID_LEN];
} px_log_verified_head_t;

/* A signed tree head (GET /api/v1/log/sth) whose SSHSIG, namespace
 * parallax-sth-v1, is good and by the key it names. 0, or -EBADMSG with
 * *why set (static text). */
int px_log_head_parse(const json_t *doc, px_log_verified_head_t *h, const char **why);

/* A JSON array of at most PX_MERKLE_PROOF_MAX lower-case hex hashes.
 * 0 or -EINVAL. */
int px_log_path_parse(const json_t *a, px_merkle_proof_t *p);

/* One element of /log/leaves: its leaf hash, recomputed from its fields
 * (the collector's own leaf_hash is ignored), the measurement's SHA-256
 * and its uid (uid_len bytes). 0 or -EINVAL. */
int px_log_leaf_parse(const json_t *leaf, uint8_t hash[PX_MERKLE_HASH_LEN],
                      uint8_t content_sha256[32], char *uid, size_t uid_len);

/* An inclusion answer (/log/proof/inclusion) for the measurement uid
 * whose bytes hash to content_sha256, against head. 0 when proven
 * (*index its leaf), -EINVAL when the answer is malformed, -EBADMSG when
 * the proof does not lead to head's root. */
int px_log_inclusion_check(const json_t *doc, const char *uid,
                           const uint8_t content_sha256[32], const px_log_verified_head_t *head,
                           uint64_t *index);

/* A consistency answer (/log/proof/consistency) from old to now (old's
 * size < now's). 0, -EINVAL (malformed), -EBADMSG (now does not extend
 * old). */
int px_log_consistency_check(const json_t *doc, const px_log_verified_head_t *old,
                             const px_log_verified_head_t *now);

#endif
