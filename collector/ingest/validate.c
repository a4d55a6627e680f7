#include "collector/ingest/validate.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/ingest/jsontok.h"
#include "collector/ingest/schema.h"
#include "common/encoding.h"
#include "common/timeutil.h"

typedef struct {
  const px_jdoc_t *d;
  char *why;
  size_t whylen;
  char *path; /* the JSON path that starts every reason, or NULL */
  size_t pathlen;
} px__ctx_t;

/* The format attribute lets the compiler check every caller's arguments
 * (and clang's -Wformat-nonliteral accept the forwarding to vsnprintf). */
__attribute__((format(printf, 2, 3)))
static int px__fail(px__ctx_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why, c->whylen, fmt, ap);
  va_end(ap);
  const char *colon = strstr(c->why, ": ");
  if (c->path != NULL && c->pathlen > 0 && colon != NULL)
    snprintf(c->path, c->pathlen, "%.*s", (int)(colon - c->why), c->why);
  return -EINVAL;
}

/* A tiny pattern language: 'A' upper letter, 'a' alnum, '9' digit, '+' one
 * or more of the previous class, anything else literal. */
static bool px__matches(const char *s, const char *shape) {
  while (*shape) {
    char cls = *shape++;
    bool many = *shape == '+';
    if (many)
      shape++;
    int count = 0;
    for (;;) {
      unsigned char ch = (unsigned char)*s;
      bool ok = cls == 'A' ? isupper(ch) : cls == 'a' ? isalnum(ch) : cls == '9' ? isdigit(ch)
                                                                          : ch == (unsigned char)cls;
      if (!ok || ch == '\0')
        break;
      s++;
      count++;
      if (!many)
        break;
    }
    if (count == 0)
      return false;
  }
  return *s == '\0';
}

/* "AS<n>" in the one spelling the researcher API filters by: the form
 * px_probe_asn_normalize produces. */
static bool px__asn(const char *s) {
  if (strncmp(s, "AS", 2) != 0 || !px__matches(s + 2, "9+") || strlen(s) > 12)
    return false;
  if (s[2] == '0' && s[3] != '\0')
    return false;
  return strtoull(s + 2, NULL, 10) <= 4294967295ull;
}

/* The certificate's sha256 must be the hash of the DER it carries: the
 * collector indexes and compares by it. The schema has checked the types
 * and sizes already. */
#define PX__CERT "test_keys.tls_handshakes[%u].peer_certificates[%u]"

static int px__certificate(px__ctx_t *c, int cert, uint32_t h, uint32_t k) {
  const px_jdoc_t *d = c->d;
  int data = px_jobj_get(d, (uint32_t)cert, "data");
  int sha = px_jobj_get(d, (uint32_t)cert, "sha256");
  if (d->tok[data].escaped)
    return px__fail(c, PX__CERT ".data: base64 has no escapes", h, k);
  size_t n = d->tok[data].len, der_len;
  uint8_t *der = malloc(n + 1);
  if (der == NULL)
    return px__fail(c, "out of memory");
  if (px_base64_decode(d->text + d->tok[data].start, n, der, n + 1, &der_len) != 0 || der_len == 0) {
    free(der);
    return px__fail(c, PX__CERT ".data: not base64", h, k);
  }
  uint8_t md[32];
  unsigned md_len;
  char hex[65];
  int ok = EVP_Digest(der, der_len, md, &md_len, EVP_sha256(), NULL);
  free(der);
  if (ok != 1)
    return px__fail(c, "out of memory");
  px_hex_encode(md, 32, hex);
  if (!px_jstr_eq(d, sha, hex))
    return px__fail(c, PX__CERT ".sha256: does not match the certificate's DER", h, k);
  return 0;
}

/* The first measurement platforms with TLS certificate records are from
 * 2012 (OONI's first probes a year later): anything before is a forged or
 * broken clock. A day ahead allows for agents whose clock runs fast. */
#define PX__EARLIEST ((time_t)1325376000) /* 2012-01-01 00:00:00 */
#define PX__AHEAD ((time_t)86400)

/* A time field the schema has seen as "DDDD-DD-DD DD:DD:DD": a real
 * calendar time within the bounds. */
static int px__time_field(px__ctx_t *c, const char *key, time_t received_at, time_t *out) {
  char s[32];
  if (px_jstr(c->d, px_jobj_get(c->d, 0, key), s, sizeof(s)) < 0 ||
      px_time_parse_utc(s, out) != 0)
    return px__fail(c, "%s: must be a UTC time YYYY-MM-DD HH:MM:SS", key);
  time_t latest = received_at + PX__AHEAD;
  if (*out < PX__EARLIEST || (received_at != 0 && *out > latest)) {
    char lo[PX_TIME_OONI_LEN], hi[PX_TIME_OONI_LEN];
    px_time_format_ooni(PX__EARLIEST, lo);
    px_time_format_ooni(latest, hi);
    return px__fail(c, "%s: must lie between %s and %s (a day after it was received)", key, lo,
                    received_at != 0 ? hi : "now");
  }
  return 0;
}

