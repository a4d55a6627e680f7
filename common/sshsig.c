#include "common/sshsig.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/sshsig_keys.h"
#include "common/wire.h"

#define PX__MAGIC "SSHSIG"
#define PX__BEGIN "-----BEGIN SSH SIGNATURE-----"
#define PX__END "-----END SSH SIGNATURE-----"
#define PX__KEYTYPE "ssh-ed25519"

static void px__fingerprint(const uint8_t *blob, size_t n, char out[PX_KEY_ID_LEN]) {
  uint8_t md[32];
  unsigned md_len;
  char b64[45]; /* 44 base64 characters of 32 bytes, with padding */
  EVP_Digest(blob, n, md, &md_len, px__sshsig_md(false), NULL);
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

/* The bytes the key actually signs (PROTOCOL.sshsig "signed data"). The
 * reserved field is always empty here, whatever a signature's blob holds:
 * ssh-keygen signs and verifies it that way. */
static int px__signed_data(px_wbuf_t *b, const char *ns, const char *hash_alg,
                           const uint8_t *msg, size_t n) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned md_len;
  const EVP_MD *md_type = px__sshsig_md(strcmp(hash_alg, "sha512") == 0);
  if (EVP_Digest(msg, n, md, &md_len, md_type, NULL) != 1)
    return -EIO;
  px_wbuf_put(b, PX__MAGIC, 6);
  px_wbuf_put_cstring(b, ns);
  px_wbuf_put_string(b, "", 0); /* reserved */
  px_wbuf_put_cstring(b, hash_alg);
  px_wbuf_put_string(b, md, md_len);
  return b->failed ? -ENOMEM : 0;
}

/* The SSHSIG blob as ssh-keygen -Y sign lays it out: version 1, an empty
 * reserved field. */
static void px__blob_build(px_wbuf_t *out, const px_ssh_pubkey_t *pk, const char *ns,
                           const char *hash_alg, const uint8_t sig[64]) {
  px_wbuf_t sigblob;
  px_wbuf_init(&sigblob);
  px_wbuf_put_cstring(&sigblob, PX__KEYTYPE);
  px_wbuf_put_string(&sigblob, sig, 64);
  px_wbuf_put(out, PX__MAGIC, 6);
  px_wbuf_put_u32(out, 1);
  px_wbuf_put_string(out, pk->blob, sizeof(pk->blob));
  px_wbuf_put_cstring(out, ns);
  px_wbuf_put_string(out, "", 0);
  px_wbuf_put_cstring(out, hash_alg);
  px_wbuf_put_string(out, sigblob.data, sigblob.len);
  if (sigblob.failed)
    out->failed = true;
  px_wbuf_free(&sigblob);
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
  px_wbuf_t data, out;
  uint8_t sig[64];
  size_t sig_len = sizeof(sig);
  int rc = px_ssh_pubkey_from_pkey(priv, &pk);
  if (rc != 0)
    return rc;

  px_wbuf_init(&data);
  px_wbuf_init(&out);
  rc = px__signed_data(&data, ns, "sha512", msg, n);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (rc == 0 && (md == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, priv) != 1 ||
                  EVP_DigestSign(md, sig, &sig_len, data.data, data.len) != 1 || sig_len != 64))
    rc = -EIO;
  EVP_MD_CTX_free(md);
  if (rc == 0) {
    px__blob_build(&out, &pk, ns, "sha512", sig);
    if (out.failed)
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
  px_wbuf_free(&out);
  return rc;
}

/* ---- Reading a signature the way ssh-keygen -Y verify reads it ----------
 * OpenSSH 9.2 (sshsig.c, sshbuf, b64_pton, its Ed25519 code) is the
 * reference; tests/cli/test_sshsig_differential.py holds the two to the same
 * answer. */

#define PX__BEGIN_LINE PX__BEGIN "\n"
#define PX__END_MARK "\n" PX__END

/* What b64_pton skips anywhere: isspace() of the C locale (ssh-keygen runs
 * in C or a UTF-8 locale, where no byte above 0x7f is a space). */
