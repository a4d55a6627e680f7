/* SSHSIG signing and verification, allowed_signers parsing, and interop
 * with the real ssh-keygen in both directions. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/keyfile.h"
#include "common/allowed_signers.h"
#include "common/encoding.h"
#include "common/sshsig.h"
#include "common/sshsig_keys.h"
#include "common/wire.h"
#include "tests/runner.h"

static const char px__msg[] = "{\"input\":\"www.icloud.com\",\"probe_cc\":\"CN\"}";


static void px__write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static char *px__read(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = calloc(1, 65536);
  size_t n = fread(buf, 1, 65535, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

PX_TEST(sshsig_roundtrip_and_rejections) {
  (void)state;
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t pub, got;
  char *sig = NULL, *sig2 = NULL;
  const char *why;
  size_t n = strlen(px__msg);

  assert_int_equal(px_ssh_pubkey_from_pkey(key, &pub), 0);
  assert_int_equal(strncmp(pub.key_id, "SHA256:", 7), 0);
  assert_int_equal(strlen(pub.key_id), 50);
  assert_int_equal(px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n, &sig), 0);
  assert_int_equal(strncmp(sig, "-----BEGIN SSH SIGNATURE-----\n", 30), 0);
  assert_non_null(strstr(sig, "\n-----END SSH SIGNATURE-----\n"));
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)px__msg, n, &got, &why), 0);
  assert_string_equal(got.key_id, pub.key_id);
  assert_memory_equal(got.blob, pub.blob, sizeof(pub.blob));

  /* One changed byte of the message. */
  char tampered[sizeof(px__msg)];
  memcpy(tampered, px__msg, sizeof(px__msg));
  tampered[n - 3] = 'X';
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)tampered, n, NULL, &why), -EPERM);
  /* Another namespace, either way round. */
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), "file", (const uint8_t *)px__msg, n, NULL,
                                    &why), -EPERM);
  assert_int_equal(px_sshsig_sign(key, "file", (const uint8_t *)px__msg, n, &sig2), 0);
  assert_int_equal(px_sshsig_verify(sig2, strlen(sig2), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)px__msg, n, NULL, &why), -EPERM);
  free(sig2);
  /* The public key in the blob swapped for another: the signature no
   * longer verifies under the key it names. */
  px_ssh_pubkey_t pub2;
  assert_int_equal(px_ssh_pubkey_from_pkey(other, &pub2), 0);
  assert_int_equal(px_sshsig_sign(other, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n, &sig2), 0);
  /* Every truncation of the armor is refused, never accepted, never a
   * crash. */
  for (size_t cut = 0; cut < strlen(sig); cut += 7) {
    int rc = px_sshsig_verify(sig, cut, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n, NULL, &why);
    assert_true(rc == -EBADMSG || rc == -EPERM);
  }
  assert_int_equal(px_sshsig_verify("garbage", 7, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n,
                                    NULL, &why), -EBADMSG);
  assert_int_equal(px_sshsig_verify("SSHSIG", 6, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg, n,
                                    NULL, &why), -EBADMSG);

  /* The public key line round-trips. */
  char *line = px_ssh_pubkey_line(&pub);
  assert_int_equal(strncmp(line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 32), 0);
  assert_int_equal(px_ssh_pubkey_parse(line, &got), 0);
  assert_string_equal(got.key_id, pub.key_id);
  assert_int_equal(px_ssh_pubkey_parse("ssh-ed25519 AAAA", &got), -EINVAL);
  assert_int_equal(px_ssh_pubkey_parse("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", &got), -EINVAL);
  free(line);
  free(sig);
  free(sig2);
  EVP_PKEY_free(key);
  EVP_PKEY_free(other);
}

