#include "common/sshsig.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/wire.h"

#define PX__MAGIC "SSHSIG"
#define PX__BEGIN "-----BEGIN SSH SIGNATURE-----"
#define PX__END "-----END SSH SIGNATURE-----"
#define PX__KEYTYPE "ssh-ed25519"

static void px__fingerprint(const uint8_t *blob, size_t n, char out[PX_KEY_ID_LEN]) {
  uint8_t md[32];
  unsigned md_len;
  char b64[45]; /* 44 base64 characters of 32 bytes, with padding */
  EVP_Digest(blob, n, md, &md_len, EVP_sha256(), NULL);
  px_base64_encode(md, sizeof(md), b64);
  /* OpenSSH prints the digest without padding: 43 characters. */
  memcpy(out, "SHA256:", 7);
  memcpy(out + 7, b64, 43);
  out[50] = '\0';
}

static int px__pubkey_from_raw(const uint8_t raw[32], px_ssh_pubkey_t *out) {
  px_wbuf_t b;
  px_wbuf_init(&b);
  px_wbuf_put_cstring(&b, PX__KEYTYPE);
  px_wbuf_put_string(&b, raw, 32);
  if (b.failed || b.len != PX_SSH_ED25519_BLOB_LEN) {
    px_wbuf_free(&b);
    return -ENOMEM;
  }
  memcpy(out->blob, b.data, b.len);
  px_wbuf_free(&b);
  px__fingerprint(out->blob, sizeof(out->blob), out->key_id);
  return 0;
}

int px_ssh_pubkey_from_pkey(EVP_PKEY *key, px_ssh_pubkey_t *out) {
  uint8_t raw[32];
  size_t len = sizeof(raw);
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 ||
      EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != 32)
    return -EINVAL;
  return px__pubkey_from_raw(raw, out);
}

/* Splits the blob of an SSH Ed25519 public key into its raw 32 bytes. */
static int px__blob_raw(const uint8_t *blob, size_t n, const uint8_t **raw) {
  px_rbuf_t r;
  size_t len;
  px_rbuf_init(&r, blob, n);
  if (px_rbuf_expect_cstring(&r, PX__KEYTYPE) != 0 ||
      px_rbuf_get_string(&r, raw, &len) != 0 || len != 32 || r.left != 0)
    return -EINVAL;
  return 0;
}

int px_ssh_pubkey_parse(const char *text, px_ssh_pubkey_t *out) {
  while (isspace((unsigned char)*text))
    text++;
  if (strncmp(text, PX__KEYTYPE " ", strlen(PX__KEYTYPE) + 1) == 0)
    text += strlen(PX__KEYTYPE) + 1;
  while (*text == ' ')
    text++;
  size_t n = strcspn(text, " \t\r\n");
  uint8_t blob[128];
  size_t blob_len;
  const uint8_t *raw;
  if (px_base64_decode(text, n, blob, sizeof(blob), &blob_len) != 0 ||
      px__blob_raw(blob, blob_len, &raw) != 0)
    return -EINVAL;
  return px__pubkey_from_raw(raw, out);
}

char *px_ssh_pubkey_line(const px_ssh_pubkey_t *pk) {
  char b64[72]; /* base64 of 51 bytes is 68 characters */
  px_base64_encode(pk->blob, sizeof(pk->blob), b64);
  size_t n = strlen(PX__KEYTYPE) + 1 + strlen(b64) + 1;
  char *line = malloc(n);
  if (line != NULL)
    snprintf(line, n, "%s %s", PX__KEYTYPE, b64);
  return line;
}

/* The bytes the key actually signs (PROTOCOL.sshsig "signed data"). */
static int px__signed_data(px_wbuf_t *b, const char *ns, const char *hash_alg,
                           const uint8_t *msg, size_t n) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned md_len;
  const EVP_MD *md_type = strcmp(hash_alg, "sha512") == 0 ? EVP_sha512() : EVP_sha256();
  if (EVP_Digest(msg, n, md, &md_len, md_type, NULL) != 1)
    return -EIO;
  px_wbuf_put(b, PX__MAGIC, 6);
  px_wbuf_put_cstring(b, ns);
  px_wbuf_put_string(b, "", 0); /* reserved */
  px_wbuf_put_cstring(b, hash_alg);
  px_wbuf_put_string(b, md, md_len);
  return b->failed ? -ENOMEM : 0;
}

