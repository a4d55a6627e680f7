#ifndef PX_KEYFILE_H
#define PX_KEYFILE_H

#include <openssl/evp.h>
#include <stddef.h>

#include "common/sshsig.h"

/* The agent's Ed25519 identity: PATH holds the private key (PKCS#8 PEM,
 * mode 0600), PATH.pub the OpenSSH "ssh-ed25519 …" line. */

/* Creates a new key; refuses to overwrite (-EEXIST). */
int px_key_generate(const char *path, px_ssh_pubkey_t *pub, char *err,
                    size_t errlen);

/* Loads the private key, refusing, like ssh, a file that others can read
 * or that another user owns. */
int px_key_load(const char *path, EVP_PKEY **out, char *err, size_t errlen);

#endif