static int px__check(px__ctx_t *c, time_t received_at, px_measurement_meta_t *meta) {
  const px_jdoc_t *d = c->d;
  char cc[8], asn[24], rasn[24], tn[64], input[PX_TARGET_MAX + 1];
  int rc;
  time_t tst;

  if ((rc = px__time_field(c, "measurement_start_time", received_at,
                           &meta->measurement_start_time)) != 0 ||
      (rc = px__time_field(c, "test_start_time", received_at, &tst)) != 0)
    return rc;
  px_jstr(d, px_jobj_get(d, 0, "probe_cc"), cc, sizeof(cc));
  if (px_jstr(d, px_jobj_get(d, 0, "probe_asn"), asn, sizeof(asn)) < 0 || !px__asn(asn))
    return px__fail(c, "probe_asn: must be AS<number> (0 to 4294967295, no leading zeros)");
  if (px_jstr(d, px_jobj_get(d, 0, "resolver_asn"), rasn, sizeof(rasn)) < 0 || !px__asn(rasn))
    return px__fail(c, "resolver_asn: must be AS<number> (0 to 4294967295, no leading zeros)");
  px_jstr(d, px_jobj_get(d, 0, "test_name"), tn, sizeof(tn));
  const char *reason = "not a string";
  px_target_t target;
  if (px_jstr(d, px_jobj_get(d, 0, "input"), input, sizeof(input)) < 0 ||
      px_target_parse(input, 443, &target, &reason) != 0)
    return px__fail(c, "input: not a domain[:port]: %s", reason);
  int keys = px_jobj_get(d, 0, "test_keys");
  int hs = px_jobj_get(d, (uint32_t)keys, "tls_handshakes");
  int h = hs + 1;
  for (uint32_t i = 0; i < d->tok[hs].size; i++, h = (int)d->tok[h].next) {
    int certs = px_jobj_get(d, (uint32_t)h, "peer_certificates");
    int cert = certs + 1;
    for (uint32_t k = 0; k < d->tok[certs].size; k++, cert = (int)d->tok[cert].next)
      if ((rc = px__certificate(c, cert, i, k)) != 0)
        return rc;
  }

  memcpy(meta->probe_cc, cc, 3); /* two letters and the NUL: the schema's pattern */
  memcpy(meta->probe_asn, asn, strlen(asn) + 1); /* at most 12 characters, checked above */
  snprintf(meta->test_name, sizeof(meta->test_name), "%s", tn);
  snprintf(meta->input, sizeof(meta->input), "%s", input);
  size_t j = 0;
  for (; target.hostname[j] != '\0'; j++)
    meta->domain[j] = (char)tolower((unsigned char)target.hostname[j]);
  meta->domain[j] = '\0';
  return 0;
}

int px_validate_measurement(const char *content, size_t n, time_t received_at,
                            px_measurement_meta_t *meta, char *why, size_t whylen, char *path,
                            size_t pathlen) {
  px_jdoc_t doc;
  memset(meta, 0, sizeof(*meta));
  if (path != NULL && pathlen > 0)
    path[0] = '\0';
  if (n == 0) {
    snprintf(why, whylen, "empty content");
    return -EINVAL;
  }
  if (memchr(content, '\n', n) != NULL || memchr(content, '\r', n) != NULL) {
    snprintf(why, whylen, "content must be one line: the compact JSON without a newline");
    return -EINVAL;
  }
  const px_schema_t *schema = px_schema_measurement();
  if (schema == NULL) {
    snprintf(why, whylen, "the collector's measurement schema does not compile");
    return -EINVAL;
  }
  int rc = px_json_tokenize(content, n, &doc, PX_JSON_COMPACT, why, whylen);
  if (rc != 0)
    return rc == -ENOMEM ? (snprintf(why, whylen, "out of memory"), -EINVAL) : rc;
  rc = px_schema_validate(schema, &doc, 0, why, whylen, path, pathlen);
  if (rc == 0) {
    px__ctx_t c = {&doc, why, whylen, path, pathlen};
    rc = px__check(&c, received_at, meta);
  }
  px_jdoc_free(&doc);
  return rc;
}

void px_measurement_uid(const px_measurement_meta_t *meta, const uint8_t sha256[32], char *out,
                        size_t n) {
  char hex[65], compact[PX_TIME_COMPACT_LEN];
  px_hex_encode(sha256, 32, hex);
  /* YYYYMMDDHHMMSS with four-digit years, from the compact form. */
  px_time_format_compact(meta->measurement_start_time, compact);
  char stamp[15];
  memcpy(stamp, compact, 8);
  memcpy(stamp + 8, compact + 9, 6);
  stamp[14] = '\0';
  snprintf(out, n, "%s_%s_tlscertconsistency_%.16s", stamp, meta->probe_cc, hex);
}
