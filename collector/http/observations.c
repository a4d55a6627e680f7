/* One CSV row per observation of a stored measurement
 * (collector/http/observations.h, the columns in docs/api.md). Every value
 * is the measurement's own, as the agent wrote it (the subject of a
 * certificate may hold anything): the quoting keeps a row a row, and a
 * spreadsheet user should import the columns as text. */
#include "collector/http/observations.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char px_observations_csv_header[] =
    "measurement_uid,measurement_start_time,probe_cc,probe_asn,input,observation,"
    "transaction_id,t0,t,engine,resolver_address,hostname,query_type,rcode,answer_type,answer,"
    "ttl,ip,port,server_name,tls_version,cipher_suite,failure,leaf_sha256,leaf_subject,"
    "leaf_issuer,verification_ok,hostname_match\r\n";

enum {
  PX__C_UID,
  PX__C_START,
  PX__C_CC,
  PX__C_ASN,
  PX__C_INPUT,
  PX__C_OBSERVATION,
  PX__C_TXID,
  PX__C_T0,
  PX__C_T,
  PX__C_ENGINE,
  PX__C_RESOLVER,
  PX__C_HOSTNAME,
  PX__C_QTYPE,
  PX__C_RCODE,
  PX__C_ATYPE,
  PX__C_ANSWER,
  PX__C_TTL,
  PX__C_IP,
  PX__C_PORT,
  PX__C_SNI,
  PX__C_TLS_VERSION,
  PX__C_CIPHER,
  PX__C_FAILURE,
  PX__C_LEAF_SHA256,
  PX__C_LEAF_SUBJECT,
  PX__C_LEAF_ISSUER,
  PX__C_VERIFIED,
  PX__C_HOSTNAME_MATCH,
  PX__NCOLS
};

/* A row being filled: each column a JSON value of the measurement (or
 * a literal), NULL for an empty field. */
typedef struct {
  const json_t *col[PX__NCOLS];
  const char *literal[PX__NCOLS];
} px__row_t;

typedef struct {
  char **out;
  size_t *len, *cap;
} px__buf_t;

static int px__put(px__buf_t *b, const char *s, size_t n) {
  if (*b->len + n + 1 > *b->cap) {
    size_t cap = *b->cap ? *b->cap : 65536;
    while (cap < *b->len + n + 1)
      cap *= 2;
    char *p = realloc(*b->out, cap);
    if (p == NULL)
      return -ENOMEM;
    *b->out = p;
    *b->cap = cap;
  }
  memcpy(*b->out + *b->len, s, n);
  *b->len += n;
  (*b->out)[*b->len] = '\0';
  return 0;
}

/* One field, quoted when it must be (RFC 4180 2.6, 2.7). */
static int px__field(px__buf_t *b, const char *s, size_t n) {
  if (strcspn(s, ",\"\r\n") >= n)
    return px__put(b, s, n);
  int rc = px__put(b, "\"", 1);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = s[i] == '"' ? px__put(b, "\"\"", 2) : px__put(b, s + i, 1);
  return rc == 0 ? px__put(b, "\"", 1) : rc;
}

/* A JSON scalar as text: strings as they are (an embedded NUL ends the
 * field), numbers as JSON writes them, booleans true/false; null, objects
 * and arrays as an empty field. */
static int px__value(px__buf_t *b, const json_t *v) {
  char num[64];
  switch (json_typeof(v)) {
  case JSON_STRING:
    return px__field(b, json_string_value(v), strlen(json_string_value(v)));
  case JSON_INTEGER:
    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return px__put(b, num, strlen(num));
  case JSON_REAL:
    snprintf(num, sizeof(num), "%.9g", json_real_value(v));
    return px__put(b, num, strlen(num));
  case JSON_TRUE:
    return px__put(b, "true", 4);
  case JSON_FALSE:
    return px__put(b, "false", 5);
  default:
    return 0;
  }
}

static int px__emit(px__buf_t *b, const px__row_t *r) {
  int rc = 0;
  for (int i = 0; rc == 0 && i < PX__NCOLS; i++) {
    if (i > 0)
      rc = px__put(b, ",", 1);
    if (rc == 0 && r->literal[i] != NULL)
      rc = px__field(b, r->literal[i], strlen(r->literal[i]));
    else if (rc == 0 && r->col[i] != NULL)
      rc = px__value(b, r->col[i]);
  }
  return rc == 0 ? px__put(b, "\r\n", 2) : rc;
}

static void px__flow(px__row_t *r, const json_t *o) {
  r->col[PX__C_TXID] = json_object_get(o, "transaction_id");
  r->col[PX__C_T0] = json_object_get(o, "t0");
  r->col[PX__C_T] = json_object_get(o, "t");
}

/* queries[] or dns_late_replies[]: a row per answer, one for a query
 * without any (its failure or rcode says why). */