PX_TEST(sshsig_interop_with_ssh_keygen) {
  (void)state;
  if (system("command -v ssh-keygen >/dev/null") != 0)
    px_test_skip("ssh-keygen is not installed");
  char *d = px_test_tmpdir(), path[512], cmd[2048];
  px_ssh_pubkey_t pub, got;
  const char *why;

  /* parallax signs, ssh-keygen verifies (and refuses a changed byte). */
  snprintf(path, sizeof(path), "%s/agent_key", d);
  char err[256];
  assert_int_equal(px_key_generate(path, &pub, err, sizeof(err)), 0);
  EVP_PKEY *key = NULL;
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), 0);
  char *sig = NULL;
  assert_int_equal(px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sig), 0);
  snprintf(path, sizeof(path), "%s/m.json", d);
  px__write(path, px__msg, strlen(px__msg));
  snprintf(path, sizeof(path), "%s/m.json.sig", d);
  px__write(path, sig, strlen(sig));
  snprintf(path, sizeof(path), "%s/agent_key.pub", d);
  char *publine = px__read(path);
  snprintf(path, sizeof(path), "%s/allowed_signers", d);
  char allowed[1024];
  snprintf(allowed, sizeof(allowed), "%s namespaces=\"parallax-measurement-v1\" %s", pub.key_id, publine);
  px__write(path, allowed, strlen(allowed));
  snprintf(cmd, sizeof(cmd),
           "cd %s && ssh-keygen -Y verify -f allowed_signers -I '%s' -n parallax-measurement-v1 "
           "-s m.json.sig < m.json >/dev/null 2>&1", d, pub.key_id);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof(cmd),
           "cd %s && ssh-keygen -Y check-novalidate -n parallax-measurement-v1 -s m.json.sig "
           "< m.json >/dev/null 2>&1", d);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof(cmd),
           "cd %s && sed 's/CN/CM/' m.json > t.json && ssh-keygen -Y verify -f allowed_signers "
           "-I '%s' -n parallax-measurement-v1 -s m.json.sig < t.json >/dev/null 2>&1", d, pub.key_id);
  assert_int_not_equal(system(cmd), 0);

  /* ssh-keygen signs, parallax verifies, with the same key id. */
  snprintf(cmd, sizeof(cmd),
           "cd %s && ssh-keygen -q -t ed25519 -N '' -f ossh && "
           "rm -f m.json.sig && ssh-keygen -q -Y sign -f ossh -n parallax-measurement-v1 m.json 2>/dev/null && "
           "ssh-keygen -l -f ossh.pub | cut -d' ' -f2 > fp", d);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof(path), "%s/m.json.sig", d);
  char *osig = px__read(path);
  assert_int_equal(px_sshsig_verify(osig, strlen(osig), PX_SSHSIG_NAMESPACE,
                                    (const uint8_t *)px__msg, strlen(px__msg), &got, &why), 0);
  snprintf(path, sizeof(path), "%s/fp", d);
  char *fp = px__read(path);
  fp[strcspn(fp, "\n")] = '\0';
  assert_string_equal(got.key_id, fp);
  snprintf(path, sizeof(path), "%s/ossh.pub", d);
  char *opub = px__read(path);
  px_ssh_pubkey_t parsed;
  assert_int_equal(px_ssh_pubkey_parse(opub, &parsed), 0);
  assert_string_equal(parsed.key_id, fp);

  free(opub);
  free(fp);
  free(osig);
  free(publine);
  free(sig);
  EVP_PKEY_free(key);
  px_test_rmrf(d);
  free(d);
}

/* ---- the rules of `ssh-keygen -Y verify` (tests/cli/test_sshsig_differential.py
 * holds parallax to the real one; these pin each rule on its own) ---- */

#define PX__BEGIN "-----BEGIN SSH SIGNATURE-----\n"
#define PX__END "-----END SSH SIGNATURE-----\n"

/* The blob inside an armour px_sshsig_sign wrote (caller frees). */
static uint8_t *px__unarmor(const char *armored, size_t *len) {
  size_t n = strlen(armored), k = 0;
  char *b64 = malloc(n);
  assert_non_null(b64);
  for (const char *p = armored + strlen(PX__BEGIN); strncmp(p, "-----END", 8) != 0; p++)
    if (*p != '\n')
      b64[k++] = *p;
  uint8_t *blob = malloc(k + 1);
  assert_non_null(blob);
  assert_int_equal(px_base64_decode(b64, k, blob, k + 1, len), 0);
  free(b64);
  return blob;
}

/* The armour as ssh-keygen writes it, with pre before it and post instead
 * of its last newline (caller frees). */
