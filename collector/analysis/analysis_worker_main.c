/* The analysis worker process (collector/analysis/analysis_worker.h): what runs
 * on the other side of the socket. */
#include <errno.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "collector/analysis/analysis_worker.h"
#include "collector/analysis/analysis_worker_proto.h"
#include "common/strmap.h"
#include "collector/analysis/summary.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/x509_fields.h"


static int px__read_all(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int px__write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int px__answer(uint32_t outcome, const char *text) {
  uint32_t head[3] = {PX__MAGIC, outcome, (uint32_t)strlen(text)};
  return px__write_all(STDOUT_FILENO, head, sizeof(head)) == 0 &&
                 px__write_all(STDOUT_FILENO, text, strlen(text)) == 0
             ? 0
             : -1;
}

/* What the worker needs, nothing more: no new privileges, no core dumps
 * of what it read, a ceiling on memory (a chain crafted to need gigabytes
 * fails here, not in the collector). Best effort: a sandbox that forbids
 * setrlimit (the unit's ~@resources) has bounded the process already. */
static void px__confine(void) {
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
#if !defined(__SANITIZE_ADDRESS__) && !defined(PX_FUZZING)
  struct rlimit mem = {(rlim_t)2 << 30, (rlim_t)2 << 30};
  setrlimit(RLIMIT_AS, &mem);
#endif
}

#ifdef PX_TEST_HOOKS
/* Test builds only: PX_TEST_ANALYSIS_CRASH=TEXT crashes the worker (a
 * real SIGSEGV) on any measurement containing TEXT, and
 * PX_TEST_ANALYSIS_STALL=TEXT makes it hang, so the tests can prove that
 * a poison row costs one measurement and never the collector. */
static void px__test_faults(const char *content, size_t n) {
  const char *crash = getenv("PX_TEST_ANALYSIS_CRASH"), *stall = getenv("PX_TEST_ANALYSIS_STALL");
  if (crash != NULL && crash[0] != '\0' && memmem(content, n, crash, strlen(crash)) != NULL) {
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
  }
  if (stall != NULL && stall[0] != '\0' && memmem(content, n, stall, strlen(stall)) != NULL)
    for (;;)
      pause();
}
#endif

/* The worker's pool: certificates and their SHA-256 (hex), so that a
 * chain's intermediates are offered once. */
typedef struct {
  STACK_OF(X509) *certs;
  px_strmap_t known;
  char **names;
  size_t nnames;
} px__pool_t;

static bool px__pooled(void *data, X509 *cert) {
  px__pool_t *p = data;
  char hex[65];
  return px_x509_sha256_hex(cert, hex) == 0 && px_strmap_has(&p->known, hex);
}

/* Takes cert (its reference) into the pool unless it is there or full. */
static bool px__pool_take(px__pool_t *p, X509 *cert) {
  char hex[65];
  char **names = p->nnames < PX_POOL_MAX ? realloc(p->names, (p->nnames + 1) * sizeof(char *)) : NULL;
  if (names != NULL)
    p->names = names;
  if (names == NULL || px_x509_sha256_hex(cert, hex) != 0 || px_strmap_has(&p->known, hex) ||
      (p->names[p->nnames] = strdup(hex)) == NULL) {
    X509_free(cert);
    return false;
  }
  if (px_strset_add(&p->known, p->names[p->nnames]) < 0 || sk_X509_push(p->certs, cert) <= 0) {
    free(p->names[p->nnames]);
    X509_free(cert);
    return false;
  }
  p->nnames++;
  return true;
}

static void px__pool_free(px__pool_t *p) {
  sk_X509_pop_free(p->certs, X509_free);
  px_strmap_free(&p->known);
  for (size_t i = 0; i < p->nnames; i++)
    free(p->names[i]);
  free(p->names);
}

/* A pool certificate from the collector: taken only if it still chains
 * to this worker's trust store (whatever time it is: an intermediate may
 * have expired since and still completes old chains). Never a root. */
static void px__pool_offer(px__pool_t *p, X509_STORE *trust, const uint8_t *der, size_t n,
                           px_x509_judge_cache_t *cache) {
  const unsigned char *q = der;
  X509 *cert = d2i_X509(NULL, &q, (long)n);
  if (cert == NULL || !px_pool_admits(cert, trust, p->certs, 0)) {
    X509_free(cert);
    ERR_clear_error();
    return;
  }
  if (px__pool_take(p, cert))
    px_x509_judge_cache_clear(cache); /* chains judged without it may verify now */
}

/* The answer to one measurement: its summary and what its chains added. */
static char *px__summarize_one(const char *content, size_t n, time_t at, X509_STORE *trust,
                               px_x509_judge_cache_t *cache, px__pool_t *pool) {
  px_summarize_ctx_t ctx = {.trust = trust, .cache = cache, .pool = pool->certs,
                            .found = sk_X509_new_null(), .is_pooled = px__pooled, .data = pool};
  json_t *sum = px_summarize_with(content, n, at, &ctx);
  json_t *added = json_array();
  bool grew = false;
  for (int i = 0; ctx.found != NULL && i < sk_X509_num(ctx.found); i++) {
    X509 *c = sk_X509_value(ctx.found, i);
    unsigned char *der = NULL;
    int len = i2d_X509(c, &der);
    char *b64 = len > 0 ? px_base64_encode_alloc(der, (size_t)len) : NULL;
    OPENSSL_free(der);
    if (b64 != NULL && X509_up_ref(c) == 1 && px__pool_take(pool, c)) {
      json_array_append_new(added, json_string(b64));
      grew = true;
    }
    free(b64);
  }
  sk_X509_pop_free(ctx.found, X509_free);
  if (grew)
    px_x509_judge_cache_clear(cache);
  if (sum == NULL) {
    json_decref(added);
    return NULL;
  }
  json_t *doc = json_pack("{s:o,s:o}", "summary", sum, "pool", added);
  char *text = px_json_dump(doc);
  json_decref(doc);
  return text;
}

int px_aworker_main(int argc, char **argv) {
  const char *ca_file = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--ca-file") == 0 && i + 1 < argc)
      ca_file = argv[++i];
    else {
      fprintf(stderr, "parallax-collector analysis-worker: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  px__confine();
  X509_STORE *trust = NULL;
  char desc[512], sha[65], err[256];
  if (px_trust_store_load(ca_file, &trust, desc, sizeof(desc), sha, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax-collector analysis-worker: %s\n", err);
    return 1;
  }
  px_x509_judge_cache_t *cache = px_x509_judge_cache_new(4096);
  px__pool_t pool = {.certs = sk_X509_new_null()};
  int status = 0;
  for (;;) {
    uint32_t head[3];
    int64_t when;
    if (px__read_all(STDIN_FILENO, head, sizeof(head)) != 0)
      break; /* the collector closed its end: done */
    if (head[0] != PX__MAGIC || head[2] > PX__MAX_FRAME ||
        px__read_all(STDIN_FILENO, &when, sizeof(when)) != 0) {
      status = 1;
      break;
    }
    char *content = malloc((size_t)head[2] + 1);
    if (content == NULL || px__read_all(STDIN_FILENO, content, head[2]) != 0) {
      free(content);
      status = 1;
      break;
    }
    if (head[1] == PX__KIND_POOL_ADD) {
      px__pool_offer(&pool, trust, (const uint8_t *)content, head[2], cache);
      free(content);
      continue;
    }
#ifdef PX_TEST_HOOKS
    px__test_faults(content, head[2]);
#endif
    char *text = px__summarize_one(content, head[2], (time_t)when, trust, cache, &pool);
    free(content);
    int wrc = text != NULL ? px__answer(PX_AWORKER_OK, text)
                           : px__answer(PX_AWORKER_UNREADABLE,
                                        "the analysis cannot read it as a measurement");
    free(text);
    if (wrc != 0) {
      status = 1;
      break;
    }
  }
  px__pool_free(&pool);
  px_x509_judge_cache_free(cache);
  X509_STORE_free(trust);
  return status;
}
