#ifndef PX_STH_H
#define PX_STH_H

/* Signed tree heads of the measurement log (docs/transparency.md). The
 * collector's own Ed25519 key lives only in a signer process
 * (common/keysigner.h) forked before any thread, which signs nothing but
 * a tree head in the exact form px_sth_text writes, in the SSHSIG
 * namespace parallax-sth-v1: `ssh-keygen -Y verify -n parallax-sth-v1`
 * checks one. */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "collector/store/store.h"
#include "common/keysigner.h"
#include "common/merkle.h"

#define PX_STH_NAMESPACE PX_MERKLE_STH_NAMESPACE
#define PX_STH_TEXT_MAX PX_MERKLE_STH_TEXT_MAX

/* The signed bytes: px_merkle_sth_text (common/merkle.h). */
int px_sth_text(uint64_t size, const uint8_t root[32], time_t timestamp, char *out, size_t n);

/* The signer's policy: exactly such a text, nothing else. */
extern const px_signer_policy_t px_sth_signer_policy;

typedef struct px_sth {
  uint64_t tree_size;
  uint8_t root[32];
  time_t timestamp;
  char *signature; /* armored SSHSIG over px_sth_text() */
} px_sth_t;

void px_sth_free(px_sth_t *h);

struct px_sth_signer;
/* sth as the store keeps it and the API shows it, signed by t's key:
 * h->public_key is the caller's to free (NULL when out of memory),
 * h->signature is sth's. */
void px_sth_as_head(const struct px_sth_signer *t, const px_sth_t *sth, px_log_head_t *h);

/* The collector's side: the signer and the latest head it signed. */
typedef struct px_sth_signer {
  px_signer_t signer;
  bool running;
  unsigned interval_s;
  pthread_mutex_t mu;
  px_sth_t latest; /* tree_size 0 and no signature until the first */
  bool have;
  bool looked;        /* for the head kept in the store at the first request */
  uint64_t signed_at; /* monotonic seconds of the latest signature */
} px_sth_signer_t;

/* Forks the signer for the key at key_path (created on first start, mode
 * 0600). Call before any thread starts. 0, or a negative errno with the
 * reason in err. */
int px_sth_signer_start(px_sth_signer_t *t, const char *key_path, unsigned interval_s, char *err,
                        size_t errlen);
void px_sth_signer_stop(px_sth_signer_t *t);

/* The latest signed head, copied into out (out->signature is the
 * caller's). The store's current head is signed first when none was yet,
 * or when the log has grown and the latest is at least interval_s old:
 * heads are signed at most every interval_s, and only when asked for.
 * Each new one is kept in the store (px_store_log_head_put), and after a
 * restart the kept one is served again while the log has not grown.
 * -ENOTSUP when the store keeps no log. */
int px_sth_latest(px_sth_signer_t *t, px_store_t *store, px_sth_t *out, char *err, size_t errlen);

#endif
