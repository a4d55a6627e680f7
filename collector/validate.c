#include "collector/validate.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/jsontok.h"
#include "common/encoding.h"
#include "common/timeutil.h"

typedef struct {
  const px_jdoc_t *d;
  char *why;
  size_t whylen;
} px__ctx_t;

/* The format attribute lets the compiler check every caller's arguments
 * (and clang's -Wformat-nonliteral accept the forwarding to vsnprintf). */
__attribute__((format(printf, 2, 3)))
static int px__fail(px__ctx_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why, c->whylen, fmt, ap);
  va_end(ap);
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

/* Types as letters: s string, n null, i integer, r number, b boolean,
 * o object, a array. */
static bool px__is(const px_jdoc_t *d, int idx, const char *types) {
  int64_t iv;
  switch (px_jtype(d, idx)) {
  case PX_JT_STRING: return strchr(types, 's') != NULL;
  case PX_JT_NULL: return strchr(types, 'n') != NULL;
  case PX_JT_TRUE:
  case PX_JT_FALSE: return strchr(types, 'b') != NULL;
  case PX_JT_OBJECT: return strchr(types, 'o') != NULL;
  case PX_JT_ARRAY: return strchr(types, 'a') != NULL;
  case PX_JT_NUMBER:
    return strchr(types, 'r') != NULL || (strchr(types, 'i') != NULL && px_jint(d, idx, &iv));
  default: return false;
  }
}

static int px__require(px__ctx_t *c, uint32_t obj, const char *where, const char *key,
                       const char *types) {
  int v = px_jobj_get(c->d, obj, key);
  if (v < 0)
    return px__fail(c, "%s: missing \"%s\"", where, key);
  if (!px__is(c->d, v, types))
    return px__fail(c, "%s: \"%s\" has the wrong type", where, key);
  return 0;
}

typedef struct {
  px__ctx_t *c;
  const char *where;
  const char *const *keys;
} px__known_t;

static int px__known_cb(const px_jdoc_t *d, uint32_t key, uint32_t value, void *data) {
  px__known_t *k = data;
  (void)value;
  for (size_t i = 0; k->keys[i] != NULL; i++)
    if (px_jstr_eq(d, (int)key, k->keys[i]))
      return 0;
  char name[64];
  if (px_jstr(d, (int)key, name, sizeof(name)) < 0)
    strcpy(name, "(long key)");
  return px__fail(k->c, "%s: unknown key \"%s\"", k->where, name);
}

static int px__only_keys(px__ctx_t *c, uint32_t obj, const char *where, const char *const *keys) {
  px__known_t k = {c, where, keys};
  return px_jobj_each(c->d, obj, px__known_cb, &k);
}

static int px__failure(px__ctx_t *c, int v, const char *where) {
  if (px_jtype(c->d, v) == PX_JT_NULL)
    return 0;
  if (px_jtype(c->d, v) != PX_JT_STRING || c->d->tok[v].len == 0)
    return px__fail(c, "%s: failure must be null or a failure string", where);
  return 0;
}

static int px__times(px__ctx_t *c, uint32_t o, const char *where) {
  double t0, t;
  int64_t id;
  if (!px_jnum(c->d, px_jobj_get(c->d, o, "t0"), &t0) ||
      !px_jnum(c->d, px_jobj_get(c->d, o, "t"), &t) || t0 < 0 || t < 0)
    return px__fail(c, "%s: t0 and t must be non-negative numbers", where);
  if (!px_jint(c->d, px_jobj_get(c->d, o, "transaction_id"), &id) || id < 1)
    return px__fail(c, "%s: transaction_id must be a positive integer", where);
  return 0;
}

