#ifndef PX_KEYSIGNER_H
#define PX_KEYSIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/sshsig.h"

/* Key hygiene in the OpenSSH spirit: the private key lives only in a small
 * signer process forked before any network work. It loads (or creates) the
 * key, makes itself non-dumpable, closes every other descriptor and then
 * does one thing: sign the bytes it is sent, in its policy's namespace,
 * over a socketpair, when its policy lets them through. The process that parses DNS answers, TLS peers and
 * collector replies never has the key in its memory. */
typedef struct px_signer {
  pid_t pid;
  int fd;
  size_t max_message;  /* the policy's bound, checked before sending */
  px_ssh_pubkey_t pub; /* the signer's public key and key id */
} px_signer_t;

/* The largest message any signer takes (a policy may take less). */
#define PX_SIGNER_MAX_MESSAGE (8u << 20)

/* What a signer will sign: the SSHSIG namespace, the largest message, and
 * a check run in the signer process on every message before it is signed
 * (0, or -EINVAL / -EMSGSIZE with the reason in why). The agent's signs
 * its measurement lines (agent/signer_policy.h), the collector's its tree
 * heads (collector/log/sth.h). */
typedef struct px_signer_policy {
  const char *namespace;
  size_t max_message;
  int (*check)(const char *msg, size_t n, char *why, size_t whylen);
} px_signer_policy_t;

/* Forks the signer for the key at key_path (created first when create is
 * true and the file does not exist). Call before starting threads or
 * loops. policy must outlive the signer. Returns 0, or a negative error
 * with a one-line reason in err. */
int px_keysigner_start(px_signer_t *s, const char *key_path, bool create,
                       const px_signer_policy_t *policy, char *err, size_t errlen);

/* Signs msg; *armored is the SSHSIG text (caller frees). -EINVAL when the
 * policy refused msg, another negative error when the signer failed. */
int px_signer_sign(px_signer_t *s, const void *msg, size_t n, char **armored,
                   char *err, size_t errlen);

/* Ends the signer (it exits on end of file) and reaps it. */
void px_signer_stop(px_signer_t *s);

#endif
