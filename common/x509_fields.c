#include "common/x509_fields.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/encoding.h"
#include "common/json_util.h"
#include "common/timeutil.h"

static pthread_once_t px__sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *px__sha256; /* one reference for the process's life */

static void px__sha256_fetch(void) {
  px__sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *px_sha256_md(void) {
  pthread_once(&px__sha256_once, px__sha256_fetch);
  return px__sha256 != NULL ? px__sha256 : EVP_sha256();
}

static void px__sha256_hex(const uint8_t *data, size_t n, char out[65]) {
  uint8_t md[32];
  unsigned int md_len = 0;
  EVP_Digest(data, n, md, &md_len, px_sha256_md(), NULL);
  px_hex_encode(md, sizeof(md), out);
}

/* RFC 4514 keeps UTF-8 as is; OpenSSL's RFC 2253 flags would escape every
 * non-ASCII byte as \XX, which researchers then have to undo. */
static char *px__name_print(const X509_NAME *name, unsigned long flags) {
  BIO *bio = BIO_new(BIO_s_mem());
  char *out = NULL;
  if (bio == NULL)
    return NULL;
  if (X509_NAME_print_ex(bio, name, 0, flags) >= 0) {
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)len + 1);
    if (out != NULL) {
      memcpy(out, data, (size_t)len);
      out[len] = '\0';
    }
  }
  BIO_free(bio);
  return out;
}

char *px_x509_name_rfc4514(const X509_NAME *name) {
  return px__name_print(name, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
}

/* At most max bytes of s, cut on a UTF-8 character boundary when s is
 * UTF-8 there (a cut inside a character would be replaced, not dropped). */
static size_t px__bounded(const char *s, size_t n, size_t max) {
  if (n <= max)
    return n;
  while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
    max--;
  return max;
}

static json_t *px__name_json(const X509_NAME *name) {
  char *s = px_x509_name_rfc4514(name);
  if (s == NULL)
    return json_null();
  json_t *v = px_json_string_lossy(s, px__bounded(s, strlen(s), PX_X509_NAME_MAX));
  free(s);
  return v;
}

static json_t *px__time_json(const ASN1_TIME *t) {
  struct tm tm;
  char buf[64]; /* room for any int, though the fields are in range */
  if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
    return json_null();
  /* Four digits always (GeneralizedTime allows year 0001; %Y would not
   * pad it). */
  int year = tm.tm_year + 1900;
  if (year < 0 || year > 9999)
    return json_null();
  snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", year, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
  return json_string(buf);
}

/* DNS names as they are; IP addresses in their text form; other kinds with
 * a prefix ("email:", "URI:") so they cannot be mistaken for host names. */
static json_t *px__san_json(X509 *cert) {
  json_t *arr = json_array();
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (names == NULL)
    return arr;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && json_array_size(arr) < PX_X509_SAN_MAX; i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
    const ASN1_STRING *s = NULL;
    const char *prefix = "";
    switch (gn->type) {
    case GEN_DNS: s = gn->d.dNSName; break;
    case GEN_EMAIL: s = gn->d.rfc822Name; prefix = "email:"; break;
    case GEN_URI: s = gn->d.uniformResourceIdentifier; prefix = "URI:"; break;
    case GEN_IPADD: {
      const ASN1_OCTET_STRING *ip = gn->d.iPAddress;
      char text[PX_TIME_ISO_LEN + 64];
      int af = ip->length == 4 ? AF_INET : ip->length == 16 ? AF_INET6 : 0;
      if (af != 0 && inet_ntop(af, ip->data, text, sizeof(text)) != NULL)
        json_array_append_new(arr, json_string(text));
      continue;
    }
    default:
      continue;
    }
    size_t plen = strlen(prefix);
    size_t n = (size_t)ASN1_STRING_length(s);
    char *buf = malloc(plen + n + 1);
    if (buf == NULL)
      continue;
    /* Not a C string: the name's bytes follow the prefix and the whole
     * goes on with its length (a hostile name may hold NUL bytes). */
    memcpy(buf, prefix, plen); /* NOLINT(bugprone-not-null-terminated-result) */
    memcpy(buf + plen, ASN1_STRING_get0_data(s), n);
    json_array_append_new(arr, px_json_string_lossy(buf, px__bounded(buf, plen + n, PX_X509_SAN_LEN_MAX)));
    free(buf);
  }
  GENERAL_NAMES_free(names);
  return arr;
}

/* DESIGN: issuer equals subject AND the signature verifies with the
 * certificate's own key. A cross-signed or name-colliding certificate is
 * not self-signed by this definition. */
static bool px__self_signed(X509 *cert) {
  if (X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) != 0)
    return false;
  EVP_PKEY *key = X509_get0_pubkey(cert);
  bool ok = key != NULL && X509_verify(cert, key) == 1;
  ERR_clear_error();
  return ok;
}

int px_x509_sha256_hex(X509 *cert, char out[65]) {
  unsigned char *der = NULL;
  int len = i2d_X509(cert, &der);
  if (len <= 0)
    return -1;
  px__sha256_hex(der, (size_t)len, out);
  OPENSSL_free(der);
  return 0;
}

json_t *px_x509_cert_json(X509 *cert) {
  unsigned char *der = NULL, *spki = NULL;
  char sha[65];
  int der_len = i2d_X509(cert, &der);
  if (der_len <= 0)
    return NULL;

  json_t *item = json_object();
  char *b64 = px_base64_encode_alloc(der, (size_t)der_len);
  px__sha256_hex(der, (size_t)der_len, sha);
  json_object_set_new(item, "format", json_string("base64"));
  json_object_set_new(item, "data", b64 ? json_string(b64) : json_null());
  json_object_set_new(item, "sha256", json_string(sha));

  int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
  if (spki_len > 0) {
    char spki_sha[65];
    px__sha256_hex(spki, (size_t)spki_len, spki_sha);
    json_object_set_new(item, "spki_sha256", json_string(spki_sha));
  } else {
    json_object_set_new(item, "spki_sha256", json_null());
  }
  json_object_set_new(item, "subject", px__name_json(X509_get_subject_name(cert)));
  json_object_set_new(item, "issuer", px__name_json(X509_get_issuer_name(cert)));
  json_object_set_new(item, "san", px__san_json(cert));
  json_object_set_new(item, "not_before", px__time_json(X509_get0_notBefore(cert)));
  json_object_set_new(item, "not_after", px__time_json(X509_get0_notAfter(cert)));
  json_object_set_new(item, "self_signed", json_boolean(px__self_signed(cert)));

  free(b64);
  OPENSSL_free(der);
  OPENSSL_free(spki);
  ERR_clear_error();
  return item;
}

json_t *px_x509_der_json(const uint8_t *der, size_t n) {
  const unsigned char *p = der;
  X509 *cert = d2i_X509(NULL, &p, (long)n);
  if (cert == NULL) {
    ERR_clear_error();
    return NULL;
  }
  json_t *item = px_x509_cert_json(cert);
  X509_free(cert);
  return item;
}