static char *px__armor_with(const uint8_t *blob, size_t n, const char *pre, const char *post,
                            size_t *out_len) {
  char *b64 = px_base64_encode_alloc(blob, n);
  size_t len = strlen(b64);
  char *out = malloc(strlen(pre) + strlen(PX__BEGIN) + len + len / 70 + strlen(PX__END) +
                     strlen(post) + 4);
  assert_non_null(out);
  char *o = out + sprintf(out, "%s%s", pre, PX__BEGIN);
  for (size_t i = 0; i < len; i += 70) {
    size_t k = len - i < 70 ? len - i : 70;
    memcpy(o, b64 + i, k);
    o += k;
    *o++ = '\n';
  }
  o += sprintf(o, "-----END SSH SIGNATURE-----%s", post);
  *out_len = (size_t)(o - out);
  free(b64);
  return out;
}

/* s with the first occurrence of from replaced by the to_len bytes of to
 * (which may hold NULs); *len is the result's length (caller frees). */
static char *px__splice(const char *s, const char *from, const char *to, size_t to_len,
                        size_t *len) {
  const char *at = strstr(s, from);
  assert_non_null(at);
  size_t head = (size_t)(at - s), rest = strlen(at + strlen(from));
  char *out = malloc(head + to_len + rest + 1);
  assert_non_null(out);
  memcpy(out, s, head);
  memcpy(out + head, to, to_len);
  memcpy(out + head + to_len, at + strlen(from), rest + 1);
  *len = head + to_len + rest;
  return out;
}

/* A replacement text and its length, NULs included. */
#define PX__BYTES(lit) lit, sizeof(lit) - 1

typedef struct {
  uint32_t version;
  const uint8_t *f[5]; /* key, namespace, reserved, hash, signature */
  size_t n[5];
} px__fields_t;