static int px__query(px__ctx_t *c, uint32_t q, size_t i) {
  static const char *const keys[] = {"engine", "resolver_address", "hostname", "query_type",
                                     "rcode", "truncated", "answers", "raw_response", "failure",
                                     "t0", "t", "transaction_id", NULL};
  const px_jdoc_t *d = c->d;
  char where[48];
  snprintf(where, sizeof(where), "queries[%zu]", i);
  if (px_jtype(d, (int)q) != PX_JT_OBJECT)
    return px__fail(c, "%s: not an object", where);
  int rc = px__only_keys(c, q, where, keys);
  if (rc == 0) rc = px__require(c, q, where, "engine", "s");
  if (rc == 0) rc = px__require(c, q, where, "resolver_address", "s");
  if (rc == 0) rc = px__require(c, q, where, "hostname", "s");
  if (rc == 0) rc = px__require(c, q, where, "query_type", "s");
  if (rc == 0) rc = px__require(c, q, where, "rcode", "in");
  if (rc == 0) rc = px__require(c, q, where, "truncated", "b");
  if (rc == 0) rc = px__require(c, q, where, "answers", "a");
  if (rc == 0) rc = px__require(c, q, where, "raw_response", "sn");
  if (rc == 0) rc = px__require(c, q, where, "failure", "sn");
  if (rc == 0) rc = px__failure(c, px_jobj_get(d, q, "failure"), where);
  if (rc == 0) rc = px__times(c, q, where);
  if (rc != 0)
    return rc;
  int engine = px_jobj_get(d, q, "engine"), type = px_jobj_get(d, q, "query_type");
  if (!px_jstr_eq(d, engine, "udp") && !px_jstr_eq(d, engine, "tcp"))
    return px__fail(c, "%s: engine must be udp or tcp", where);
  if (!px_jstr_eq(d, type, "A") && !px_jstr_eq(d, type, "AAAA"))
    return px__fail(c, "%s: query_type must be A or AAAA", where);
  int answers = px_jobj_get(d, q, "answers");
  int a = answers + 1;
  for (uint32_t k = 0; k < d->tok[answers].size; k++, a = (int)d->tok[a].next) {
    int at = px_jtype(d, a) == PX_JT_OBJECT ? px_jobj_get(d, (uint32_t)a, "answer_type") : -1;
    const char *field = px_jstr_eq(d, at, "A") ? "ipv4" : px_jstr_eq(d, at, "AAAA") ? "ipv6"
                        : px_jstr_eq(d, at, "CNAME") ? "hostname" : NULL;
    if (field == NULL || px_jtype(d, px_jobj_get(d, (uint32_t)a, field)) != PX_JT_STRING)
      return px__fail(c, "%s.answers[%u]: bad answer", where, k);
  }
  return 0;
}

static int px__tcp_connect(px__ctx_t *c, uint32_t e, size_t i) {
  static const char *const keys[] = {"ip", "port", "status", "t0", "t", "transaction_id", NULL};
  const px_jdoc_t *d = c->d;
  char where[48];
  snprintf(where, sizeof(where), "tcp_connect[%zu]", i);
  if (px_jtype(d, (int)e) != PX_JT_OBJECT)
    return px__fail(c, "%s: not an object", where);
  int rc = px__only_keys(c, e, where, keys);
  if (rc == 0) rc = px__require(c, e, where, "ip", "s");
  if (rc == 0) rc = px__require(c, e, where, "port", "i");
  if (rc == 0) rc = px__require(c, e, where, "status", "o");
  if (rc == 0) rc = px__times(c, e, where);
  if (rc != 0)
    return rc;
  int64_t port;
  px_jint(d, px_jobj_get(d, e, "port"), &port);
  if (port < 1 || port > 65535)
    return px__fail(c, "%s: port out of range", where);
  int st = px_jobj_get(d, e, "status");
  if (!px__is(d, px_jobj_get(d, (uint32_t)st, "success"), "b"))
    return px__fail(c, "%s: status.success must be a boolean", where);
  int f = px_jobj_get(d, (uint32_t)st, "failure");
  if (f < 0)
    return px__fail(c, "%s: status.failure is missing", where);
  return px__failure(c, f, where);
}

/* The certificate's sha256 must be the hash of the DER it carries: the
 * collector indexes and compares by it. */
