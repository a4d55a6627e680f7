#include "collector/analysis.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector/analysis_worker.h"
#include "collector/metrics.h"
#include "collector/strmap.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "common/x509_fields.h"

#define PX__BATCH 200

struct px_analysis {
  px_store_t *store;
  X509_STORE *trust;
  char trust_desc[512];
  px_x509_judge_cache_t *judged;
  px_aworker_t *worker; /* NULL: summaries made in this process (tests) */
  bool worker_broken;   /* (logged once until it works again) */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping, poked;
};

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
  json_t *addresses, *failures, *tls, *mismatches;
  px_strmap_t address_set, failure_set, control_set, flows; /* flows: "ip port" -> entry */
  char **keys;
  size_t nkeys, capkeys;
  bool answered;
} px__reading_t;

static const char *px__own(px__reading_t *r, const char *s) {
  if (r->nkeys == r->capkeys) {
    size_t cap = r->capkeys ? r->capkeys * 2 : 32;
    char **k = realloc(r->keys, cap * sizeof(*k));
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
  ERR_clear_error();
  return leaf;
}

/* Re-validates a chain and records the result in entry. */
static void px__judge(json_t *entry, STACK_OF(X509) *chain, const char *server_name, time_t at,
                      X509_STORE *trust, px_x509_judge_cache_t *cache) {
  px_x509_verdict_t v;
  if (sk_X509_num(chain) > 0 && server_name != NULL &&
      px_x509_judge_cached(cache, trust, chain, server_name, at, &v) == 0 && v.judged) {
    json_t *errors = json_array();
    for (int k = 0; k < v.nerrors; k++)
      json_array_append_new(errors, json_integer(v.errors[k].code));
    json_object_set_new(entry, "verified", json_boolean(px_x509_verdict_ok(&v)));
    json_object_set_new(entry, "hostname_match", json_boolean(v.hostname_match));
    json_object_set_new(entry, "errors", errors);
    json_object_set_new(entry, "judged_failure", px_json_string_or_null(px_x509_verdict_failure(&v)));
  } else {
    json_object_set_new(entry, "verified", json_false());
    json_object_set_new(entry, "hostname_match", json_false());
    json_object_set_new(entry, "errors", json_array());
    json_object_set_new(entry, "judged_failure", json_null());
  }
  ERR_clear_error();
}

static void px__read_handshake(px__reading_t *r, size_t h, json_t *e, time_t at,
                               X509_STORE *trust, px_x509_judge_cache_t *cache) {
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
  px__judge(t, chain, json_string_value(json_object_get(e, "server_name")), at, trust, cache);
  if (!completed)
    json_object_set_new(t, "verified", json_false());
  json_decref(leaf);
  sk_X509_pop_free(chain, X509_free);
}

json_t *px_summarize(const char *content, size_t n, time_t at, X509_STORE *trust,
                     px_x509_judge_cache_t *cache) {
  json_t *m = json_loadb(content, n, 0, NULL);
  json_t *keys = json_object_get(m, "test_keys");
  if (!json_is_object(keys)) {
    json_decref(m);
    return NULL;
  }
  px__reading_t r;
  memset(&r, 0, sizeof(r));
  r.addresses = json_array();
  r.failures = json_array();
  r.tls = json_array();
  r.mismatches = json_array();
  size_t i;
  json_t *e;

  px__read_queries(&r, json_object_get(keys, "queries"));
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
      px__read_handshake(&r, i, e, at, trust, cache);
  }

  json_t *dns = json_object(), *sum = json_object();
  json_object_set_new(dns, "answered", json_boolean(r.answered));
  json_object_set_new(dns, "addresses", r.addresses);
  json_object_set_new(dns, "failures", r.failures);
  json_object_set_new(sum, "v", json_integer(PX_SUMMARY_VERSION));
  json_object_set_new(sum, "dns", dns);
  json_object_set_new(sum, "tls", r.tls);
  json_object_set_new(sum, "claims_mismatch", r.mismatches);
  px__reading_free(&r);
  json_decref(m);
  return sum;
}

/* ---- the analysis thread -------------------------------------------------- */

static bool px__has_mismatch(const char *summary) {
  json_t *sum = json_loads(summary, 0, NULL);
  bool any = json_array_size(json_object_get(sum, "claims_mismatch")) > 0;
  json_decref(sum);
  return any;
}

static void px__quarantine(px_analysis_t *a, const px_stored_t *m, const char *why,
                           px_analysis_out_t *out) {
  out->quarantine = strdup(why);
  fprintf(stderr, "parallax-collector: analysis: measurement %s quarantined: %s\n", m->uid, why);
  px_metrics_quarantined(1);
  (void)a;
}

/* One measurement's summary (in the worker process when there is one),
 * or its quarantine. A worker that cannot work at all abandons the batch
 * (-EAGAIN): the measurements are not to blame and stay queued. */
