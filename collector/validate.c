#include "collector/validate.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/timeutil.h"

typedef struct {
  char *why;
  size_t whylen;
} px__ctx_t;

static int px__fail(px__ctx_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why, c->whylen, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static bool px__matches(const char *s, const char *shape) {
  /* A tiny pattern language: 'A' upper letter, 'a' alnum, '9' digit,
   * '+' one or more of the previous class, anything else literal. */
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

static const char *px__str(json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

static int px__require(px__ctx_t *c, json_t *o, const char *where, const char *key,
                       const char *types) {
  json_t *v = json_object_get(o, key);
  if (v == NULL)
    return px__fail(c, "%s: missing \"%s\"", where, key);
  bool ok = (strchr(types, 's') && json_is_string(v)) || (strchr(types, 'n') && json_is_null(v)) ||
            (strchr(types, 'i') && json_is_integer(v)) || (strchr(types, 'r') && json_is_number(v)) ||
            (strchr(types, 'b') && json_is_boolean(v)) || (strchr(types, 'o') && json_is_object(v)) ||
            (strchr(types, 'a') && json_is_array(v));
  if (!ok)
    return px__fail(c, "%s: \"%s\" has the wrong type", where, key);
  return 0;
}

static int px__only_keys(px__ctx_t *c, json_t *o, const char *where, const char *const *keys) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    bool known = false;
    for (size_t i = 0; keys[i] != NULL; i++)
      if (strcmp(keys[i], k) == 0)
        known = true;
    if (!known)
      return px__fail(c, "%s: unknown key \"%s\"", where, k);
  }
  return 0;
}

static int px__failure(px__ctx_t *c, json_t *v, const char *where) {
  if (json_is_null(v))
    return 0;
  const char *s = json_string_value(v);
  if (s == NULL || s[0] == '\0')
    return px__fail(c, "%s: failure must be null or a failure string", where);
  return 0;
}

static int px__times(px__ctx_t *c, json_t *o, const char *where) {
  double t0 = json_number_value(json_object_get(o, "t0"));
  double t = json_number_value(json_object_get(o, "t"));
  if (!json_is_number(json_object_get(o, "t0")) || !json_is_number(json_object_get(o, "t")) ||
      t0 < 0 || t < 0)
    return px__fail(c, "%s: t0 and t must be non-negative numbers", where);
  json_t *id = json_object_get(o, "transaction_id");
  if (!json_is_integer(id) || json_integer_value(id) < 1)
    return px__fail(c, "%s: transaction_id must be a positive integer", where);
  return 0;
}

static int px__query(px__ctx_t *c, json_t *q, size_t i) {
  static const char *const keys[] = {"engine", "resolver_address", "hostname", "query_type",
                                     "rcode", "truncated", "answers", "raw_response", "failure",
                                     "t0", "t", "transaction_id", NULL};
  char where[48];
  snprintf(where, sizeof(where), "queries[%zu]", i);
  if (!json_is_object(q))
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
  if (rc == 0) rc = px__failure(c, json_object_get(q, "failure"), where);
  if (rc == 0) rc = px__times(c, q, where);
  if (rc != 0)
    return rc;
  const char *engine = px__str(q, "engine"), *type = px__str(q, "query_type");
  if (strcmp(engine, "udp") != 0 && strcmp(engine, "tcp") != 0)
    return px__fail(c, "%s: engine must be udp or tcp", where);
  if (strcmp(type, "A") != 0 && strcmp(type, "AAAA") != 0)
    return px__fail(c, "%s: query_type must be A or AAAA", where);
  size_t k;
  json_t *a;
  json_array_foreach(json_object_get(q, "answers"), k, a) {
    const char *at = px__str(a, "answer_type");
    if (!json_is_object(a) || at == NULL)
      return px__fail(c, "%s.answers[%zu]: needs answer_type", where, k);
    const char *field = strcmp(at, "A") == 0 ? "ipv4" : strcmp(at, "AAAA") == 0 ? "ipv6"
                                                  : strcmp(at, "CNAME") == 0 ? "hostname" : NULL;
    if (field == NULL || !json_is_string(json_object_get(a, field)))
      return px__fail(c, "%s.answers[%zu]: bad %s answer", where, k, at);
  }
  return 0;
}

static int px__tcp_connect(px__ctx_t *c, json_t *e, size_t i) {
  static const char *const keys[] = {"ip", "port", "status", "t0", "t", "transaction_id", NULL};
  char where[48];
  snprintf(where, sizeof(where), "tcp_connect[%zu]", i);
  if (!json_is_object(e))
    return px__fail(c, "%s: not an object", where);
  int rc = px__only_keys(c, e, where, keys);
  if (rc == 0) rc = px__require(c, e, where, "ip", "s");
  if (rc == 0) rc = px__require(c, e, where, "port", "i");
  if (rc == 0) rc = px__require(c, e, where, "status", "o");
  if (rc == 0) rc = px__times(c, e, where);
  if (rc != 0)
    return rc;
  json_int_t port = json_integer_value(json_object_get(e, "port"));
  if (port < 1 || port > 65535)
    return px__fail(c, "%s: port out of range", where);
  json_t *st = json_object_get(e, "status");
  if (!json_is_boolean(json_object_get(st, "success")))
    return px__fail(c, "%s: status.success must be a boolean", where);
  return px__failure(c, json_object_get(st, "failure"), where);
}

/* The certificate's sha256 must be the hash of the DER it carries: the
 * collector indexes and compares by it. */
static int px__certificate(px__ctx_t *c, json_t *cert, const char *where) {
  const char *data = px__str(cert, "data"), *sha = px__str(cert, "sha256");
  if (!json_is_object(cert) || data == NULL || sha == NULL ||
      strcmp(px__str(cert, "format") ? px__str(cert, "format") : "", "base64") != 0)
    return px__fail(c, "%s: needs format \"base64\", data and sha256", where);
  size_t n = strlen(data), der_len;
  uint8_t *der = malloc(n + 1);
  if (der == NULL)
    return px__fail(c, "out of memory");
  if (px_base64_decode(data, n, der, n + 1, &der_len) != 0 || der_len == 0) {
    free(der);
    return px__fail(c, "%s: data is not base64", where);
  }
  uint8_t md[32];
  unsigned md_len;
  char hex[65];
  EVP_Digest(der, der_len, md, &md_len, EVP_sha256(), NULL);
  free(der);
  px_hex_encode(md, 32, hex);
  if (strcmp(hex, sha) != 0)
    return px__fail(c, "%s: sha256 does not match the certificate's DER", where);
  return 0;
}

static int px__tls_handshake(px__ctx_t *c, json_t *h, size_t i) {
  static const char *const keys[] = {"address", "server_name", "tls_version", "cipher_suite",
                                     "negotiated_protocol", "no_tls_verify", "peer_certificates",
                                     "verification", "server_alert", "failure", "failure_detail",
                                     "t0", "t", "transaction_id", NULL};
  char where[64];
  snprintf(where, sizeof(where), "tls_handshakes[%zu]", i);
  if (!json_is_object(h))
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
  if (rc == 0) rc = px__failure(c, json_object_get(h, "failure"), where);
  if (rc == 0) rc = px__times(c, h, where);
  size_t k;
  json_t *cert;
  json_array_foreach(json_object_get(h, "peer_certificates"), k, cert) {
    char cwhere[128];
    snprintf(cwhere, sizeof(cwhere), "%s.peer_certificates[%zu]", where, k);
    if (rc == 0)
      rc = px__certificate(c, cert, cwhere);
  }
  json_t *v = json_object_get(h, "verification");
  if (rc == 0 && json_is_object(v) &&
      (!json_is_boolean(json_object_get(v, "ok")) || !json_is_array(json_object_get(v, "errors")) ||
       !json_is_boolean(json_object_get(v, "hostname_match"))))
    rc = px__fail(c, "%s: verification needs ok, errors, hostname_match", where);
  return rc;
}

static int px__time_field(px__ctx_t *c, json_t *m, const char *key, time_t *out) {
  const char *s = px__str(m, key);
  if (s == NULL || !px__matches(s, "9999-99-99 99:99:99") || px_time_parse_utc(s, out) != 0)
    return px__fail(c, "\"%s\" must be a UTC time YYYY-MM-DD HH:MM:SS", key);
  return 0;
}

static int px__check(px__ctx_t *c, json_t *m, px_measurement_meta_t *meta) {
  static const char *const top[] = {
      "data_format_version", "measurement_start_time", "test_start_time", "probe_cc",
      "probe_asn", "probe_network_name", "probe_ip", "resolver_ip", "resolver_asn",
      "resolver_network_name", "software_name", "software_version", "test_name",
      "test_version", "test_runtime", "input", "report_id", "annotations", "test_keys", NULL};
  static const char *const tk[] = {"queries", "tcp_connect", "tls_handshakes",
                                   "skipped_addresses", NULL};
  int rc;
  time_t tst;

  if (!json_is_object(m))
    return px__fail(c, "a measurement is a JSON object");
  if ((rc = px__only_keys(c, m, "measurement", top)) != 0)
    return rc;
  for (size_t i = 0; top[i] != NULL; i++)
    if (json_object_get(m, top[i]) == NULL)
      return px__fail(c, "missing \"%s\"", top[i]);
  if (strcmp(px__str(m, "data_format_version") ? px__str(m, "data_format_version") : "", "0.2.0") != 0)
    return px__fail(c, "data_format_version must be \"0.2.0\"");
  if ((rc = px__time_field(c, m, "measurement_start_time", &meta->measurement_start_time)) != 0 ||
      (rc = px__time_field(c, m, "test_start_time", &tst)) != 0)
    return rc;
  const char *cc = px__str(m, "probe_cc"), *asn = px__str(m, "probe_asn");
  if (cc == NULL || !px__matches(cc, "AA"))
    return px__fail(c, "probe_cc must be two capital letters");
  if (asn == NULL || strncmp(asn, "AS", 2) != 0 || !px__matches(asn + 2, "9+") || strlen(asn) > 12)
    return px__fail(c, "probe_asn must be AS<number>");
  if (strcmp(px__str(m, "probe_ip") ? px__str(m, "probe_ip") : "", "127.0.0.1") != 0)
    return px__fail(c, "probe_ip must be 127.0.0.1: volunteers' addresses are never collected");
  const char *rasn = px__str(m, "resolver_asn");
  if (rasn == NULL || strncmp(rasn, "AS", 2) != 0 || !px__matches(rasn + 2, "9+"))
    return px__fail(c, "resolver_asn must be AS<number>");
  static const char *const nullable[] = {"probe_network_name", "resolver_ip", "resolver_network_name"};
  for (size_t i = 0; i < 3; i++) {
    json_t *v = json_object_get(m, nullable[i]);
    if (!json_is_string(v) && !json_is_null(v))
      return px__fail(c, "\"%s\" must be a string or null", nullable[i]);
  }
  if (strcmp(px__str(m, "software_name") ? px__str(m, "software_name") : "", "parallax") != 0)
    return px__fail(c, "software_name must be \"parallax\"");
  const char *tn = px__str(m, "test_name");
  if (tn == NULL || strcmp(tn, "tls_cert_consistency") != 0)
    return px__fail(c, "test_name must be \"tls_cert_consistency\"");
  if (!json_is_string(json_object_get(m, "software_version")) ||
      !json_is_string(json_object_get(m, "test_version")))
    return px__fail(c, "software_version and test_version must be strings");
  json_t *rt = json_object_get(m, "test_runtime");
  if (!json_is_number(rt) || json_number_value(rt) < 0)
    return px__fail(c, "test_runtime must be a non-negative number");
  const char *input = px__str(m, "input"), *reason = NULL;
  px_target_t target;
  if (input == NULL || px_target_parse(input, 443, &target, &reason) != 0)
    return px__fail(c, "input is not a domain[:port]: %s", reason ? reason : "not a string");
  const char *rid = px__str(m, "report_id");
  if (rid == NULL || !px__matches(rid, "99999999T999999Z_tlscertconsistency_AA_9+_a+"))
    return px__fail(c, "report_id is malformed");
  json_t *ann = json_object_get(m, "annotations");
  if (!json_is_object(ann))
    return px__fail(c, "annotations must be an object");
  const char *k;
  json_t *v;
  json_object_foreach(ann, k, v) {
    if (!json_is_string(v))
      return px__fail(c, "annotations.%s must be a string", k);
  }
  json_t *keys = json_object_get(m, "test_keys");
  if (!json_is_object(keys))
    return px__fail(c, "test_keys must be an object");
  if ((rc = px__only_keys(c, keys, "test_keys", tk)) != 0)
    return rc;
  for (size_t i = 0; tk[i] != NULL; i++)
    if (!json_is_array(json_object_get(keys, tk[i])))
      return px__fail(c, "test_keys.%s must be an array", tk[i]);
  size_t i;
  json_array_foreach(json_object_get(keys, "queries"), i, v)
    if ((rc = px__query(c, v, i)) != 0)
      return rc;
  json_array_foreach(json_object_get(keys, "tcp_connect"), i, v)
    if ((rc = px__tcp_connect(c, v, i)) != 0)
      return rc;
  json_array_foreach(json_object_get(keys, "tls_handshakes"), i, v)
    if ((rc = px__tls_handshake(c, v, i)) != 0)
      return rc;

  snprintf(meta->probe_cc, sizeof(meta->probe_cc), "%s", cc);
  snprintf(meta->probe_asn, sizeof(meta->probe_asn), "%s", asn);
  snprintf(meta->test_name, sizeof(meta->test_name), "%s", tn);
  snprintf(meta->input, sizeof(meta->input), "%s", input);
  for (size_t j = 0; target.hostname[j] != '\0'; j++)
    meta->domain[j] = (char)tolower((unsigned char)target.hostname[j]);
  meta->domain[strlen(target.hostname)] = '\0';
  return 0;
}

int px_validate_measurement(const char *content, size_t n,
                            px_measurement_meta_t *meta, char *why,
                            size_t whylen) {
  px__ctx_t c = {why, whylen};
  json_error_t jerr;

  memset(meta, 0, sizeof(*meta));
  if (n == 0)
    return px__fail(&c, "empty content");
  if (memchr(content, '\n', n) != NULL || memchr(content, '\r', n) != NULL)
    return px__fail(&c, "content must be one line: the compact JSON without a newline");
  json_t *m = json_loadb(content, n, JSON_REJECT_DUPLICATES, &jerr);
  if (m == NULL)
    return px__fail(&c, "content is not JSON: %s (column %d)", jerr.text, jerr.column);
  int rc = px__check(&c, m, meta);
  json_decref(m);
  return rc;
}
