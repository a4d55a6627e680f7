#include "collector/analysis/summary.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/x509_fields.h"

/* Work per measurement is bounded by the schema's own bounds; a row
 * stored by an older collector that exceeded them is read up to them. */
#define PX__MAX_ENTRIES 512
#define PX__MAX_CERTS 64
#define PX__MAX_MISMATCHES 16

/* Handshakes that finished, whatever their verdict: the failure is one of
 * the verification failures, or none. */
static bool px__completed(const char *failure) {
  return failure == NULL || strcmp(failure, "ssl_unknown_authority") == 0 ||
         strcmp(failure, "ssl_invalid_certificate") == 0 ||
         strcmp(failure, "ssl_invalid_hostname") == 0;
}

/* "ip:port" or "[ipv6]:port" into its parts. */
static int px__split_address(const char *address, char *ip, size_t iplen, int *port) {
  struct sockaddr_storage ss;
  if (address == NULL || px_addr_parse_hostport(address, 443, &ss) != 0)
    return -EINVAL;
  px_addr_format_ip((struct sockaddr *)&ss, ip, iplen);
  *port = px_addr_port((struct sockaddr *)&ss);
  return 0;
}

/* An IP address string in its canonical text form (so "2001:DB8::1" and
 * "2001:db8::1" are one address), or false when it is none. */
static bool px__canonical_ip(json_t *v, char *out, size_t n) {
  struct sockaddr_storage ss;
  const char *s = json_string_value(v);
  if (s == NULL || px_addr_parse_ip(s, &ss) != 0)
    return false;
  px_addr_format_ip((struct sockaddr *)&ss, out, n);
  return out[0] != '\0';
}

/* The reading of one measurement under construction. Strings that key the
 * maps live in keys (owned), so the maps can borrow them. */
typedef struct {
  const px_summarize_ctx_t *ctx;
  time_t at;
  json_t *addresses, *failures, *tls, *mismatches, *late;
  px_strmap_t address_set, failure_set, control_set, flows; /* flows: "ip port" -> entry */
  char **keys;
  size_t nkeys, capkeys;
  bool answered, awaiting_issuer;
} px__reading_t;

static const char *px__own(px__reading_t *r, const char *s) {
  if (r->nkeys == r->capkeys) {
    size_t cap = r->capkeys ? r->capkeys * 2 : 32;
    char **k = realloc(r->keys, cap * sizeof(char *));
    if (k == NULL)
      return NULL;
    r->keys = k;
    r->capkeys = cap;
  }
  char *copy = strdup(s);
  if (copy != NULL)
    r->keys[r->nkeys++] = copy;
  return copy;
}

static void px__reading_free(px__reading_t *r) {
  px_strmap_free(&r->address_set);
  px_strmap_free(&r->failure_set);
  px_strmap_free(&r->control_set);
  px_strmap_free(&r->flows);
  for (size_t i = 0; i < r->nkeys; i++)
    free(r->keys[i]);
  free(r->keys);
}

/* Adds s to the ordered list arr unless the set has it. */
static void px__add_unique(px__reading_t *r, px_strmap_t *set, json_t *arr, const char *s) {
  if (px_strmap_has(set, s))
    return;
  const char *k = px__own(r, s);
  if (k != NULL && px_strset_add(set, k) == 1)
    json_array_append_new(arr, json_string(k));
}

/* The flow entry of ip:port, made on first sight. */
static json_t *px__flow(px__reading_t *r, const char *ip, int port) {
  char key[PX_ADDRSTRLEN + 8];
  snprintf(key, sizeof(key), "%s %d", ip, port);
  json_t *t = px_strmap_get(&r->flows, key);
  if (t != NULL)
    return t;
  const char *k = px__own(r, key);
  bool added;
  void **slot = k != NULL ? px_strmap_slot(&r->flows, k, &added) : NULL;
  if (slot == NULL)
    return NULL;
  t = json_object();
  json_object_set_new(t, "ip", json_string(ip));
  json_object_set_new(t, "port", json_integer(port));
  json_object_set_new(t, "resolved", json_boolean(px_strmap_has(&r->address_set, ip)));
  json_object_set_new(t, "control", json_boolean(px_strmap_has(&r->control_set, ip)));
  json_object_set_new(t, "connect_failure", json_null());
  json_object_set_new(t, "completed", json_false());
  json_object_set_new(t, "failure", json_null());
  json_array_append_new(r->tls, t);
  *slot = t;
  return t;
}