static int px__certificate(px__ctx_t *c, int cert, const char *where) {
  const px_jdoc_t *d = c->d;
  int data = px_jtype(d, cert) == PX_JT_OBJECT ? px_jobj_get(d, (uint32_t)cert, "data") : -1;
  int sha = px_jtype(d, cert) == PX_JT_OBJECT ? px_jobj_get(d, (uint32_t)cert, "sha256") : -1;
  if (px_jtype(d, data) != PX_JT_STRING || px_jtype(d, sha) != PX_JT_STRING ||
      !px_jstr_eq(d, px_jobj_get(d, (uint32_t)cert, "format"), "base64") ||
      d->tok[data].escaped)
    return px__fail(c, "%s: needs format \"base64\", data and sha256", where);
  size_t n = d->tok[data].len, der_len;
  uint8_t *der = malloc(n + 1);
  if (der == NULL)
    return px__fail(c, "out of memory");
  if (px_base64_decode(d->text + d->tok[data].start, n, der, n + 1, &der_len) != 0 || der_len == 0) {
    free(der);
    return px__fail(c, "%s: data is not base64", where);
  }
  uint8_t md[32];
  unsigned md_len;
  char hex[65];
  EVP_Digest(der, der_len, md, &md_len, EVP_sha256(), NULL);
  free(der);
  px_hex_encode(md, 32, hex);
  if (!px_jstr_eq(d, sha, hex))
    return px__fail(c, "%s: sha256 does not match the certificate's DER", where);
  return 0;
}

static int px__tls_handshake(px__ctx_t *c, uint32_t h, size_t i) {
  static const char *const keys[] = {"address", "server_name", "tls_version", "cipher_suite",
                                     "negotiated_protocol", "no_tls_verify", "peer_certificates",
                                     "verification", "server_alert", "failure", "failure_detail",
                                     "t0", "t", "transaction_id", NULL};
  const px_jdoc_t *d = c->d;
  char where[64];
  snprintf(where, sizeof(where), "tls_handshakes[%zu]", i);
  if (px_jtype(d, (int)h) != PX_JT_OBJECT)
    return px__fail(c, "%s: not an object", where);
  int rc = px__only_keys(c, h, where, keys);
  if (rc == 0) rc = px__require(c, h, where, "address", "s");
  if (rc == 0) rc = px__require(c, h, where, "server_name", "s");
  if (rc == 0) rc = px__require(c, h, where, "tls_version", "s");
  if (rc == 0) rc = px__require(c, h, where, "cipher_suite", "s");
  if (rc == 0) rc = px__require(c, h, where, "negotiated_protocol", "s");
  if (rc == 0) rc = px__require(c, h, where, "no_tls_verify", "b");
  if (rc == 0) rc = px__require(c, h, where, "peer_certificates", "a");
  if (rc == 0) rc = px__require(c, h, where, "verification", "on");
  if (rc == 0) rc = px__require(c, h, where, "server_alert", "sn");
  if (rc == 0) rc = px__require(c, h, where, "failure_detail", "sn");
  if (rc == 0) rc = px__require(c, h, where, "failure", "sn");
  if (rc == 0) rc = px__failure(c, px_jobj_get(d, h, "failure"), where);
  if (rc == 0) rc = px__times(c, h, where);
  if (rc != 0)
    return rc;
  int certs = px_jobj_get(d, h, "peer_certificates");
  int cert = certs + 1;
  for (uint32_t k = 0; k < d->tok[certs].size; k++, cert = (int)d->tok[cert].next) {
    char cwhere[128];
    snprintf(cwhere, sizeof(cwhere), "%s.peer_certificates[%u]", where, k);
    if ((rc = px__certificate(c, cert, cwhere)) != 0)
      return rc;
  }
  int v = px_jobj_get(d, h, "verification");
  if (px_jtype(d, v) == PX_JT_OBJECT &&
      (!px__is(d, px_jobj_get(d, (uint32_t)v, "ok"), "b") ||
       !px__is(d, px_jobj_get(d, (uint32_t)v, "errors"), "a") ||
       !px__is(d, px_jobj_get(d, (uint32_t)v, "hostname_match"), "b")))
    return px__fail(c, "%s: verification needs ok, errors, hostname_match", where);
  return 0;
}

static int px__time_field(px__ctx_t *c, const char *key, time_t *out) {
  char s[32];
  if (px_jstr(c->d, px_jobj_get(c->d, 0, key), s, sizeof(s)) < 0 ||
      !px__matches(s, "9999-99-99 99:99:99") || px_time_parse_utc(s, out) != 0)
    return px__fail(c, "\"%s\" must be a UTC time YYYY-MM-DD HH:MM:SS", key);
  return 0;
}