static int px__summarize_stored(void *data, const px_stored_t *m, px_analysis_out_t *out) {
  px_analysis_t *a = data;
  char why[256];
  if (a->worker == NULL) {
    json_t *sum = px_summarize(m->content, m->content_len, m->measurement_start_time, a->trust,
                               a->judged);
    if (sum == NULL) {
      px__quarantine(a, m, "the analysis cannot read it as a measurement", out);
      return 0;
    }
    out->claims_mismatch = json_array_size(json_object_get(sum, "claims_mismatch")) > 0;
    out->summary = px_json_dump(sum);
    json_decref(sum);
    return out->summary != NULL ? 0 : -ENOMEM;
  }
  char *text = NULL;
  int rc = px_aworker_summarize(a->worker, m->content, m->content_len, m->measurement_start_time,
                                &text, why, sizeof(why));
  if (rc < 0) {
    if (!a->worker_broken)
      fprintf(stderr, "parallax-collector: analysis: %s; retrying\n", why);
    a->worker_broken = true;
    return -EAGAIN;
  }
  a->worker_broken = false;
  if (rc == PX_AWORKER_OK) {
    out->summary = text;
    out->claims_mismatch = px__has_mismatch(text);
    return 0;
  }
  px__quarantine(a, m, why, out);
  return 0;
}

/* Summarises the next batch; returns how many measurements it covered. */
static int px__batch(px_analysis_t *a) {
  return px_store_analyze(a->store, PX__BATCH, px__summarize_stored, a);
}

static void *px__main(void *arg) {
  px_analysis_t *a = arg;
  pthread_mutex_lock(&a->mu);
  while (!a->stopping) {
    a->poked = false;
    pthread_mutex_unlock(&a->mu);
    int n = px__batch(a);
    pthread_mutex_lock(&a->mu);
    if (n > 0 || a->poked || a->stopping)
      continue;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

static void px__poke(void *data) {
  px_analysis_t *a = data;
  pthread_mutex_lock(&a->mu);
  a->poked = true;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

int px_analysis_start(px_store_t *store, const char *ca_file, const char *worker_exe,
                      px_analysis_t **out, char *err, size_t errlen) {
  px_analysis_t *a = calloc(1, sizeof(*a));
  char sha[65];
  if (a == NULL)
    return -ENOMEM;
  int rc = px_trust_store_load(ca_file, &a->trust, a->trust_desc, sizeof(a->trust_desc), sha,
                               err, errlen);
  if (rc != 0) {
    free(a);
    return rc;
  }
  bool requeued = false;
  int64_t quarantined = 0;
  if (worker_exe != NULL && px_aworker_new(worker_exe, ca_file, 0, &a->worker) != 0)
    rc = -ENOMEM;
  if (rc == 0 && (rc = px_store_analysis_version(store, PX_SUMMARY_VERSION, &requeued)) != 0)
    snprintf(err, errlen, "cannot record the analysis version in the database");
  if (rc == 0 && px_store_quarantined(store, 0, NULL, NULL, &quarantined) == 0)
    px_metrics_quarantined_known(quarantined);
  if (rc != 0) {
    px_aworker_free(a->worker);
    X509_STORE_free(a->trust);
    free(a);
    return rc;
  }
  if (requeued)
    fprintf(stderr, "parallax-collector: analysis: summaries are older than version %d: every "
                    "measurement is analysed again in the background\n",
            PX_SUMMARY_VERSION);
  a->judged = px_x509_judge_cache_new(4096);
  a->store = store;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  if (a->judged == NULL || pthread_create(&a->thread, NULL, px__main, a) != 0) {
    px_aworker_free(a->worker);
    X509_STORE_free(a->trust);
    px_x509_judge_cache_free(a->judged);
    free(a);
    snprintf(err, errlen, "cannot start the analysis thread");
    return -ENOMEM;
  }
  px_store_set_commit_hook(store, px__poke, a);
  *out = a;
  return 0;
}

void px_analysis_stop(px_analysis_t *a) {
  if (a == NULL)
    return;
  px_store_set_commit_hook(a->store, NULL, NULL);
  pthread_mutex_lock(&a->mu);
  a->stopping = true;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  pthread_join(a->thread, NULL);
  px_aworker_free(a->worker);
  X509_STORE_free(a->trust);
  px_x509_judge_cache_free(a->judged);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  free(a);
}

const char *px_analysis_trust(const px_analysis_t *a) {
  return a->trust_desc;
}

/* The store's mark covers every commit made before the call, on any node
 * sharing the database; waiting for it covers what this request's client
 * (or anyone) was acknowledged before asking. */
int px_analysis_catch_up(px_analysis_t *a, unsigned timeout_ms, int64_t *mark_out) {
  int64_t mark;
  bool reached = false;
  if (px_store_analysis_mark(a->store, &mark) != 0)
    return -EIO;
  if (mark_out != NULL)
    *mark_out = mark;
  for (unsigned waited = 0;; waited += 10) {
    if (px_store_analysis_reached(a->store, mark, &reached) != 0)
      return -EIO;
    if (reached)
      return 0;
    if (waited >= timeout_ms)
      return -ETIMEDOUT;
    px__poke(a);
    px_sleep_ms(10);
  }
}