static void px__read_queries(px__reading_t *r, json_t *queries) {
  size_t i, k;
  json_t *e, *a;
  json_array_foreach(queries, i, e) {
    if (i >= PX__MAX_ENTRIES)
      break;
    const char *f = json_string_value(json_object_get(e, "failure"));
    if (f != NULL)
      px__add_unique(r, &r->failure_set, r->failures, f);
    json_array_foreach(json_object_get(e, "answers"), k, a) {
      char ip[PX_ADDRSTRLEN];
      if (k >= PX__MAX_ENTRIES)
        break;
      if (!px__canonical_ip(json_object_get(a, "ipv4"), ip, sizeof(ip)) &&
          !px__canonical_ip(json_object_get(a, "ipv6"), ip, sizeof(ip)))
        continue;
      r->answered = true;
      px__add_unique(r, &r->address_set, r->addresses, ip);
    }
  }
}

/* The addresses of one df-002 entry's answers, canonical, in order. */
static json_t *px__answer_addresses(json_t *entry) {
  json_t *out = json_array();
  size_t k;
  json_t *a;
  json_array_foreach(json_object_get(entry, "answers"), k, a) {
    char ip[PX_ADDRSTRLEN];
    if (k >= PX__MAX_ENTRIES)
      break;
    if (px__canonical_ip(json_object_get(a, "ipv4"), ip, sizeof(ip)) ||
        px__canonical_ip(json_object_get(a, "ipv6"), ip, sizeof(ip)))
      json_array_append_new(out, json_string(ip));
  }
  return out;
}

static bool px__contains(json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v)
    if (strcmp(json_string_value(v), s) == 0)
      return true;
  return false;
}

/* Late replies (test_keys.dns_late_replies) that bring addresses the
 * first answer to the same query did not: the trace an on-path injector
 * leaves when the genuine answer follows its forgery. The first answer is
 * the UDP entry of queries with the same transaction id, type and
 * resolver. Both lists are short (bounded by the schema), so matching by
 * scanning is linear in practice: at most 256 x 256 comparisons. */
static void px__read_late(px__reading_t *r, json_t *queries, json_t *late) {
  size_t i, k;
  json_t *l, *q;
  json_array_foreach(late, i, l) {
    if (i >= PX__MAX_ENTRIES || json_array_size(r->late) >= 64)
      break;
    json_t *first = NULL;
    json_array_foreach(queries, k, q) {
      if (k >= PX__MAX_ENTRIES)
        break;
      if (json_equal(json_object_get(q, "transaction_id"), json_object_get(l, "transaction_id")) &&
          json_equal(json_object_get(q, "query_type"), json_object_get(l, "query_type")) &&
          json_equal(json_object_get(q, "resolver_address"), json_object_get(l, "resolver_address")) &&
          json_equal(json_object_get(q, "engine"), json_object_get(l, "engine"))) {
        first = q;
        break;
      }
    }
    if (first == NULL)
      continue;
    json_t *was = px__answer_addresses(first), *now = px__answer_addresses(l);
    bool news = false;
    size_t j;
    json_t *a;
    json_array_foreach(now, j, a)
      news |= !px__contains(was, json_string_value(a));
    double t0 = json_number_value(json_object_get(first, "t")),
           t1 = json_number_value(json_object_get(l, "t"));
    if (!news) {
      json_decref(was);
      json_decref(now);
      continue;
    }
    json_t *e = json_object();
    json_object_set_new(e, "query_type", px_json_copy_or_null(json_object_get(l, "query_type")));
    json_object_set_new(e, "resolver_address",
                        px_json_copy_or_null(json_object_get(l, "resolver_address")));
    json_object_set_new(e, "first", was);
    json_object_set_new(e, "late", now);
    json_object_set_new(e, "delay", json_real(t1 > t0 ? t1 - t0 : 0));
    json_array_append_new(r->late, e);
  }
}

