#ifndef PX_SSHSIG_KEYS_H
#define PX_SSHSIG_KEYS_H

/* A bounded, thread-safe cache of the Ed25519 keys signatures were
 * verified with (common/sshsig_keys.c), and the digests fetched once per
 * process. Used by px_sshsig_verify*; the rest is for tests and metrics. */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sshsig.h"

typedef struct px_sshsig_key_stats {
  uint64_t hits, misses, evictions;
  size_t entries;
} px_sshsig_key_stats_t;

void px_sshsig_key_stats(px_sshsig_key_stats_t *out);
/* Empties the cache and bounds it to capacity keys, rounded up to a
 * multiple of 4 (0: the built-in 1,024, also the most). For tests. */
void px_sshsig_keys_reset(size_t capacity);

/* Internal to common/sshsig*.c. */

/* SHA-512 (or SHA-256), fetched once per process. */
const EVP_MD *px__sshsig_md(bool sha512);

/* One verifier's hold on a key: its EVP_PKEY (a reference of the
 * verifier's own) and a verification context initialised with it, used
 * by this thread only until px__sshsig_key_give. */
typedef struct px__sshsig_key {
  uint8_t raw[32];
  EVP_PKEY *key;
  EVP_MD_CTX *md;
  px_ssh_pubkey_t pk; /* filled by the caller when have_pk is false */
  bool have_pk;
} px__sshsig_key_t;

/* The cached key of raw, or a new one. 0 or -ENOMEM (nothing held). */
int px__sshsig_key_take(const uint8_t raw[32], px__sshsig_key_t *out);
/* Gives k back: its context stays for the next verifier of the key; a
 * key not yet cached is cached only when verified (a signature checked
 * out with it) and k->pk is filled. */
void px__sshsig_key_give(px__sshsig_key_t *k, bool verified);

#endif
