/* The verifier's memory of recently seen Ed25519 keys (sshsig_keys.h):
 * a collector verifies thousands of measurements a second from a few
 * hundred keys, and building an EVP_PKEY and a verification context for
 * each is a fetch from the provider store and a handful of allocations
 * every time. */
#include "common/sshsig_keys.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* 256 sets of 4: 1,024 keys. A set is picked by the key's first bytes;
 * a key is the signer's choice, so a hostile uploader can crowd one set,
 * which only costs the crowded keys their cache entries. */
#define PX__SETS 256
#define PX__WAYS 4
/* Contexts kept per key for reuse: how many threads verify one key at once. */
#define PX__IDLE_MAX 4

typedef struct {
  bool used;
  uint8_t raw[32];
  px_ssh_pubkey_t pk;
  EVP_PKEY *key; /* one reference ours; a verifier in progress holds another */
  EVP_MD_CTX *idle[PX__IDLE_MAX];
  unsigned nidle;
  uint64_t last_use;
} px__entry_t;

static pthread_mutex_t px__mu = PTHREAD_MUTEX_INITIALIZER;
static px__entry_t px__cache[PX__SETS][PX__WAYS];
static uint64_t px__clock;
static px_sshsig_key_stats_t px__stats;
static unsigned px__nsets = PX__SETS; /* in use: a test bounds the cache lower */

static pthread_once_t px__once = PTHREAD_ONCE_INIT;
static EVP_MD *px__sha256, *px__sha512;

static void px__fetch(void) {
  px__sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  px__sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
}

const EVP_MD *px__sshsig_md(bool sha512) {
  pthread_once(&px__once, px__fetch);
  const EVP_MD *md = sha512 ? px__sha512 : px__sha256;
  /* A provider that failed to load at the first call: fall back to the
   * implicit fetch rather than refuse every signature for the process's life. */
  if (md == NULL)
    md = sha512 ? EVP_sha512() : EVP_sha256();
  return md;
}

static px__entry_t *px__set(const uint8_t raw[32]) {
  return px__cache[((unsigned)raw[0] | (unsigned)raw[1] << 8) % px__nsets];
}

static void px__entry_clear(px__entry_t *e) {
  for (unsigned i = 0; i < e->nidle; i++)
    EVP_MD_CTX_free(e->idle[i]);
  EVP_PKEY_free(e->key);
  memset(e, 0, sizeof(*e));
}

static EVP_MD_CTX *px__new_ctx(EVP_PKEY *key) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) != 1) {
    EVP_MD_CTX_free(md);
    md = NULL;
  }
  return md;
}

int px__sshsig_key_take(const uint8_t raw[32], px__sshsig_key_t *out) {
  memset(out, 0, sizeof(*out));
  memcpy(out->raw, raw, 32);
  pthread_mutex_lock(&px__mu);
  px__entry_t *set = px__set(raw);
  for (unsigned w = 0; w < PX__WAYS; w++) {
    px__entry_t *e = &set[w];
    if (e->used && memcmp(e->raw, raw, 32) == 0) {
      e->last_use = ++px__clock;
      px__stats.hits++;
      out->key = e->key;
      EVP_PKEY_up_ref(out->key);
      out->pk = e->pk;
      out->have_pk = true;
      if (e->nidle > 0)
        out->md = e->idle[--e->nidle];
      break;
    }
  }
  if (out->key == NULL)
    px__stats.misses++;
  pthread_mutex_unlock(&px__mu);

  if (out->key == NULL) {
    out->key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32);
    if (out->key == NULL)
      return -ENOMEM;
  }
  if (out->md == NULL) {
    out->md = px__new_ctx(out->key);
    if (out->md == NULL) {
      px__sshsig_key_give(out, false);
      return -ENOMEM;
    }
  }
  return 0;
}

void px__sshsig_key_give(px__sshsig_key_t *k, bool verified) {
  EVP_MD_CTX *md = k->md;
  EVP_PKEY *key = k->key;
  k->md = NULL;
  k->key = NULL;
  if (key == NULL) {
    EVP_MD_CTX_free(md);
    return;
  }
  pthread_mutex_lock(&px__mu);
  px__entry_t *set = px__set(k->raw), *e = NULL;
  /* By the key's bytes: two threads that missed the same key at once
   * built one EVP_PKEY each, and the second finds the first's entry. */
  for (unsigned w = 0; w < PX__WAYS && e == NULL; w++)
    if (set[w].used && memcmp(set[w].raw, k->raw, 32) == 0)
      e = &set[w];
  /* Only a key that has signed something valid earns a place: keys that
   * never verify must not push out the ones that do. */
  if (e == NULL && verified && k->have_pk) {
    px__entry_t *victim = &set[0];
    for (unsigned w = 0; w < PX__WAYS; w++) {
      if (!set[w].used) {
        victim = &set[w];
        break;
      }
      if (set[w].last_use < victim->last_use)
        victim = &set[w];
    }
    if (victim->used) {
      px__entry_clear(victim);
      px__stats.evictions++;
      px__stats.entries--;
    }
    victim->used = true;
    memcpy(victim->raw, k->raw, 32);
    victim->pk = k->pk;
    victim->key = key;
    EVP_PKEY_up_ref(key);
    victim->last_use = ++px__clock;
    px__stats.entries++;
    e = victim;
  }
  if (e != NULL && md != NULL && e->nidle < PX__IDLE_MAX) {
    e->idle[e->nidle++] = md;
    md = NULL;
  }
  pthread_mutex_unlock(&px__mu);
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
}

void px_sshsig_key_stats(px_sshsig_key_stats_t *out) {
  pthread_mutex_lock(&px__mu);
  *out = px__stats;
  pthread_mutex_unlock(&px__mu);
}

void px_sshsig_keys_reset(size_t capacity) {
  pthread_mutex_lock(&px__mu);
  for (unsigned s = 0; s < PX__SETS; s++)
    for (unsigned w = 0; w < PX__WAYS; w++)
      if (px__cache[s][w].used)
        px__entry_clear(&px__cache[s][w]);
  memset(&px__stats, 0, sizeof(px__stats));
  size_t sets = (capacity + PX__WAYS - 1) / PX__WAYS;
  px__nsets = sets == 0 || sets > PX__SETS ? PX__SETS : (unsigned)sets;
  pthread_mutex_unlock(&px__mu);
}