static void px__split(const uint8_t *blob, size_t len, px__fields_t *out) {
  px_rbuf_t r;
  uint8_t magic[6];
  px_rbuf_init(&r, blob, len);
  assert_int_equal(px_rbuf_get(&r, magic, 6), 0);
  assert_int_equal(px_rbuf_get_u32(&r, &out->version), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(px_rbuf_get_string(&r, &out->f[i], &out->n[i]), 0);
  assert_int_equal(r.left, 0);
}

static void px__join(const px__fields_t *f, px_wbuf_t *b) {
  px_wbuf_init(b);
  px_wbuf_put(b, "SSHSIG", 6);
  px_wbuf_put_u32(b, f->version);
  for (int i = 0; i < 5; i++)
    px_wbuf_put_string(b, f->f[i], f->n[i]);
  assert_false(b->failed);
}

/* Verifies text; on success, its canonical armour must be want. */
static int px__check(const char *text, size_t len, const char *want) {
  char *canonical = (char *)"unset";
  const char *why = NULL;
  px_ssh_pubkey_t signer;
  int rc = px_sshsig_verify_canonical(text, len, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                      strlen(px__msg), &signer, &why, &canonical);
  if (rc == 0) {
    assert_null(why);
    assert_non_null(canonical);
    assert_string_equal(canonical, want);
    free(canonical);
  } else {
    assert_non_null(why);
    assert_null(canonical);
    assert_true(rc == -EBADMSG || rc == -EPERM);
  }
  /* The plain verifier gives the same answer. */
  assert_int_equal(px_sshsig_verify(text, len, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                    strlen(px__msg), NULL, NULL), rc);
  return rc;
}

static int px__check_fields(const px__fields_t *f, const char *want) {
  px_wbuf_t b;
  size_t len;
  px__join(f, &b);
  char *text = px__armor_with(b.data, b.len, "", "\n", &len);
  int rc = px__check(text, len, want);
  free(text);
  px_wbuf_free(&b);
  return rc;
}

PX_TEST(sshsig_armor_as_ssh_keygen_reads_it) {
  (void)state;
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  char *sig = NULL;
  size_t blob_len, len;
  assert_int_equal(px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sig), 0);
  uint8_t *blob = px__unarmor(sig, &blob_len);
  assert_int_equal(blob_len % 3, 1); /* the text ends in "==" */
  assert_int_equal(px__check(sig, strlen(sig), sig), 0);

  /* Accepted, and nothing of the difference survives in the canonical
   * armour. */
  static const struct {
    const char *from, *to;
    size_t to_len;
  } same[] = {
      {"-----\n", PX__BYTES("-----\n\n")},                      /* blank line after BEGIN */
      {"\n-----END", PX__BYTES("\r\n-----END")},                /* CR before END */
      {"\n-----END", PX__BYTES("\n \t\v\f\r\n-----END")},       /* a line of white space */
      {"\n-----END", PX__BYTES("\0\n-----END")},                /* NUL ending the body */
      {"==", PX__BYTES(" =\n= ")},                              /* white space in the padding */
      {"-----END SSH SIGNATURE-----\n",
       PX__BYTES("-----END SSH SIGNATURE-----unsigned bytes\n\0x")}, /* after END: ignored */
      {"-----END SSH SIGNATURE-----\n", PX__BYTES("-----END SSH SIGNATURE-----")},
  };
  for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
    char *t = px__splice(sig, same[i].from, same[i].to, same[i].to_len, &len);
    assert_int_equal(px__check(t, len, sig), 0);
    free(t);
  }
  /* White space anywhere in the base64, any line width. */
  char *b64 = px_base64_encode_alloc(blob, blob_len);
  char text[4096];
  len = (size_t)snprintf(text, sizeof(text), "%s%.10s \t%s\n" PX__END, PX__BEGIN, b64, b64 + 10);
  assert_int_equal(px__check(text, len, sig), 0);
  len = (size_t)snprintf(text, sizeof(text), "%s%s\n" PX__END, PX__BEGIN, b64);
  assert_int_equal(px__check(text, len, sig), 0);

  /* Refused, as ssh-keygen refuses them: anything before BEGIN, ... */
  const char *before[] = {" ", "\n", "sig:\n", "\xef\xbb\xbf"};
  for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
    char *t = px__armor_with(blob, blob_len, before[i], "\n", &len);
    assert_int_equal(px__check(t, len, sig), -EBADMSG);
    free(t);
  }
  static const struct {
    const char *from, *to;
    size_t to_len;
  } bad[] = {
      {"-----\n", PX__BYTES("-----\r\n")},        /* CRLF after BEGIN */
      {"-----\n", PX__BYTES("----- \n")},         /* a space after BEGIN */
      {"\n-----END", PX__BYTES("-----END")},      /* END not on a line of its own */
      {"\n-----END", PX__BYTES("\nx\n-----END")}, /* text before END */
      {"==", PX__BYTES("=")},                     /* padding short */
      {"==", PX__BYTES("===")},                   /* padding long */
      {"==", PX__BYTES("==AAAA")},                /* data after the padding */
      {"==", PX__BYTES("==\0\0")},                /* two NULs ending the body */
      {"-----END SSH", PX__BYTES("-----end ssh")},
      {"U1NI", PX__BYTES("U1-NI")},               /* outside the alphabet */
      {"U1NI", PX__BYTES("U1\x85NI")},            /* not white space in C or UTF-8 */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *t = px__splice(sig, bad[i].from, bad[i].to, bad[i].to_len, &len);
    assert_int_equal(px__check(t, len, sig), -EBADMSG);
    free(t);
  }
  /* The bits under the padding set: another text for the same bytes. */
  char *t = strdup(sig);
  char *pad = strstr(t, "==");
  const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  pad[-1] = alpha[(size_t)(strchr(alpha, pad[-1]) - alpha) | 1];
  assert_int_equal(px__check(t, strlen(t), sig), -EBADMSG);
  free(t);
  /* A NUL anywhere in the body but at its end. */
  memcpy(text, sig, strlen(sig) + 1);
  text[strlen(PX__BEGIN) + 5] = '\0';
  assert_int_equal(px__check(text, strlen(sig), sig), -EBADMSG);
  /* The raw blob, and the armour with no body. */
  assert_int_equal(px__check((const char *)blob, blob_len, sig), -EBADMSG);
  len = (size_t)snprintf(text, sizeof(text), "%s\n" PX__END, PX__BEGIN);
  assert_int_equal(px__check(text, len, sig), -EBADMSG);
  len = (size_t)snprintf(text, sizeof(text), "%s" PX__END, PX__BEGIN);
  assert_int_equal(px__check(text, len, sig), -EBADMSG);

  free(b64);
  free(blob);
  free(sig);
  EVP_PKEY_free(key);
}