static int px__dns(px__buf_t *b, const px__row_t *base, const json_t *list, const char *what) {
  size_t i, k;
  const json_t *q, *a;
  int rc = 0;
  json_array_foreach(list, i, q) {
    px__row_t r = *base;
    r.literal[PX__C_OBSERVATION] = what;
    px__flow(&r, q);
    r.col[PX__C_ENGINE] = json_object_get(q, "engine");
    r.col[PX__C_RESOLVER] = json_object_get(q, "resolver_address");
    r.col[PX__C_HOSTNAME] = json_object_get(q, "hostname");
    r.col[PX__C_QTYPE] = json_object_get(q, "query_type");
    r.col[PX__C_RCODE] = json_object_get(q, "rcode");
    r.col[PX__C_FAILURE] = json_object_get(q, "failure");
    const json_t *answers = json_object_get(q, "answers");
    if (json_array_size(answers) == 0 && (rc = px__emit(b, &r)) != 0)
      return rc;
    json_array_foreach(answers, k, a) {
      px__row_t ar = r;
      const json_t *v = json_object_get(a, "ipv4");
      if (v == NULL)
        v = json_object_get(a, "ipv6");
      if (v == NULL)
        v = json_object_get(a, "hostname");
      ar.col[PX__C_ATYPE] = json_object_get(a, "answer_type");
      ar.col[PX__C_ANSWER] = v;
      ar.col[PX__C_TTL] = json_object_get(a, "ttl");
      if ((rc = px__emit(b, &ar)) != 0)
        return rc;
    }
  }
  return rc;
}

/* "ip:port" or "[ip]:port" into its parts. */
static void px__split_address(const char *s, char *ip, size_t iplen, char *port, size_t portlen) {
  ip[0] = port[0] = '\0';
  if (s == NULL)
    return;
  const char *colon = strrchr(s, ':');
  if (colon == NULL) {
    snprintf(ip, iplen, "%s", s);
    return;
  }
  size_t n = (size_t)(colon - s);
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
    snprintf(ip, iplen, "%.*s", (int)(n - 2), s + 1);
  else
    snprintf(ip, iplen, "%.*s", (int)n, s);
  snprintf(port, portlen, "%s", colon + 1);
}

static int px__tls(px__buf_t *b, const px__row_t *base, const json_t *list) {
  size_t i;
  const json_t *h;
  json_array_foreach(list, i, h) {
    px__row_t r = *base;
    char ip[128], port[16];
    r.literal[PX__C_OBSERVATION] = "tls_handshake";
    px__flow(&r, h);
    px__split_address(json_string_value(json_object_get(h, "address")), ip, sizeof(ip), port,
                      sizeof(port));
    r.literal[PX__C_IP] = ip;
    r.literal[PX__C_PORT] = port;
    r.col[PX__C_SNI] = json_object_get(h, "server_name");
    r.col[PX__C_TLS_VERSION] = json_object_get(h, "tls_version");
    r.col[PX__C_CIPHER] = json_object_get(h, "cipher_suite");
    r.col[PX__C_FAILURE] = json_object_get(h, "failure");
    const json_t *leaf = json_array_get(json_object_get(h, "peer_certificates"), 0);
    r.col[PX__C_LEAF_SHA256] = json_object_get(leaf, "sha256");
    r.col[PX__C_LEAF_SUBJECT] = json_object_get(leaf, "subject");
    r.col[PX__C_LEAF_ISSUER] = json_object_get(leaf, "issuer");
    const json_t *v = json_object_get(h, "verification");
    r.col[PX__C_VERIFIED] = json_object_get(v, "ok");
    r.col[PX__C_HOSTNAME_MATCH] = json_object_get(v, "hostname_match");
    int rc = px__emit(b, &r);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int px__tcp(px__buf_t *b, const px__row_t *base, const json_t *list) {
  size_t i;
  const json_t *c;
  json_array_foreach(list, i, c) {
    px__row_t r = *base;
    r.literal[PX__C_OBSERVATION] = "tcp_connect";
    px__flow(&r, c);
    r.col[PX__C_IP] = json_object_get(c, "ip");
    r.col[PX__C_PORT] = json_object_get(c, "port");
    r.col[PX__C_FAILURE] = json_object_get(json_object_get(c, "status"), "failure");
    int rc = px__emit(b, &r);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* (cap is written through the px__buf_t it goes into, which the check
 * below cannot follow.) */
int px_observations_csv(const char *uid, const char *content, size_t content_len, char **out,
                        size_t *len, size_t *cap) { /* NOLINT(readability-non-const-parameter) */
  json_t *m = json_loadb(content, content_len, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(m)) {
    json_decref(m);
    return -EINVAL;
  }
  px__buf_t b = {out, len, cap};
  size_t mark = *len;
  px__row_t base = {0};
  base.literal[PX__C_UID] = uid;
  base.col[PX__C_START] = json_object_get(m, "measurement_start_time");
  base.col[PX__C_CC] = json_object_get(m, "probe_cc");
  base.col[PX__C_ASN] = json_object_get(m, "probe_asn");
  base.col[PX__C_INPUT] = json_object_get(m, "input");
  const json_t *tk = json_object_get(m, "test_keys");
  int rc = px__dns(&b, &base, json_object_get(tk, "queries"), "dns_answer");
  if (rc == 0)
    rc = px__dns(&b, &base, json_object_get(tk, "dns_late_replies"), "dns_late_answer");
  if (rc == 0)
    rc = px__tcp(&b, &base, json_object_get(tk, "tcp_connect"));
  if (rc == 0)
    rc = px__tls(&b, &base, json_object_get(tk, "tls_handshakes"));
  if (rc != 0)
    *len = mark; /* no half measurement */
  json_decref(m);
  return rc;
}
