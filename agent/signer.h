#ifndef PX_SIGNER_H
#define PX_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/sshsig.h"

/* Key hygiene in the OpenSSH spirit: the private key lives only in a small
 * signer process forked before any network work. It loads (or creates) the
 * key, makes itself non-dumpable, closes every other descriptor and then
 * does one thing: sign the bytes it is sent, in the measurement namespace,
 * over a socketpair. The process that parses DNS answers, TLS peers and
 * collector replies never has the key in its memory. */
typedef struct px_signer {
  pid_t pid;
  int fd;
  px_ssh_pubkey_t pub; /* the signer's public key and key id */
} px_signer_t;

/* Forks the signer for the key at key_path (created first when create is
 * true and the file does not exist). Call before starting threads or
 * loops. Returns 0, or a negative error with a one-line reason in err. */
int px_signer_start(px_signer_t *s, const char *key_path, bool create,
                    char *err, size_t errlen);

/* Signs msg; *armored is the SSHSIG text (caller frees). */
int px_signer_sign(px_signer_t *s, const void *msg, size_t n, char **armored,
                   char *err, size_t errlen);

/* Ends the signer (it exits on end of file) and reaps it. */
void px_signer_stop(px_signer_t *s);

#endif