/* a + k * L (little-endian, 32 bytes); false when it does not fit. */
static bool px__add_order(const uint8_t in[32], unsigned k, uint8_t out[32]) {
  static const uint8_t order[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                    0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                    [31] = 0x10};
  unsigned carry = 0;
  for (int i = 0; i < 32; i++) {
    unsigned v = in[i] + k * order[i] + carry;
    out[i] = (uint8_t)v;
    carry = v >> 8;
  }
  return carry == 0;
}

PX_TEST(sshsig_blob_as_ssh_keygen_reads_it) {
  (void)state;
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  char *sig = NULL;
  size_t blob_len;
  assert_int_equal(px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sig), 0);
  uint8_t *blob = px__unarmor(sig, &blob_len);
  px__fields_t f, g;
  px__split(blob, blob_len, &f);
  assert_int_equal(px__check_fields(&f, sig), 0);

  /* The version and the reserved field are not signed: version 0 and any
   * reserved bytes pass, and the canonical armour is version 1 with an
   * empty reserved field. */
  g = f;
  g.version = 0;
  assert_int_equal(px__check_fields(&g, sig), 0);
  g.version = 2;
  assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  g = f;
  g.f[2] = (const uint8_t *)"unsigned bytes";
  g.n[2] = 14;
  assert_int_equal(px__check_fields(&g, sig), 0);

  /* The strings ssh-keygen reads as C strings may end in one NUL. */
  uint8_t key_nul[64], sig_nul[128];
  const char ns_nul[] = PX_SSHSIG_NAMESPACE "\0";
  g = f;
  g.f[1] = (const uint8_t *)ns_nul;
  g.n[1] = sizeof(ns_nul) - 1;
  assert_int_equal(px__check_fields(&g, sig), 0);
  g.n[1] = sizeof(ns_nul); /* two NULs */
  assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  g = f;
  g.f[3] = (const uint8_t *)"sha512\0";
  g.n[3] = 7;
  assert_int_equal(px__check_fields(&g, sig), 0);
  g.n[3] = 8;
  assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  /* "ssh-ed25519" + NUL: the type string grows by one byte. */
  static const uint8_t type_nul[16] = {0, 0, 0, 12, 's', 's', 'h', '-',
                                       'e', 'd', '2', '5', '5', '1', '9', 0};
  memcpy(key_nul, type_nul, 16);
  memcpy(key_nul + 16, f.f[0] + 15, f.n[0] - 15);
  g = f;
  g.f[0] = key_nul;
  g.n[0] = f.n[0] + 1;
  assert_int_equal(px__check_fields(&g, sig), 0);
  memcpy(sig_nul, type_nul, 16);
  memcpy(sig_nul + 16, f.f[4] + 15, f.n[4] - 15);
  g = f;
  g.f[4] = sig_nul;
  g.n[4] = f.n[4] + 1;
  assert_int_equal(px__check_fields(&g, sig), 0);

  /* Other hash names, trailing bytes anywhere, a short signature. */
  const char *algs[] = {"sha384", "SHA512", "sha1", ""};
  for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
    g = f;
    g.f[3] = (const uint8_t *)algs[i];
    g.n[3] = strlen(algs[i]);
    assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  }
  g = f;
  g.f[3] = (const uint8_t *)"sha256"; /* signed as sha512 */
  g.n[3] = 6;
  assert_int_equal(px__check_fields(&g, sig), -EPERM);
  uint8_t longer[200];
  memcpy(longer, f.f[0], f.n[0]);
  longer[f.n[0]] = 0;
  g = f;
  g.f[0] = longer;
  g.n[0] = f.n[0] + 1;
  assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  memcpy(longer, f.f[4], f.n[4]);
  longer[f.n[4]] = 0;
  g = f;
  g.f[4] = longer;
  g.n[4] = f.n[4] + 1;
  assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  memcpy(longer, f.f[4], f.n[4]);
  longer[18] = 63; /* the signature's own length: 63 */
  g.n[4] = f.n[4] - 1;
  assert_int_equal(px__check_fields(&g, sig), -EBADMSG);
  uint8_t *trailing = malloc(blob_len + 1);
  memcpy(trailing, blob, blob_len);
  trailing[blob_len] = 0;
  size_t len;
  char *text = px__armor_with(trailing, blob_len + 1, "", "\n", &len);
  assert_int_equal(px__check(text, len, sig), -EBADMSG);
  free(text);
  free(trailing);

  /* S + L: OpenSSH reduces S when its top three bits are clear, so S + L
   * verifies (and its canonical armour has S again); S + 2L does not. */
  uint8_t sigblob[128];
  memcpy(sigblob, f.f[4], f.n[4]);
  g = f;
  g.f[4] = sigblob;
  assert_int_equal(f.n[4], 19 + 64);
  assert_true(px__add_order(f.f[4] + 19 + 32, 1, sigblob + 19 + 32));
  /* S < L, so S + L < 2^253 unless S lies in the top 2^-125 or so of its range. */
  assert_int_equal(sigblob[19 + 63] & 0xe0, 0);
  assert_int_equal(px__check_fields(&g, sig), 0);
  assert_true(px__add_order(f.f[4] + 19 + 32, 2, sigblob + 19 + 32));
  assert_int_equal(px__check_fields(&g, sig), -EPERM);

  free(blob);
  free(sig);
  EVP_PKEY_free(key);
}