static void px__mismatch(px__reading_t *r, size_t h, size_t c, const char *field) {
  if (json_array_size(r->mismatches) >= PX__MAX_MISMATCHES)
    return;
  char path[128];
  snprintf(path, sizeof(path), "test_keys.tls_handshakes[%zu].peer_certificates[%zu]%s%s", h, c,
           field[0] ? "." : "", field);
  json_array_append_new(r->mismatches, json_string(path));
}

/* The certificate fields the collector shows and analyses, derived from
 * the DER by the collector itself (the agent's copies are compared with
 * them and kept as evidence only). */
static const char *const px__derived_fields[] = {"sha256",    "spki_sha256", "subject",
                                                 "issuer",    "san",         "not_before",
                                                 "not_after", "self_signed", NULL};

bool px_pool_admits(X509 *cert, X509_STORE *trust, STACK_OF(X509) *untrusted, time_t at) {
  if (X509_check_ca(cert) <= 0 || X509_check_issued(cert, cert) == X509_V_OK)
    return false;
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  bool ok = ctx != NULL && X509_STORE_CTX_init(ctx, trust, cert, untrusted) == 1;
  if (ok) {
    /* at 0: whatever the time (a pool certificate from the database may
     * have expired since and still complete the chains of its day). */
    if (at != 0)
      X509_STORE_CTX_set_time(ctx, 0, at);
    else
      X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
    ok = X509_verify_cert(ctx) == 1;
  }
  X509_STORE_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

/* The CA certificates above the leaf that could complete other chains:
 * those that verify up to the trust store through the rest of this chain
 * and the pool (never as roots themselves). */
static void px__pool_candidates(px__reading_t *r, STACK_OF(X509) *chain) {
  const px_summarize_ctx_t *ctx = r->ctx;
  if (ctx->found == NULL || sk_X509_num(chain) < 2 ||
      sk_X509_num(ctx->found) + (ctx->pool ? sk_X509_num(ctx->pool) : 0) >= PX_POOL_MAX)
    return;
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  for (int i = 1; untrusted != NULL && i < sk_X509_num(chain); i++)
    sk_X509_push(untrusted, sk_X509_value(chain, i));
  for (int i = 0; untrusted != NULL && ctx->pool != NULL && i < sk_X509_num(ctx->pool); i++)
    sk_X509_push(untrusted, sk_X509_value(ctx->pool, i));
  for (int i = 1; untrusted != NULL && i < sk_X509_num(chain); i++) {
    X509 *c = sk_X509_value(chain, i);
    bool known = ctx->is_pooled != NULL && ctx->is_pooled(ctx->data, c);
    for (int k = 0; !known && k < sk_X509_num(ctx->found); k++)
      known = X509_cmp(c, sk_X509_value(ctx->found, k)) == 0;
    if (!known && px_pool_admits(c, ctx->trust, untrusted, r->at) && X509_up_ref(c) == 1 &&
        sk_X509_push(ctx->found, c) <= 0)
      X509_free(c);
  }
  sk_X509_free(untrusted);
}

/* Parses the presented chain of handshake h into chain, comparing each
 * certificate's claimed fields with those derived from its DER; returns
 * the leaf's derived fields (caller owns) or NULL when the leaf's DER
 * does not parse. Sets *differs when any claim of this chain differs. */
static json_t *px__read_chain(px__reading_t *r, size_t h, json_t *certs, STACK_OF(X509) *chain,
                              bool *differs) {
  size_t i;
  json_t *c, *leaf = NULL;
  *differs = false;
  json_array_foreach(certs, i, c) {
    if (i >= PX__MAX_CERTS)
      break;
    const char *b64 = json_string_value(json_object_get(c, "data"));
    size_t n = b64 ? strlen(b64) : 0, len = 0;
    uint8_t *der = n > 0 ? malloc(n + 1) : NULL;
    X509 *x = NULL;
    if (der != NULL && px_base64_decode(b64, n, der, n + 1, &len) == 0) {
      const unsigned char *p = der;
      x = d2i_X509(NULL, &p, (long)len);
    }
    free(der);
    json_t *derived = x != NULL ? px_x509_cert_json(x) : NULL;
    if (derived == NULL) {
      *differs = true;
      px__mismatch(r, h, i, "");
      X509_free(x);
      break; /* a chain we cannot read is judged on what we could */
    }
    for (size_t f = 0; px__derived_fields[f] != NULL; f++) {
      const char *name = px__derived_fields[f];
      if (!json_equal(json_object_get(c, name), json_object_get(derived, name))) {
        *differs = true;
        px__mismatch(r, h, i, name);
      }
    }
    sk_X509_push(chain, x);
    if (i == 0)
      leaf = json_incref(derived);
    json_decref(derived);
  }
  px__pool_candidates(r, chain);
  ERR_clear_error();
  return leaf;
}

/* Re-validates a chain (completing it from the pool) and records the
 * result in entry. */
static void px__judge(px__reading_t *r, json_t *entry, STACK_OF(X509) *chain,
                      const char *server_name) {
  const px_summarize_ctx_t *ctx = r->ctx;
  px_x509_verdict_t v;
  if (sk_X509_num(chain) > 0 && server_name != NULL &&
      px_x509_judge_cached_with(ctx->cache, ctx->trust, chain, ctx->pool, server_name, r->at,
                                &v) == 0 &&
      v.judged) {
    json_t *errors = json_array();
    bool want_issuer = false;
    for (int k = 0; k < v.nerrors; k++) {
      json_array_append_new(errors, json_integer(v.errors[k].code));
      want_issuer |= v.errors[k].code == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                     v.errors[k].code == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
    }
    char spki[65];
    if (v.has_issuer)
      px_hex_encode(v.issuer_spki, 32, spki);
    json_object_set_new(entry, "verified", json_boolean(px_x509_verdict_ok(&v)));
    json_object_set_new(entry, "completed_from_pool", json_boolean(v.completed_from_pool));
    json_object_set_new(entry, "issuer_spki_sha256", v.has_issuer ? json_string(spki) : json_null());
    json_object_set_new(entry, "hostname_match", json_boolean(v.hostname_match));
    json_object_set_new(entry, "errors", errors);
    json_object_set_new(entry, "judged_failure", px_json_string_or_null(px_x509_verdict_failure(&v)));
    r->awaiting_issuer |= want_issuer;
  } else {
    json_object_set_new(entry, "verified", json_false());
    json_object_set_new(entry, "completed_from_pool", json_false());
    json_object_set_new(entry, "issuer_spki_sha256", json_null());
    json_object_set_new(entry, "hostname_match", json_false());
    json_object_set_new(entry, "errors", json_array());
    json_object_set_new(entry, "judged_failure", json_null());
  }
  ERR_clear_error();
}

static void px__read_handshake(px__reading_t *r, size_t h, json_t *e) {
  char ip[64];
  int port;
  if (px__split_address(json_string_value(json_object_get(e, "address")), ip, sizeof(ip),
                        &port) != 0)
    return;
  json_t *t = px__flow(r, ip, port);
  if (t == NULL)
    return;
  json_t *jf = json_object_get(e, "failure");
  const char *failure = json_string_value(jf);
  bool completed = json_is_null(jf) || px__completed(failure);
  json_object_set_new(t, "completed", json_boolean(completed));
  json_object_set_new(t, "failure", completed || failure == NULL ? json_null() : json_string(failure));
  STACK_OF(X509) *chain = sk_X509_new_null();
  bool differs = false;
  json_t *leaf = chain != NULL ? px__read_chain(r, h, json_object_get(e, "peer_certificates"),
                                                chain, &differs)
                               : NULL;
  static const char *const copied[] = {"subject", "issuer", "not_before", "not_after", NULL};
  json_object_set_new(t, "leaf_sha256", px_json_copy_or_null(json_object_get(leaf, "sha256")));
  json_object_set_new(t, "leaf_spki_sha256",
                      px_json_copy_or_null(json_object_get(leaf, "spki_sha256")));
  for (size_t i = 0; copied[i] != NULL; i++)
    json_object_set_new(t, copied[i], px_json_copy_or_null(json_object_get(leaf, copied[i])));
  json_object_set_new(t, "self_signed", json_boolean(json_is_true(json_object_get(leaf, "self_signed"))));
  json_object_set_new(t, "claims_mismatch", json_boolean(differs));
  json_object_set_new(t, "agent_verified",
                      json_boolean(json_is_true(json_object_get(json_object_get(e, "verification"), "ok"))));
  px__judge(r, t, chain, json_string_value(json_object_get(e, "server_name")));
  if (!completed)
    json_object_set_new(t, "verified", json_false());
  json_decref(leaf);
  sk_X509_pop_free(chain, X509_free);
}

json_t *px_summarize_with(const char *content, size_t n, time_t at, const px_summarize_ctx_t *ctx) {
  json_t *m = json_loadb(content, n, 0, NULL);
  json_t *keys = json_object_get(m, "test_keys");
  if (!json_is_object(keys)) {
    json_decref(m);
    return NULL;
  }
  px__reading_t r;
  memset(&r, 0, sizeof(r));
  r.ctx = ctx;
  r.at = at;
  r.late = json_array();
  r.addresses = json_array();
  r.failures = json_array();
  r.tls = json_array();
  r.mismatches = json_array();
  size_t i;
  json_t *e;

  px__read_queries(&r, json_object_get(keys, "queries"));
  px__read_late(&r, json_object_get(keys, "queries"), json_object_get(keys, "dns_late_replies"));
  json_array_foreach(json_object_get(keys, "control_addresses"), i, e) {
    char ip[PX_ADDRSTRLEN];
    if (i < PX__MAX_ENTRIES && px__canonical_ip(e, ip, sizeof(ip))) {
      const char *k = px__own(&r, ip);
      if (k != NULL)
        px_strset_add(&r.control_set, k);
    }
  }
  json_array_foreach(json_object_get(keys, "tcp_connect"), i, e) {
    char ip[PX_ADDRSTRLEN];
    json_t *jport = json_object_get(e, "port");
    if (i >= PX__MAX_ENTRIES || !px__canonical_ip(json_object_get(e, "ip"), ip, sizeof(ip)) ||
        !json_is_integer(jport) || json_integer_value(jport) < 1 || json_integer_value(jport) > 65535)
      continue;
    json_t *t = px__flow(&r, ip, (int)json_integer_value(jport));
    json_t *f = json_object_get(json_object_get(e, "status"), "failure");
    if (t != NULL && json_is_string(f))
      json_object_set_new(t, "connect_failure", json_copy(f));
  }
  json_array_foreach(json_object_get(keys, "tls_handshakes"), i, e) {
    if (i >= PX__MAX_ENTRIES)
      break;
    if (json_is_object(e))
      px__read_handshake(&r, i, e);
  }

  json_t *dns = json_object(), *sum = json_object();
  json_object_set_new(dns, "answered", json_boolean(r.answered));
  json_object_set_new(dns, "addresses", r.addresses);
  json_object_set_new(dns, "failures", r.failures);
  json_object_set_new(dns, "late", r.late);
  json_object_set_new(sum, "v", json_integer(PX_SUMMARY_VERSION));
  json_object_set_new(sum, "dns", dns);
  json_object_set_new(sum, "tls", r.tls);
  json_object_set_new(sum, "claims_mismatch", r.mismatches);
  json_object_set_new(sum, "awaiting_issuer", json_boolean(r.awaiting_issuer));
  px__reading_free(&r);
  json_decref(m);
  return sum;
}


json_t *px_summarize(const char *content, size_t n, time_t at, X509_STORE *trust,
                     px_x509_judge_cache_t *cache) {
  px_summarize_ctx_t ctx = {.trust = trust, .cache = cache};
  return px_summarize_with(content, n, at, &ctx);
}
