#ifndef PX_ALLOWED_SIGNERS_H
#define PX_ALLOWED_SIGNERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "common/sshsig.h"

/* OpenSSH allowed_signers (ssh-keygen(1), ALLOWED SIGNERS): one key per
 * line, "principals [options] keytype base64-key [comment]". We read the
 * options that matter for verification: namespaces, valid-after,
 * valid-before. Keys other than ssh-ed25519 are skipped, not refused. */
typedef struct px_allowed_signer {
  char *principals;
  char *namespaces;   /* NULL: any */
  time_t valid_after; /* 0: no bound */
  time_t valid_before;
  px_ssh_pubkey_t key;
} px_allowed_signer_t;

typedef struct px_allowed_signers {
  px_allowed_signer_t *v;
  size_t n;
} px_allowed_signers_t;

/* Parses the file. On a malformed line returns -EINVAL with "PATH:LINE:
 * reason" in err. */
int px_allowed_signers_load(const char *path, px_allowed_signers_t *out,
                            char *err, size_t errlen);
/* The same from an open stream; path names it in messages. (The fuzzers
 * feed it from memory.) */
int px_allowed_signers_load_stream(FILE *f, const char *path, px_allowed_signers_t *out,
                                   char *err, size_t errlen);
void px_allowed_signers_free(px_allowed_signers_t *s);

/* The entry that allows key to sign in namespace ns at time at, or NULL. */
const px_allowed_signer_t *px_allowed_signers_find(const px_allowed_signers_t *s,
                                                   const px_ssh_pubkey_t *key,
                                                   const char *ns, time_t at);

/* "YYYYMMDD[HHMM[SS]][Z]" as OpenSSH writes validity times (local time
 * unless Z; we read them as UTC when Z is given). 0 or -EINVAL. */
int px_allowed_signers_parse_time(const char *s, time_t *out);

#endif