/* A signature with the sha256 hash (ssh-keygen -Y sign -O hashalg=sha256)
 * verifies; its canonical armour keeps sha256. */
PX_TEST(sshsig_sha256_signature) {
  (void)state;
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t pub;
  uint8_t md[32], sig[64];
  size_t sig_len = sizeof(sig);
  unsigned md_len;
  px_wbuf_t data, sb, blob;
  assert_int_equal(px_ssh_pubkey_from_pkey(key, &pub), 0);
  EVP_Digest(px__msg, strlen(px__msg), md, &md_len, EVP_sha256(), NULL);
  px_wbuf_init(&data);
  px_wbuf_put(&data, "SSHSIG", 6);
  px_wbuf_put_cstring(&data, PX_SSHSIG_NAMESPACE);
  px_wbuf_put_string(&data, "", 0);
  px_wbuf_put_cstring(&data, "sha256");
  px_wbuf_put_string(&data, md, md_len);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, key), 1);
  assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, data.data, data.len), 1);
  EVP_MD_CTX_free(ctx);
  px_wbuf_init(&sb);
  px_wbuf_put_cstring(&sb, "ssh-ed25519");
  px_wbuf_put_string(&sb, sig, sig_len);
  px_wbuf_init(&blob);
  px_wbuf_put(&blob, "SSHSIG", 6);
  px_wbuf_put_u32(&blob, 1);
  px_wbuf_put_string(&blob, pub.blob, sizeof(pub.blob));
  px_wbuf_put_cstring(&blob, PX_SSHSIG_NAMESPACE);
  px_wbuf_put_string(&blob, "", 0);
  px_wbuf_put_cstring(&blob, "sha256");
  px_wbuf_put_string(&blob, sb.data, sb.len);
  size_t len;
  char *want = px__armor_with(blob.data, blob.len, "", "\n", &len);
  char *uploaded = px__armor_with(blob.data, blob.len, "", "\nafter END\n", &len);
  assert_int_equal(px__check(uploaded, len, want), 0);
  free(uploaded);
  free(want);
  px_wbuf_free(&data);
  px_wbuf_free(&sb);
  px_wbuf_free(&blob);
  EVP_PKEY_free(key);
}

