#ifndef PX_SSHSIG_H
#define PX_SSHSIG_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

/* OpenSSH signatures (PROTOCOL.sshsig) with Ed25519 keys, so that anyone
 * can verify a measurement years later with nothing but
 * `ssh-keygen -Y verify`. */

#define PX_SSHSIG_NAMESPACE "parallax-measurement-v1"
/* A key rotation statement (POST /api/v1/key_rotation), signed by the old
 * key and by the new one. */
#define PX_SSHSIG_ROTATION_NAMESPACE "parallax-key-rotation-v1"

/* "string ssh-ed25519, string key(32)": 4 + 11 + 4 + 32 bytes. */
#define PX_SSH_ED25519_BLOB_LEN 51
/* "SHA256:" + 43 base64 characters + NUL. */
#define PX_KEY_ID_LEN 51

typedef struct px_ssh_pubkey {
  uint8_t blob[PX_SSH_ED25519_BLOB_LEN];
  char key_id[PX_KEY_ID_LEN]; /* OpenSSH SHA256: fingerprint */
} px_ssh_pubkey_t;

/* The public half of an Ed25519 EVP_PKEY in SSH form. 0 or -EINVAL. */
int px_ssh_pubkey_from_pkey(EVP_PKEY *key, px_ssh_pubkey_t *out);

/* Parses "ssh-ed25519 AAAA… [comment]" (or just the base64 blob).
 * 0 or -EINVAL. */
int px_ssh_pubkey_parse(const char *text, px_ssh_pubkey_t *out);

/* "ssh-ed25519 <base64 blob>" (caller frees). */
char *px_ssh_pubkey_line(const px_ssh_pubkey_t *pk);

/* Signs msg under namespace ns; *armored is the
 * "-----BEGIN SSH SIGNATURE-----" text with a trailing newline, as
 * ssh-keygen -Y sign writes it (caller frees). Returns 0 or a negative
 * error. */
int px_sshsig_sign(EVP_PKEY *priv, const char *ns, const uint8_t *msg,
                   size_t n, char **armored);

/* Verifies an armored signature of msg under namespace ns, accepting
 * exactly what `ssh-keygen -Y verify` (OpenSSH 9.2) accepts, but for Ed25519
 * keys only (docs/signatures.md lists the rules). On success fills *signer
 * (may be NULL) with the key that signed. On failure returns -EBADMSG
 * (malformed), -EPERM (does not verify, or another namespace) or -ENOMEM,
 * and sets *why (may be NULL) to a static phrase. */
int px_sshsig_verify(const char *armored, size_t armored_len, const char *ns,
                     const uint8_t *msg, size_t n, px_ssh_pubkey_t *signer,
                     const char **why);

/* px_sshsig_verify, and on success *canonical (caller frees; NULL on
 * failure): the armor `ssh-keygen -Y sign` writes for this signature, i.e.
 * the BEGIN line, the base64 of a version 1 blob with the same key,
 * namespace, hash algorithm and signature but an empty reserved field (and
 * S reduced modulo the group order), wrapped at 70 columns, the END line
 * and a newline. It carries none of the bytes ssh-keygen ignores or does
 * not check (text around the armor, the reserved field, the version), so
 * it is what to store and serve; it verifies wherever the upload did. */
int px_sshsig_verify_canonical(const char *armored, size_t armored_len, const char *ns,
                               const uint8_t *msg, size_t n, px_ssh_pubkey_t *signer,
                               const char **why, char **canonical);

#endif