static char *px__armor(const uint8_t *blob, size_t n) {
  char *b64 = px_base64_encode_alloc(blob, n);
  if (b64 == NULL)
    return NULL;
  size_t len = strlen(b64);
  /* ssh-keygen wraps at 70 columns. */
  size_t cap = sizeof(PX__BEGIN) + sizeof(PX__END) + len + len / 70 + 8;
  char *out = malloc(cap), *o = out;
  if (out != NULL) {
    o += sprintf(o, "%s\n", PX__BEGIN);
    for (size_t i = 0; i < len; i += 70) {
      size_t k = len - i < 70 ? len - i : 70;
      memcpy(o, b64 + i, k);
      o += k;
      *o++ = '\n';
    }
    sprintf(o, "%s\n", PX__END);
  }
  free(b64);
  return out;
}

int px_sshsig_sign(EVP_PKEY *priv, const char *ns, const uint8_t *msg,
                   size_t n, char **armored) {
  px_ssh_pubkey_t pk;
  px_wbuf_t data, sigblob, out;
  uint8_t sig[64];
  size_t sig_len = sizeof(sig);
  int rc = px_ssh_pubkey_from_pkey(priv, &pk);
  if (rc != 0)
    return rc;

  px_wbuf_init(&data);
  px_wbuf_init(&sigblob);
  px_wbuf_init(&out);
  rc = px__signed_data(&data, ns, "sha512", msg, n);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (rc == 0 && (md == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, priv) != 1 ||
                  EVP_DigestSign(md, sig, &sig_len, data.data, data.len) != 1 || sig_len != 64))
    rc = -EIO;
  EVP_MD_CTX_free(md);
  if (rc == 0) {
    px_wbuf_put_cstring(&sigblob, PX__KEYTYPE);
    px_wbuf_put_string(&sigblob, sig, sig_len);
    px_wbuf_put(&out, PX__MAGIC, 6);
    px_wbuf_put_u32(&out, 1);
    px_wbuf_put_string(&out, pk.blob, sizeof(pk.blob));
    px_wbuf_put_cstring(&out, ns);
    px_wbuf_put_string(&out, "", 0);
    px_wbuf_put_cstring(&out, "sha512");
    px_wbuf_put_string(&out, sigblob.data, sigblob.len);
    if (sigblob.failed || out.failed)
      rc = -ENOMEM;
  }
  if (rc == 0) {
    *armored = px__armor(out.data, out.len);
    if (*armored == NULL)
      rc = -ENOMEM;
  }
  ERR_clear_error();
  OPENSSL_cleanse(data.data, data.len);
  px_wbuf_free(&data);
  px_wbuf_free(&sigblob);
  px_wbuf_free(&out);
  return rc;
}

/* Armored text to blob: the lines between the markers, base64, any line
 * width, CR/LF tolerated. */
static int px__dearmor(const char *text, size_t n, uint8_t **blob, size_t *blob_len) {
  const char *end = text + n;
  const char *begin = NULL;
  for (const char *p = text; p + strlen(PX__BEGIN) <= end; p++)
    if (memcmp(p, PX__BEGIN, strlen(PX__BEGIN)) == 0) {
      begin = p + strlen(PX__BEGIN);
      break;
    }
  if (begin == NULL)
    return -EBADMSG;
  char *b64 = malloc(n + 1);
  size_t k = 0;
  const char *p = begin;
  bool closed = false;
  if (b64 == NULL)
    return -ENOMEM;
  while (p < end) {
    if (*p == '-') {
      closed = (size_t)(end - p) >= strlen(PX__END) && memcmp(p, PX__END, strlen(PX__END)) == 0;
      break;
    }
    if (*p != '\n' && *p != '\r')
      b64[k++] = *p;
    p++;
  }
  int rc = -EBADMSG;
  if (closed) {
    *blob = malloc(k + 1);
    if (*blob == NULL)
      rc = -ENOMEM;
    else if (px_base64_decode(b64, k, *blob, k + 1, blob_len) == 0)
      rc = 0;
    else {
      free(*blob);
      *blob = NULL;
    }
  }
  free(b64);
  return rc;
}