PX_TEST(keyfile_permissions) {
  (void)state;
  char *d = px_test_tmpdir(), path[512], err[512];
  px_ssh_pubkey_t pub;
  EVP_PKEY *key = NULL;
  struct stat st;
  snprintf(path, sizeof(path), "%s/k", d);
  assert_int_equal(px_key_generate(path, &pub, err, sizeof(err)), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* Never overwritten. */
  assert_int_equal(px_key_generate(path, &pub, err, sizeof(err)), -EEXIST);
  /* Readable by others: refused, like ssh. */
  chmod(path, 0644);
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), -EPERM);
  assert_non_null(strstr(err, "too open"));
  chmod(path, 0600);
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), 0);
  EVP_PKEY_free(key);
  /* Not a key. */
  snprintf(path, sizeof(path), "%s/k.pub", d);
  chmod(path, 0600);
  assert_int_equal(px_key_load(path, &key, err, sizeof(err)), -EINVAL);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(allowed_signers_parsing) {
  (void)state;
  char *d = px_test_tmpdir(), path[512], err[512];
  EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t p1, p2;
  px_ssh_pubkey_from_pkey(k1, &p1);
  px_ssh_pubkey_from_pkey(k2, &p2);
  char *l1 = px_ssh_pubkey_line(&p1), *l2 = px_ssh_pubkey_line(&p2);
  char text[2048];
  snprintf(text, sizeof(text),
           "# comment\n\n"
           "%s namespaces=\"parallax-measurement-v1\",valid-before=\"20200101Z\" %s old\n"
           "alice@example,%s namespaces=\"file,parallax-measurement-v1\" %s\n"
           "bob ssh-rsa AAAAB3NzaC1yc2E= ignored-other-key-type\n"
           "carol cert-authority %s\n",
           p1.key_id, l1, p2.key_id, l2, l2);
  snprintf(path, sizeof(path), "%s/as", d);
  px__write(path, text, strlen(text));
  px_allowed_signers_t s;
  assert_int_equal(px_allowed_signers_load(path, &s, err, sizeof(err)), 0);
  assert_int_equal(s.n, 2);
  time_t t2019, now = time(NULL);
  assert_int_equal(px_allowed_signers_parse_time("20190601Z", &t2019), 0);
  /* k1 was valid before 2020 only: a 2019 measurement passes, today's not. */
  assert_non_null(px_allowed_signers_find(&s, &p1, PX_SSHSIG_NAMESPACE, t2019));
  assert_null(px_allowed_signers_find(&s, &p1, PX_SSHSIG_NAMESPACE, now));
  const px_allowed_signer_t *e = px_allowed_signers_find(&s, &p2, PX_SSHSIG_NAMESPACE, now);
  assert_non_null(e);
  assert_non_null(strstr(e->principals, "alice@example"));
  assert_null(px_allowed_signers_find(&s, &p2, "git", now));
  px_allowed_signers_free(&s);

  px__write(path, "broken line\n", 12);
  assert_int_equal(px_allowed_signers_load(path, &s, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, ":1:"));
  free(l1);
  free(l2);
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
  px_test_rmrf(d);
  free(d);
}

static int px__verify_as(const char *sig, const char *msg, px_ssh_pubkey_t *signer) {
  return px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE, (const uint8_t *)msg,
                          strlen(msg), signer, NULL);
}

/* The key cache answers by the signature's own key bytes, so once a key
 * is cached it still verifies nothing but its own signatures of the very
 * message: not another key's signature presented under its name, not a
 * changed message, and a failure leaves its reused context good. */