static bool px__ssh_space(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

static int px__b64_digit(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Base64 as OpenSSH decodes an armour's body: whitespace is skipped
 * anywhere (any line width, CR, blank lines); the text ends either on a
 * whole quantum or with exactly the padding it needs, whitespace allowed
 * between and after the '=' but nothing else; the bits the padding leaves
 * unused must be zero. out holds n / 4 * 3 + 3 bytes. 0 or -EBADMSG. */
static int px__b64_decode_ssh(const unsigned char *in, size_t n, uint8_t *out, size_t *out_len) {
  uint32_t acc = 0;
  unsigned bits = 0;
  size_t digits = 0, len = 0, i = 0;
  for (; i < n && in[i] != '='; i++) {
    if (px__ssh_space(in[i]))
      continue;
    int v = px__b64_digit(in[i]);
    if (v < 0)
      return -EBADMSG;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    digits++;
    if (bits >= 8) {
      bits -= 8;
      out[len++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (i < n) {
    /* Two digits of a quantum need "==", three need "=". */
    if (digits % 4 < 2)
      return -EBADMSG;
    i++;
    if (digits % 4 == 2) {
      while (i < n && px__ssh_space(in[i]))
        i++;
      if (i == n || in[i] != '=')
        return -EBADMSG;
      i++;
    }
    for (; i < n; i++)
      if (!px__ssh_space(in[i]))
        return -EBADMSG;
  } else if (digits % 4 != 0) {
    return -EBADMSG;
  }
  if (acc != 0)
    return -EBADMSG; /* unused bits set: a second text for the same bytes */
  *out_len = len;
  return 0;
}

/* Armoured text to blob. The BEGIN line must open the text; the body ends
 * at the first "\n-----END SSH SIGNATURE-----" and whatever follows that is
 * ignored, as ssh-keygen ignores it (px_sshsig_verify_canonical gives the
 * armour without it). A NUL is allowed only as the body's last byte
 * (sshbuf_dup_string). On failure sets *why. */
static int px__dearmor(const char *text, size_t n, uint8_t **blob, size_t *blob_len,
                       const char **why) {
  const size_t hl = strlen(PX__BEGIN_LINE), el = strlen(PX__END_MARK);
  *blob = NULL;
  if (n < hl || memcmp(text, PX__BEGIN_LINE, hl) != 0) {
    *why = "not an armored SSH signature (no BEGIN SSH SIGNATURE line at the start)";
    return -EBADMSG;
  }
  const char *body = text + hl;
  const char *end = memmem(body, n - hl, PX__END_MARK, el);
  if (end == NULL) {
    *why = "not an armored SSH signature (no END SSH SIGNATURE line)";
    return -EBADMSG;
  }
  size_t len = (size_t)(end - body);
  const char *nul = memchr(body, '\0', len);
  if (nul != NULL && nul != end - 1) {
    *why = "a NUL byte inside the armor";
    return -EBADMSG;
  }
  if (nul != NULL)
    len--;
  *blob = malloc(len / 4 * 3 + 3);
  if (*blob == NULL) {
    *why = "out of memory";
    return -ENOMEM;
  }
  if (px__b64_decode_ssh((const unsigned char *)body, len, *blob, blob_len) != 0) {
    free(*blob);
    *blob = NULL;
    *why = "bad base64 inside the armor";
    return -EBADMSG;
  }
  return 0;
}

/* An SSH string's bytes taken as sshbuf_get_cstring takes them: a NUL is
 * allowed as the last byte (and is not part of the text), nowhere else.
 * 0 (with *len shortened) or -EBADMSG. */
static int px__cstring(const uint8_t *s, size_t *len) {
  const uint8_t *z = *len > 0 ? memchr(s, '\0', *len) : NULL;
  if (z != NULL && z != s + *len - 1)
    return -EBADMSG;
  if (z != NULL)
    (*len)--;
  return 0;
}

static int px__get_cstring(px_rbuf_t *r, const uint8_t **s, size_t *len) {
  if (px_rbuf_get_string(r, s, len) != 0)
    return -EBADMSG;
  return px__cstring(*s, len);
}

static bool px__is(const uint8_t *s, size_t len, const char *want) {
  return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* The Ed25519 group order L, little-endian. */
static const uint8_t px__order[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

/* OpenSSH's Ed25519 (SUPERCOP ref) refuses an S with any of its top three
 * bits set and reduces any other S modulo L; OpenSSL refuses S >= L. Such
 * an S is below 2^253 < 2L, so one subtraction gives the S OpenSSH
 * effectively checks, which OpenSSL then judges the same way (B has order
 * L), and the S a signer writes. 0 or -EPERM. */
static int px__reduce_s(uint8_t s[32]) {
  if ((s[31] & 0xe0) != 0)
    return -EPERM;
  int i = 31;
  while (i > 0 && s[i] == px__order[i])
    i--;
  if (s[i] < px__order[i])
    return 0;
  unsigned borrow = 0;
  for (i = 0; i < 32; i++) {
    unsigned d = (unsigned)s[i] - px__order[i] - borrow;
    s[i] = (uint8_t)d;
    borrow = (d >> 8) & 1;
  }
  return 0;
}

/* What a blob says, once it has been read as ssh-keygen reads it. */
typedef struct {
  const uint8_t *raw_key; /* 32 bytes, into the blob */
  char hash_alg[8];
  uint8_t sig[64]; /* R, then S reduced modulo L */
} px__sshsig_t;

#define PX__FAIL(code, text) \
  do {                       \
    *why = (text);           \
    return (code);           \
  } while (0)

/* Reads an SSHSIG blob. Version 0 or 1 (ssh-keygen refuses only a larger
 * one); the reserved field may hold anything (it is not signed); the
 * strings ssh-keygen reads as C strings may end in one NUL; nothing may
 * follow the signature, in the blob, the key or the signature blob. Only
 * Ed25519 keys: parallax's one deliberate difference from ssh-keygen. */
static int px__parse(const uint8_t *blob, size_t blob_len, const char *ns, px__sshsig_t *out,
                     const char **why) {
  px_rbuf_t r, k;
  uint32_t version;
  char magic[6];
  const uint8_t *pub, *sig_ns, *reserved, *hash_alg, *sigblob, *type, *raw, *sig;
  size_t pub_len, ns_len, reserved_len, hash_len, sigblob_len, type_len, raw_len, sig_len;

  px_rbuf_init(&r, blob, blob_len);
  if (px_rbuf_get(&r, magic, 6) != 0 || memcmp(magic, PX__MAGIC, 6) != 0)
    PX__FAIL(-EBADMSG, "missing SSHSIG preamble");
  if (px_rbuf_get_u32(&r, &version) != 0 || version > 1)
    PX__FAIL(-EBADMSG, "unsupported SSHSIG version");
  if (px_rbuf_get_string(&r, &pub, &pub_len) != 0 ||
      px_rbuf_get_string(&r, &sig_ns, &ns_len) != 0 ||
      px_rbuf_get_string(&r, &reserved, &reserved_len) != 0 ||
      px_rbuf_get_string(&r, &hash_alg, &hash_len) != 0 ||
      px_rbuf_get_string(&r, &sigblob, &sigblob_len) != 0)
    PX__FAIL(-EBADMSG, "truncated or malformed signature");
  (void)reserved;
  if (r.left != 0)
    PX__FAIL(-EBADMSG, "trailing bytes after the signature");

  px_rbuf_init(&k, pub, pub_len);
  if (px__get_cstring(&k, &type, &type_len) != 0)
    PX__FAIL(-EBADMSG, "malformed public key");
  if (!px__is(type, type_len, PX__KEYTYPE))
    PX__FAIL(-EBADMSG, "not an Ed25519 key");
  if (px_rbuf_get_string(&k, &raw, &raw_len) != 0 || raw_len != 32 || k.left != 0)
    PX__FAIL(-EBADMSG, "malformed Ed25519 key");

  if (px__cstring(sig_ns, &ns_len) != 0)
    PX__FAIL(-EBADMSG, "malformed namespace");
  if (!px__is(sig_ns, ns_len, ns))
    PX__FAIL(-EPERM, "signature is for another namespace");

  if (px__cstring(hash_alg, &hash_len) != 0 ||
      !(px__is(hash_alg, hash_len, "sha512") || px__is(hash_alg, hash_len, "sha256")))
    PX__FAIL(-EBADMSG, "unsupported hash algorithm");
  memcpy(out->hash_alg, hash_alg, 6);
  out->hash_alg[6] = '\0';

  /* OpenSSH takes a shorter signature too, and reads its missing bytes
   * from the start of the signed data; S would then have to end in bytes
   * the namespace fixes (at least 7), which no signer can arrange. */
  px_rbuf_init(&k, sigblob, sigblob_len);
  if (px__get_cstring(&k, &type, &type_len) != 0 || !px__is(type, type_len, PX__KEYTYPE) ||
      px_rbuf_get_string(&k, &sig, &sig_len) != 0 || sig_len != 64 || k.left != 0)
    PX__FAIL(-EBADMSG, "malformed Ed25519 signature");
  memcpy(out->sig, sig, 64);
  if (px__reduce_s(out->sig + 32) != 0)
    PX__FAIL(-EPERM, "signature does not verify");
  out->raw_key = raw;
  return 0;
}

#undef PX__FAIL
#define PX__FAIL(code, text) \
  do {                       \
    rc = (code);             \
    *why = (text);           \
    goto done;               \
  } while (0)

int px_sshsig_verify_canonical(const char *armored, size_t armored_len, const char *ns,
                               const uint8_t *msg, size_t n, px_ssh_pubkey_t *signer,
                               const char **why, char **canonical) {
  const char *unused;
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  px__sshsig_t s;
  px_wbuf_t data, out;
  px__sshsig_key_t key;
  bool held = false, verified = false;
  int rc;

  if (why == NULL)
    why = &unused;
  if (canonical != NULL)
    *canonical = NULL;
  px_wbuf_init(&data);
  px_wbuf_init(&out);
  rc = px__dearmor(armored, armored_len, &blob, &blob_len, why);
  if (rc != 0)
    goto done;
  rc = px__parse(blob, blob_len, ns, &s, why);
  if (rc != 0)
    goto done;
  if (px__signed_data(&data, ns, s.hash_alg, msg, n) != 0)
    PX__FAIL(-ENOMEM, "out of memory");
  /* The key comes from the signature's own blob, so a cached entry is
   * found only by the very bytes that signed: it saves building the
   * EVP_PKEY, its context and its fingerprint, never a verification. */
  if (px__sshsig_key_take(s.raw_key, &key) != 0)
    PX__FAIL(-ENOMEM, "out of memory");
  held = true;
  if (EVP_DigestVerify(key.md, s.sig, sizeof(s.sig), data.data, data.len) != 1)
    PX__FAIL(-EPERM, "signature does not verify");
  if (!key.have_pk) {
    if (px__pubkey_from_raw(s.raw_key, &key.pk) != 0)
      PX__FAIL(-ENOMEM, "out of memory");
    key.have_pk = true;
  }
  verified = true;
  if (canonical != NULL) {
    px__blob_build(&out, &key.pk, ns, s.hash_alg, s.sig);
    *canonical = out.failed ? NULL : px__armor(out.data, out.len);
    if (*canonical == NULL)
      PX__FAIL(-ENOMEM, "out of memory");
  }
  if (signer != NULL)
    *signer = key.pk;
  *why = NULL;
done:
  ERR_clear_error();
  if (held)
    px__sshsig_key_give(&key, verified);
  px_wbuf_free(&data);
  px_wbuf_free(&out);
  free(blob);
  return rc;
}

int px_sshsig_verify(const char *armored, size_t armored_len, const char *ns,
                     const uint8_t *msg, size_t n, px_ssh_pubkey_t *signer,
                     const char **why) {
  return px_sshsig_verify_canonical(armored, armored_len, ns, msg, n, signer, why, NULL);
}