#define PX__FAIL(code, text) \
  do {                       \
    rc = (code);             \
    *why = (text);           \
    goto done;               \
  } while (0)

int px_sshsig_verify(const char *armored, size_t armored_len, const char *ns,
                     const uint8_t *msg, size_t n, px_ssh_pubkey_t *signer,
                     const char **why) {
  const char *unused;
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  px_rbuf_t r;
  uint32_t version;
  const uint8_t *pub, *sig_ns, *reserved, *hash_alg, *sigblob, *raw, *sig;
  size_t pub_len, ns_len, reserved_len, hash_len, sigblob_len, sig_len;
  px_wbuf_t data;
  EVP_PKEY *key = NULL;
  EVP_MD_CTX *md = NULL;
  int rc = 0;

  if (why == NULL)
    why = &unused;
  px_wbuf_init(&data);
  if (armored_len >= 6 && memcmp(armored, PX__MAGIC, 6) == 0) {
    blob = malloc(armored_len);
    if (blob == NULL)
      PX__FAIL(-ENOMEM, "out of memory");
    memcpy(blob, armored, armored_len);
    blob_len = armored_len;
  } else if (px__dearmor(armored, armored_len, &blob, &blob_len) != 0) {
    PX__FAIL(-EBADMSG, "not an armored SSH signature");
  }

  px_rbuf_init(&r, blob, blob_len);
  char magic[6];
  if (px_rbuf_get(&r, magic, 6) != 0 || memcmp(magic, PX__MAGIC, 6) != 0)
    PX__FAIL(-EBADMSG, "missing SSHSIG preamble");
  if (px_rbuf_get_u32(&r, &version) != 0 || version != 1)
    PX__FAIL(-EBADMSG, "unsupported SSHSIG version");
  if (px_rbuf_get_string(&r, &pub, &pub_len) != 0 ||
      px_rbuf_get_string(&r, &sig_ns, &ns_len) != 0 ||
      px_rbuf_get_string(&r, &reserved, &reserved_len) != 0 ||
      px_rbuf_get_string(&r, &hash_alg, &hash_len) != 0 ||
      px_rbuf_get_string(&r, &sigblob, &sigblob_len) != 0 || r.left != 0)
    PX__FAIL(-EBADMSG, "truncated or malformed signature");
  if (px__blob_raw(pub, pub_len, &raw) != 0)
    PX__FAIL(-EBADMSG, "not an Ed25519 key");
  if (ns_len != strlen(ns) || memcmp(sig_ns, ns, ns_len) != 0)
    PX__FAIL(-EPERM, "signature is for another namespace");
  (void)reserved;
  char alg[8] = "";
  if (hash_len == 6 && memcmp(hash_alg, "sha512", 6) == 0)
    strcpy(alg, "sha512");
  else if (hash_len == 6 && memcmp(hash_alg, "sha256", 6) == 0)
    strcpy(alg, "sha256");
  else
    PX__FAIL(-EBADMSG, "unsupported hash algorithm");

  px_rbuf_init(&r, sigblob, sigblob_len);
  if (px_rbuf_expect_cstring(&r, PX__KEYTYPE) != 0 ||
      px_rbuf_get_string(&r, &sig, &sig_len) != 0 || sig_len != 64 || r.left != 0)
    PX__FAIL(-EBADMSG, "malformed Ed25519 signature");

  if (px__signed_data(&data, ns, alg, msg, n) != 0)
    PX__FAIL(-ENOMEM, "out of memory");
  key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32);
  md = EVP_MD_CTX_new();
  if (key == NULL || md == NULL)
    PX__FAIL(-ENOMEM, "out of memory");
  if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) != 1 ||
      EVP_DigestVerify(md, sig, sig_len, data.data, data.len) != 1)
    PX__FAIL(-EPERM, "signature does not verify");
  if (signer != NULL && px__pubkey_from_raw(raw, signer) != 0)
    PX__FAIL(-ENOMEM, "out of memory");
  *why = NULL;
done:
  ERR_clear_error();
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
  px_wbuf_free(&data);
  free(blob);
  return rc;
}