PX_TEST(sshsig_key_cache_never_crosses_keys) {
  (void)state;
  px_sshsig_keys_reset(0);
  EVP_PKEY *a = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  EVP_PKEY *b = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  px_ssh_pubkey_t pa, pb, got;
  px_sshsig_key_stats_t st;
  char *sa = NULL, *sb = NULL;
  assert_int_equal(px_ssh_pubkey_from_pkey(a, &pa), 0);
  assert_int_equal(px_ssh_pubkey_from_pkey(b, &pb), 0);
  assert_int_equal(px_sshsig_sign(a, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sa), 0);
  assert_int_equal(px_sshsig_sign(b, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sb), 0);

  for (int round = 0; round < 3; round++) {
    assert_int_equal(px__verify_as(sa, px__msg, &got), 0);
    assert_string_equal(got.key_id, pa.key_id);
    assert_memory_equal(got.blob, pa.blob, sizeof(pa.blob));
  }
  px_sshsig_key_stats(&st);
  assert_int_equal(st.misses, 1);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.entries, 1);

  /* B's signature with A's key in its place: A is cached, and refuses it. */
  size_t n;
  uint8_t *blob = px__unarmor(sb, &n);
  uint8_t *at = memmem(blob, n, pb.blob, sizeof(pb.blob));
  assert_non_null(at);
  memcpy(at, pa.blob, sizeof(pa.blob));
  size_t forged_len;
  char *forged = px__armor_with(blob, n, "", "\n", &forged_len);
  assert_int_equal(px__verify_as(forged, px__msg, NULL), -EPERM);
  px_sshsig_key_stats(&st);
  assert_int_equal(st.hits, 3);

  /* A changed message, through A's cached (and reused) context. */
  char tampered[sizeof(px__msg)];
  memcpy(tampered, px__msg, sizeof(px__msg));
  tampered[10] ^= 1;
  assert_int_equal(px__verify_as(sa, tampered, NULL), -EPERM);
  assert_int_equal(px__verify_as(sa, px__msg, &got), 0);
  assert_string_equal(got.key_id, pa.key_id);

  /* B, verified after A, is B; a failed key is never cached. */
  assert_int_equal(px__verify_as(sb, px__msg, &got), 0);
  assert_string_equal(got.key_id, pb.key_id);
  EVP_PKEY *c = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  char *sc = NULL;
  assert_int_equal(px_sshsig_sign(c, PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                  strlen(px__msg), &sc), 0);
  assert_int_equal(px__verify_as(sc, tampered, NULL), -EPERM);
  px_sshsig_key_stats(&st);
  assert_int_equal(st.entries, 2);
  assert_int_equal(px__verify_as(sc, px__msg, &got), 0);
  px_sshsig_key_stats(&st);
  assert_int_equal(st.entries, 3);

  free(blob);
  free(forged);
  free(sa);
  free(sb);
  free(sc);
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
  EVP_PKEY_free(c);
  px_sshsig_keys_reset(0);
}

/* At its bound the cache evicts (least recently used first) and stays
 * within it; an evicted key verifies as before, built again. */
#define PX__EVICT_KEYS 24
PX_TEST(sshsig_key_cache_evicts_at_bound) {
  (void)state;
  px_sshsig_keys_reset(8);
  EVP_PKEY *k[PX__EVICT_KEYS];
  char *sig[PX__EVICT_KEYS];
  px_ssh_pubkey_t pub[PX__EVICT_KEYS], got;
  px_sshsig_key_stats_t st;
  for (int i = 0; i < PX__EVICT_KEYS; i++) {
    k[i] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_int_equal(px_ssh_pubkey_from_pkey(k[i], &pub[i]), 0);
    assert_int_equal(px_sshsig_sign(k[i], PX_SSHSIG_NAMESPACE, (const uint8_t *)px__msg,
                                    strlen(px__msg), &sig[i]), 0);
  }
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < PX__EVICT_KEYS; i++) {
      assert_int_equal(px__verify_as(sig[i], px__msg, &got), 0);
      assert_string_equal(got.key_id, pub[i].key_id);
      px_sshsig_key_stats(&st);
      assert_true(st.entries <= 8);
    }
  }
  px_sshsig_key_stats(&st);
  /* 24 keys through 8 places twice: every key has been built at least
   * once, and whatever did not fit was evicted. */
  assert_true(st.misses >= PX__EVICT_KEYS);
  assert_int_equal(st.hits + st.misses, 2 * PX__EVICT_KEYS);
  assert_int_equal(st.evictions, st.misses - st.entries);
  assert_true(st.evictions >= PX__EVICT_KEYS - 8);

  /* The most recently used key of the last pass is still there. */
  uint64_t hits = st.hits;
  assert_int_equal(px__verify_as(sig[PX__EVICT_KEYS - 1], px__msg, &got), 0);
  px_sshsig_key_stats(&st);
  assert_int_equal(st.hits, hits + 1);
  for (int i = 0; i < PX__EVICT_KEYS; i++) {
    free(sig[i]);
    EVP_PKEY_free(k[i]);
  }
  px_sshsig_keys_reset(0);
}
