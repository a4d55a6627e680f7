#include "collector/analysis.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/encoding.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"

#define PX__BATCH 200

struct px_analysis {
  px_store_t *store;
  X509_STORE *trust;
  char trust_desc[512];
  px_x509_judge_cache_t *judged;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping, poked;
};

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

static json_t *px__find_tls(json_t *tls, const char *ip, int port) {
  size_t i;
  json_t *e;
  json_array_foreach(tls, i, e) {
    if (strcmp(json_string_value(json_object_get(e, "ip")), ip) == 0 &&
        json_integer_value(json_object_get(e, "port")) == port)
      return e;
  }
  return NULL;
}

static bool px__in(json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v)
    if (strcmp(json_string_value(v), s) == 0)
      return true;
  return false;
}

/* Re-validates the chain of one handshake entry and records the result. */
static void px__judge(json_t *entry, json_t *certs, const char *server_name, time_t at,
                      X509_STORE *trust, px_x509_judge_cache_t *cache) {
  STACK_OF(X509) *chain = sk_X509_new_null();
  size_t i;
  json_t *c;
  json_array_foreach(certs, i, c) {
    const char *b64 = json_string_value(json_object_get(c, "data"));
    size_t n = b64 ? strlen(b64) : 0, len;
    uint8_t *der = malloc(n + 1);
    if (der == NULL || b64 == NULL || px_base64_decode(b64, n, der, n + 1, &len) != 0) {
      free(der);
      break;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    free(der);
    if (x == NULL)
      break; /* a chain we cannot read is judged on what we could */
    sk_X509_push(chain, x);
  }
  px_x509_verdict_t v;
  if (sk_X509_num(chain) > 0 &&
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
  sk_X509_pop_free(chain, X509_free);
  ERR_clear_error();
}

json_t *px_summarize(const char *content, size_t n, time_t at, X509_STORE *trust,
                     px_x509_judge_cache_t *cache) {
  json_t *m = json_loadb(content, n, 0, NULL);
  json_t *keys = json_object_get(m, "test_keys");
  if (!json_is_object(keys)) {
    json_decref(m);
    return NULL;
  }
  json_t *addresses = json_array(), *failures = json_array(), *tls = json_array();
  bool answered = false;
  size_t i;
  json_t *e;

  json_array_foreach(json_object_get(keys, "queries"), i, e) {
    const char *f = json_string_value(json_object_get(e, "failure"));
    if (f != NULL && !px__in(failures, f))
      json_array_append_new(failures, json_string(f));
    size_t k;
    json_t *a;
    json_array_foreach(json_object_get(e, "answers"), k, a) {
      const char *ip = json_string_value(json_object_get(a, "ipv4"));
      if (ip == NULL)
        ip = json_string_value(json_object_get(a, "ipv6"));
      if (ip == NULL)
        continue;
      answered = true;
      if (!px__in(addresses, ip))
        json_array_append_new(addresses, json_string(ip));
    }
  }
  json_t *controls = json_object_get(keys, "control_addresses");
  json_array_foreach(json_object_get(keys, "tcp_connect"), i, e) {
    const char *ip = json_string_value(json_object_get(e, "ip"));
    json_int_t port = json_integer_value(json_object_get(e, "port"));
    if (ip == NULL)
      continue;
    json_t *t = json_object();
    json_object_set_new(t, "ip", json_string(ip));
    json_object_set_new(t, "port", json_integer(port));
    json_object_set_new(t, "resolved", json_boolean(px__in(addresses, ip)));
    json_object_set_new(t, "control", json_boolean(controls != NULL && px__in(controls, ip)));
    json_object_set_new(t, "connect_failure",
                        px_json_copy_or_null(json_object_get(json_object_get(e, "status"), "failure")));
    json_object_set_new(t, "completed", json_false());
    json_object_set_new(t, "failure", json_null());
    json_array_append_new(tls, t);
  }
  json_array_foreach(json_object_get(keys, "tls_handshakes"), i, e) {
    char ip[64];
    int port;
    if (px__split_address(json_string_value(json_object_get(e, "address")), ip, sizeof(ip), &port) != 0)
      continue;
    json_t *t = px__find_tls(tls, ip, port);
    if (t == NULL) {
      t = json_object();
      json_object_set_new(t, "ip", json_string(ip));
      json_object_set_new(t, "port", json_integer(port));
      json_object_set_new(t, "resolved", json_boolean(px__in(addresses, ip)));
      json_object_set_new(t, "control", json_boolean(controls != NULL && px__in(controls, ip)));
      json_object_set_new(t, "connect_failure", json_null());
      json_array_append_new(tls, t);
    }
    const char *failure = json_string_value(json_object_get(e, "failure"));
    bool completed = px__completed(failure);
    json_object_set_new(t, "completed", json_boolean(completed));
    json_object_set_new(t, "failure", completed ? json_null() : json_string(failure));
    json_t *certs = json_object_get(e, "peer_certificates");
    json_t *leaf = json_array_get(certs, 0);
    json_object_set_new(t, "leaf_sha256", px_json_string_or_null(json_string_value(json_object_get(leaf, "sha256"))));
    json_object_set_new(t, "subject", px_json_copy_or_null(json_object_get(leaf, "subject")));
    json_object_set_new(t, "issuer", px_json_copy_or_null(json_object_get(leaf, "issuer")));
    json_object_set_new(t, "self_signed", json_boolean(json_is_true(json_object_get(leaf, "self_signed"))));
    json_object_set_new(t, "agent_verified",
                        json_boolean(json_is_true(json_object_get(json_object_get(e, "verification"), "ok"))));
    const char *sni = json_string_value(json_object_get(e, "server_name"));
    px__judge(t, certs, sni, at, trust, cache);
    if (!completed)
      json_object_set_new(t, "verified", json_false());
  }

  json_t *dns = json_object(), *sum = json_object();
  json_object_set_new(dns, "answered", json_boolean(answered));
  json_object_set_new(dns, "addresses", addresses);
  json_object_set_new(dns, "failures", failures);
  json_object_set_new(sum, "v", json_integer(1));
  json_object_set_new(sum, "dns", dns);
  json_object_set_new(sum, "tls", tls);
  json_decref(m);
  return sum;
}

/* ---- the worker ---------------------------------------------------------- */

/* One measurement's summary as JSON text (*out NULL when the content is
 * no measurement: validated at ingest, so unreachable; skipped if not). */
static int px__summarize_stored(void *data, const px_stored_t *m, char **out) {
  px_analysis_t *a = data;
  json_t *sum = px_summarize(m->content, m->content_len, m->measurement_start_time, a->trust,
                             a->judged);
  *out = NULL;
  if (sum == NULL)
    return 0;
  *out = px_json_dump(sum);
  json_decref(sum);
  return *out != NULL ? 0 : -ENOMEM;
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

int px_analysis_start(px_store_t *store, const char *ca_file, px_analysis_t **out, char *err,
                      size_t errlen) {
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
  a->judged = px_x509_judge_cache_new(4096);
  a->store = store;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  if (a->judged == NULL || pthread_create(&a->thread, NULL, px__main, a) != 0) {
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
int px_analysis_catch_up(px_analysis_t *a, unsigned timeout_ms) {
  int64_t mark;
  bool reached = false;
  if (px_store_analysis_mark(a->store, &mark) != 0)
    return -EIO;
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