static int px__annotation_cb(const px_jdoc_t *d, uint32_t key, uint32_t value, void *data) {
  (void)key;
  if (px_jtype(d, (int)value) != PX_JT_STRING)
    return px__fail(data, "annotations must map strings to strings");
  return 0;
}

/* Walks an array calling check(c, element, index). */
static int px__each(px__ctx_t *c, int arr, int (*check)(px__ctx_t *, uint32_t, size_t)) {
  int e = arr + 1;
  for (uint32_t k = 0; k < c->d->tok[arr].size; k++, e = (int)c->d->tok[e].next) {
    int rc = check(c, (uint32_t)e, k);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int px__check(px__ctx_t *c, px_measurement_meta_t *meta) {
  static const char *const top[] = {
      "data_format_version", "measurement_start_time", "test_start_time", "probe_cc",
      "probe_asn", "probe_network_name", "probe_ip", "resolver_ip", "resolver_asn",
      "resolver_network_name", "software_name", "software_version", "test_name",
      "test_version", "test_runtime", "input", "report_id", "annotations", "test_keys", NULL};
  static const char *const tk[] = {"queries", "tcp_connect", "tls_handshakes",
                                   "skipped_addresses", "control_addresses", NULL};
  const px_jdoc_t *d = c->d;
  char cc[8], asn[24], rasn[24], tn[64], input[PX_TARGET_MAX + 1], rid[160];
  int rc;
  time_t tst;

  if (px_jtype(d, 0) != PX_JT_OBJECT)
    return px__fail(c, "a measurement is a JSON object");
  if ((rc = px__only_keys(c, 0, "measurement", top)) != 0)
    return rc;
  for (size_t i = 0; top[i] != NULL; i++)
    if (px_jobj_get(d, 0, top[i]) < 0)
      return px__fail(c, "missing \"%s\"", top[i]);
  if (!px_jstr_eq(d, px_jobj_get(d, 0, "data_format_version"), "0.2.0"))
    return px__fail(c, "data_format_version must be \"0.2.0\"");
  if ((rc = px__time_field(c, "measurement_start_time", &meta->measurement_start_time)) != 0 ||
      (rc = px__time_field(c, "test_start_time", &tst)) != 0)
    return rc;
  if (px_jstr(d, px_jobj_get(d, 0, "probe_cc"), cc, sizeof(cc)) < 0 || !px__matches(cc, "AA"))
    return px__fail(c, "probe_cc must be two capital letters");
  if (px_jstr(d, px_jobj_get(d, 0, "probe_asn"), asn, sizeof(asn)) < 0 || !px__asn(asn))
    return px__fail(c, "probe_asn must be AS<number> (0 to 4294967295, no leading zeros)");
  if (!px_jstr_eq(d, px_jobj_get(d, 0, "probe_ip"), "127.0.0.1"))
    return px__fail(c, "probe_ip must be 127.0.0.1: volunteers' addresses are never collected");
  if (px_jstr(d, px_jobj_get(d, 0, "resolver_asn"), rasn, sizeof(rasn)) < 0 || !px__asn(rasn))
    return px__fail(c, "resolver_asn must be AS<number> (0 to 4294967295, no leading zeros)");
  static const char *const nullable[] = {"probe_network_name", "resolver_ip", "resolver_network_name"};
  for (size_t i = 0; i < 3; i++)
    if (!px__is(d, px_jobj_get(d, 0, nullable[i]), "sn"))
      return px__fail(c, "\"%s\" must be a string or null", nullable[i]);
  if (!px_jstr_eq(d, px_jobj_get(d, 0, "software_name"), "parallax"))
    return px__fail(c, "software_name must be \"parallax\"");
  if (px_jstr(d, px_jobj_get(d, 0, "test_name"), tn, sizeof(tn)) < 0 ||
      strcmp(tn, "tls_cert_consistency") != 0)
    return px__fail(c, "test_name must be \"tls_cert_consistency\"");
  if (!px__is(d, px_jobj_get(d, 0, "software_version"), "s") ||
      !px__is(d, px_jobj_get(d, 0, "test_version"), "s"))
    return px__fail(c, "software_version and test_version must be strings");
  double rt;
  if (!px_jnum(d, px_jobj_get(d, 0, "test_runtime"), &rt) || rt < 0)
    return px__fail(c, "test_runtime must be a non-negative number");
  const char *reason = "not a string";
  px_target_t target;
  if (px_jstr(d, px_jobj_get(d, 0, "input"), input, sizeof(input)) < 0 ||
      px_target_parse(input, 443, &target, &reason) != 0)
    return px__fail(c, "input is not a domain[:port]: %s", reason);
  if (px_jstr(d, px_jobj_get(d, 0, "report_id"), rid, sizeof(rid)) < 0 ||
      !px__matches(rid, "99999999T999999Z_tlscertconsistency_AA_9+_a+"))
    return px__fail(c, "report_id is malformed");
  int ann = px_jobj_get(d, 0, "annotations");
  if (px_jtype(d, ann) != PX_JT_OBJECT)
    return px__fail(c, "annotations must be an object");
  if ((rc = px_jobj_each(d, (uint32_t)ann, px__annotation_cb, c)) != 0)
    return rc;
  int keys = px_jobj_get(d, 0, "test_keys");
  if (px_jtype(d, keys) != PX_JT_OBJECT)
    return px__fail(c, "test_keys must be an object");
  if ((rc = px__only_keys(c, (uint32_t)keys, "test_keys", tk)) != 0)
    return rc;
  for (size_t i = 0; tk[i] != NULL; i++) {
    int v = px_jobj_get(d, (uint32_t)keys, tk[i]);
    bool optional = strcmp(tk[i], "control_addresses") == 0;
    if ((v >= 0 || !optional) && px_jtype(d, v) != PX_JT_ARRAY)
      return px__fail(c, "test_keys.%s must be an array", tk[i]);
  }
  if ((rc = px__each(c, px_jobj_get(d, (uint32_t)keys, "queries"), px__query)) != 0 ||
      (rc = px__each(c, px_jobj_get(d, (uint32_t)keys, "tcp_connect"), px__tcp_connect)) != 0 ||
      (rc = px__each(c, px_jobj_get(d, (uint32_t)keys, "tls_handshakes"), px__tls_handshake)) != 0)
    return rc;

  memcpy(meta->probe_cc, cc, 3); /* two letters and the NUL, checked above */
  memcpy(meta->probe_asn, asn, strlen(asn) + 1); /* at most 12 characters, checked above */
  snprintf(meta->test_name, sizeof(meta->test_name), "%s", tn);
  snprintf(meta->input, sizeof(meta->input), "%s", input);
  size_t j = 0;
  for (; target.hostname[j] != '\0'; j++)
    meta->domain[j] = (char)tolower((unsigned char)target.hostname[j]);
  meta->domain[j] = '\0';
  return 0;
}

int px_validate_measurement(const char *content, size_t n,
                            px_measurement_meta_t *meta, char *why,
                            size_t whylen) {
  px_jdoc_t doc;
  memset(meta, 0, sizeof(*meta));
  if (n == 0) {
    snprintf(why, whylen, "empty content");
    return -EINVAL;
  }
  if (memchr(content, '\n', n) != NULL || memchr(content, '\r', n) != NULL) {
    snprintf(why, whylen, "content must be one line: the compact JSON without a newline");
    return -EINVAL;
  }
  int rc = px_json_tokenize(content, n, &doc, PX_JSON_COMPACT, why, whylen);
  if (rc != 0)
    return rc == -ENOMEM ? (snprintf(why, whylen, "out of memory"), -EINVAL) : rc;
  px__ctx_t c = {&doc, why, whylen};
  rc = px__check(&c, meta);
  px_jdoc_free(&doc);
  return rc;
}

void px_measurement_uid(const px_measurement_meta_t *meta, const uint8_t sha256[32], char *out,
                        size_t n) {
  char hex[65], stamp[20];
  struct tm tm;
  px_hex_encode(sha256, 32, hex);
  gmtime_r(&meta->measurement_start_time, &tm);
  strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
  snprintf(out, n, "%s_%s_tlscertconsistency_%.16s", stamp, meta->probe_cc, hex);
}
