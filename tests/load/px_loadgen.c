/* px-loadgen: many concurrent HTTP clients, one libcurl multi handle, each
 * submitting distinct signed measurements to a parallax-collector.
 *
 * The measurements are variants of one template (its own start time, report
 * id and country per index), signed with the agent's own code (keyfile +
 * SSHSIG) before the clock starts, so the run measures the collector and not
 * the client's signing. Every acknowledged submission is written to --acks
 * as "index<TAB>measurement_uid<TAB>content sha256<TAB>duplicate" so the
 * caller can check that each one is stored exactly once; a summary (counts,
 * rate, latency percentiles) is printed as one JSON object on stdout.
 *
 * Clients are spread over --sources consecutive loopback addresses (curl's
 * "host!ADDR" interface), so per-address limits see many clients, not one.
 * With --retry a failed submission (transport error, 5xx) is sent again
 * after a short pause, as an agent would: that is what the kill -9 loop
 * uses to keep ingest going across restarts. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/keyfile.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/sshsig.h"
#include "common/timeutil.h"

typedef struct px__body {
  char *data;
  size_t len;
  char sha256[65];
} px__body_t;

typedef struct px__client {
  CURL *easy;
  size_t index;      /* the measurement in flight */
  bool busy;
  uint64_t started_ns;
  uint64_t retry_at_ns; /* 0: not waiting to retry */
  char *resp;
  size_t resp_len, resp_cap;
  char iface[64];
} px__client_t;

typedef struct px__errcount {
  char what[96];
  size_t n;
} px__errcount_t;

static struct {
  const char *url, *template_path, *key_path, *acks_path;
  size_t count, connections, sources, start_index;
  struct in_addr source_base;
  long timeout_ms;
  bool retry;
  double give_up_s;
} px__opt = {.connections = 64, .sources = 1, .timeout_ms = 60000, .give_up_s = 120};

static px__body_t *px__bodies;
static size_t px__next;          /* next index to send */
static size_t *px__retry_queue;  /* indices waiting for a free client */
static size_t px__nretry;
static double *px__lat_ms;
static size_t px__nlat, px__lat_cap;
static size_t px__ok, px__dups, px__failed, px__retries;
static px__errcount_t px__errs[64];
static size_t px__nerrs;
static FILE *px__acks;

static uint64_t px__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void px__count_error(const char *what) {
  for (size_t i = 0; i < px__nerrs; i++)
    if (strcmp(px__errs[i].what, what) == 0) {
      px__errs[i].n++;
      return;
    }
  if (px__nerrs < sizeof(px__errs) / sizeof(px__errs[0])) {
    snprintf(px__errs[px__nerrs].what, sizeof(px__errs[0].what), "%s", what);
    px__errs[px__nerrs++].n = 1;
  }
}

static void px__usage(FILE *out) {
  fputs("usage: px-loadgen --url URL --template FILE --key FILE --count N\n"
        "                  [--connections N] [--sources ADDR/N] [--acks FILE]\n"
        "                  [--start-index I] [--timeout-ms MS] [--retry [--give-up S]]\n",
        out);
}

/* The template with index i's own time, report id and country: distinct
 * content, still schema-valid. */
static char *px__variant(json_t *tpl, time_t base, size_t i) {
  static const char *const cc[] = {"DE", "US", "CN", "FR", "JP", "BR", "IN", "RU"};
  char when[PX_TIME_OONI_LEN], compact[PX_TIME_COMPACT_LEN], rid[128];
  time_t t = base + (time_t)i * 7;
  const char *c = cc[i % (sizeof(cc) / sizeof(cc[0]))];
  px_time_format_ooni(t, when);
  px_time_format_compact(t, compact);
  snprintf(rid, sizeof(rid), "%s_tlscertconsistency_%s_%u_load%zu", compact, c,
           (unsigned)(64500 + i % 16), i);
  char asn[16];
  snprintf(asn, sizeof(asn), "AS%u", (unsigned)(64500 + i % 16));
  json_object_set_new(tpl, "measurement_start_time", json_string(when));
  json_object_set_new(tpl, "test_start_time", json_string(when));
  json_object_set_new(tpl, "probe_cc", json_string(c));
  json_object_set_new(tpl, "probe_asn", json_string(asn));
  json_object_set_new(tpl, "report_id", json_string(rid));
  return px_json_dump(tpl);
}

static int px__prepare(void) {
  char err[512];
  json_error_t jerr;
  json_t *tpl = json_load_file(px__opt.template_path, JSON_DISABLE_EOF_CHECK, &jerr);
  if (tpl == NULL || !json_is_object(tpl)) {
    fprintf(stderr, "px-loadgen: %s: %s\n", px__opt.template_path, jerr.text);
    return -EINVAL;
  }
  if (access(px__opt.key_path, F_OK) != 0) {
    px_ssh_pubkey_t pub;
    if (px_key_generate(px__opt.key_path, &pub, err, sizeof(err)) != 0) {
      fprintf(stderr, "px-loadgen: %s\n", err);
      return -EIO;
    }
  }
  EVP_PKEY *key;
  if (px_key_load(px__opt.key_path, &key, err, sizeof(err)) != 0) {
    fprintf(stderr, "px-loadgen: %s\n", err);
    return -EIO;
  }
  px__bodies = calloc(px__opt.count, sizeof(*px__bodies));
  if (px__bodies == NULL)
    return -ENOMEM;
  /* 2014-10-20 12:00:00 UTC, the week of the iCloud interception. */
  time_t base = 1413806400;
  for (size_t k = 0; k < px__opt.count; k++) {
    size_t i = px__opt.start_index + k;
    char *content = px__variant(tpl, base, i), *sig = NULL;
    if (content == NULL ||
        px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, (const uint8_t *)content, strlen(content),
                       &sig) != 0) {
      fprintf(stderr, "px-loadgen: cannot build or sign measurement %zu\n", i);
      return -EIO;
    }
    uint8_t md[32];
    unsigned mdlen;
    EVP_Digest(content, strlen(content), md, &mdlen, EVP_sha256(), NULL);
    px_hex_encode(md, 32, px__bodies[k].sha256);
    json_t *req = json_pack("{s:s, s:s, s:s}", "format", "json", "content", content,
                            "signature", sig);
    px__bodies[k].data = req != NULL ? px_json_dump(req) : NULL;
    json_decref(req);
    free(content);
    free(sig);
    if (px__bodies[k].data == NULL)
      return -ENOMEM;
    px__bodies[k].len = strlen(px__bodies[k].data);
  }
  EVP_PKEY_free(key);
  json_decref(tpl);
  return 0;
}

static size_t px__on_body(char *data, size_t size, size_t n, void *arg) {
  px__client_t *c = arg;
  size_t len = size * n;
  if (c->resp_len + len + 1 > c->resp_cap) {
    size_t cap = c->resp_cap ? c->resp_cap : 1024;
    while (cap < c->resp_len + len + 1)
      cap *= 2;
    char *p = realloc(c->resp, cap);
    if (p == NULL)
      return 0;
    c->resp = p;
    c->resp_cap = cap;
  }
  memcpy(c->resp + c->resp_len, data, len);
  c->resp_len += len;
  c->resp[c->resp_len] = '\0';
  return len;
}

/* Puts the next measurement (a retry first) on client c; false when there
 * is nothing left to send. */
static bool px__take_work(px__client_t *c) {
  if (px__nretry > 0)
    c->index = px__retry_queue[--px__nretry];
  else if (px__next < px__opt.count)
    c->index = px__next++;
  else
    return false;
  return true;
}

static void px__start(CURLM *m, px__client_t *c) {
  px__body_t *b = &px__bodies[c->index];
  c->resp_len = 0;
  c->busy = true;
  c->retry_at_ns = 0;
  c->started_ns = px__now_ns();
  curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, b->data);
  curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
  curl_multi_add_handle(m, c->easy);
}

static void px__finish(CURLM *m, px__client_t *c, CURLcode res) {
  long status = 0;
  char what[96];
  double ms = (double)(px__now_ns() - c->started_ns) / 1e6;
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(m, c->easy);
  c->busy = false;
  if (px__nlat < px__lat_cap)
    px__lat_ms[px__nlat++] = ms;
  if (res == CURLE_OK && status == 200) {
    json_t *doc = json_loadb(c->resp ? c->resp : "", c->resp_len, 0, NULL);
    const char *uid = json_string_value(json_object_get(doc, "measurement_uid"));
    bool dup = json_is_true(json_object_get(doc, "duplicate"));
    if (uid != NULL) {
      px__ok++;
      if (dup)
        px__dups++;
      if (px__acks != NULL) {
        fprintf(px__acks, "%zu\t%s\t%s\t%d\n", px__opt.start_index + c->index, uid,
                px__bodies[c->index].sha256, dup ? 1 : 0);
        /* The caller reads this file while we run (after a kill -9). */
        fflush(px__acks);
      }
      json_decref(doc);
      return;
    }
    json_decref(doc);
    snprintf(what, sizeof(what), "HTTP 200 without a measurement_uid");
  } else if (res != CURLE_OK) {
    snprintf(what, sizeof(what), "%s", curl_easy_strerror(res));
  } else {
    snprintf(what, sizeof(what), "HTTP %ld", status);
  }
  px__count_error(what);
  /* A 4xx is the collector's judgement: sending it again changes nothing. */
  if (px__opt.retry && (res != CURLE_OK || status >= 500 || status == 429)) {
    px__retries++;
    px__retry_queue[px__nretry++] = c->index;
    c->retry_at_ns = px__now_ns() + 50 * 1000000ull;
  } else {
    px__failed++;
  }
}

static int px__cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  enum { O_URL = 256, O_TEMPLATE, O_KEY, O_COUNT, O_CONN, O_SOURCES, O_ACKS, O_START,
         O_TIMEOUT, O_RETRY, O_GIVEUP };
  static const struct option opts[] = {
      {"url", required_argument, NULL, O_URL},
      {"template", required_argument, NULL, O_TEMPLATE},
      {"key", required_argument, NULL, O_KEY},
      {"count", required_argument, NULL, O_COUNT},
      {"connections", required_argument, NULL, O_CONN},
      {"sources", required_argument, NULL, O_SOURCES},
      {"acks", required_argument, NULL, O_ACKS},
      {"start-index", required_argument, NULL, O_START},
      {"timeout-ms", required_argument, NULL, O_TIMEOUT},
      {"retry", no_argument, NULL, O_RETRY},
      {"give-up", required_argument, NULL, O_GIVEUP},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (opt) {
    case O_URL: px__opt.url = optarg; break;
    case O_TEMPLATE: px__opt.template_path = optarg; break;
    case O_KEY: px__opt.key_path = optarg; break;
    case O_COUNT: px__opt.count = strtoul(optarg, NULL, 10); break;
    case O_CONN: px__opt.connections = strtoul(optarg, NULL, 10); break;
    case O_ACKS: px__opt.acks_path = optarg; break;
    case O_START: px__opt.start_index = strtoul(optarg, NULL, 10); break;
    case O_TIMEOUT: px__opt.timeout_ms = strtol(optarg, NULL, 10); break;
    case O_RETRY: px__opt.retry = true; break;
    case O_GIVEUP: px__opt.give_up_s = strtod(optarg, NULL); break;
    case O_SOURCES: {
      char addr[64];
      snprintf(addr, sizeof(addr), "%s", optarg);
      char *slash = strchr(addr, '/');
      px__opt.sources = slash != NULL ? strtoul(slash + 1, NULL, 10) : 1;
      if (slash != NULL)
        *slash = '\0';
      if (inet_pton(AF_INET, addr, &px__opt.source_base) != 1 || px__opt.sources == 0) {
        fprintf(stderr, "px-loadgen: --sources: ADDR/N, e.g. 127.82.0.1/32\n");
        return 2;
      }
      break;
    }
    case 'h':
      px__usage(stdout);
      return 0;
    default:
      px__usage(stderr);
      return 2;
    }
  }
  if (px__opt.url == NULL || px__opt.template_path == NULL || px__opt.key_path == NULL ||
      px__opt.count == 0 || px__opt.connections == 0) {
    px__usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* One descriptor per connection, and then some. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  uint64_t t_prep = px__now_ns();
  if (px__prepare() != 0)
    return 1;
  double prep_s = (double)(px__now_ns() - t_prep) / 1e9;
  if (px__opt.acks_path != NULL && (px__acks = fopen(px__opt.acks_path, "w")) == NULL) {
    fprintf(stderr, "px-loadgen: %s: %s\n", px__opt.acks_path, strerror(errno));
    return 1;
  }
  px__retry_queue = calloc(px__opt.count, sizeof(size_t));
  /* At most one latency per attempt; retries make more attempts. */
  px__lat_cap = px__opt.count * 4 + 1024;
  px__lat_ms = calloc(px__lat_cap, sizeof(double));
  px__client_t *clients = calloc(px__opt.connections, sizeof(*clients));
  if (px__retry_queue == NULL || px__lat_ms == NULL || clients == NULL)
    return 1;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)px__opt.connections + 16);
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, "Expect:");
  char url[1024];
  snprintf(url, sizeof(url), "%s/api/v1/submit_measurement", px__opt.url);
  for (size_t i = 0; i < px__opt.connections; i++) {
    px__client_t *c = &clients[i];
    c->easy = curl_easy_init();
    curl_easy_setopt(c->easy, CURLOPT_URL, url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->easy, CURLOPT_PROXY, ""); /* loopback: never a proxy */
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, px__opt.timeout_ms);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, px__on_body);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
    if (px__opt.source_base.s_addr != 0) {
      struct in_addr a = {htonl(ntohl(px__opt.source_base.s_addr) + (uint32_t)(i % px__opt.sources))};
      char s[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &a, s, sizeof(s));
      snprintf(c->iface, sizeof(c->iface), "host!%s", s);
      curl_easy_setopt(c->easy, CURLOPT_INTERFACE, c->iface);
    }
  }

  uint64_t t0 = px__now_ns(), last_ok = t0;
  size_t inflight = 0, peak = 0, connects = 0;
  for (size_t i = 0; i < px__opt.connections; i++)
    if (px__take_work(&clients[i])) {
      px__start(m, &clients[i]);
      inflight++;
    }
  peak = inflight;
  bool gave_up = false;
  while (inflight > 0 || px__nretry > 0) {
    int running;
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      px__client_t *c;
      long nc = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
      curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &nc);
      connects += (size_t)nc;
      size_t ok_before = px__ok;
      px__finish(m, c, msg->data.result);
      inflight--;
      if (px__ok > ok_before)
        last_ok = px__now_ns();
    }
    uint64_t now = px__now_ns();
    if (px__opt.retry && px__nretry > 0 && (double)(now - last_ok) / 1e9 > px__opt.give_up_s) {
      gave_up = true;
      px__failed += px__nretry;
      px__nretry = 0;
    }
    for (size_t i = 0; i < px__opt.connections; i++) {
      px__client_t *c = &clients[i];
      if (c->busy || (c->retry_at_ns != 0 && c->retry_at_ns > now))
        continue;
      if (px__take_work(c)) {
        px__start(m, c);
        inflight++;
      }
    }
    if (inflight > peak)
      peak = inflight;
    if (inflight > 0)
      curl_multi_poll(m, NULL, 0, 50, NULL);
    else if (px__nretry > 0)
      px_sleep_ms(20);
  }
  double elapsed = (double)(px__now_ns() - t0) / 1e9;

  qsort(px__lat_ms, px__nlat, sizeof(double), px__cmp_double);
#define PX__PCT(p) (px__nlat ? px__lat_ms[(size_t)((double)(px__nlat - 1) * (p))] : 0.0)
  json_t *errs = json_object();
  for (size_t i = 0; i < px__nerrs; i++)
    json_object_set_new(errs, px__errs[i].what, json_integer((json_int_t)px__errs[i].n));
  json_t *sum = json_pack(
      "{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:f, s:f, s:f, s:{s:f, s:f, s:f, s:f}, s:I, s:I, s:b}",
      "count", (json_int_t)px__opt.count, "connections", (json_int_t)px__opt.connections,
      "ok", (json_int_t)px__ok, "duplicates", (json_int_t)px__dups, "failed",
      (json_int_t)px__failed, "retries", (json_int_t)px__retries, "errors", errs, "prepare_s",
      prep_s, "elapsed_s", elapsed, "ok_per_s", elapsed > 0 ? (double)px__ok / elapsed : 0.0,
      "latency_ms", "p50", PX__PCT(0.50), "p90", PX__PCT(0.90), "p99", PX__PCT(0.99), "max",
      PX__PCT(1.0), "peak_inflight", (json_int_t)peak, "connects", (json_int_t)connects,
      "gave_up", gave_up);
  char *text = px_json_dump(sum);
  printf("%s\n", text);
  free(text);
  json_decref(sum);

  for (size_t i = 0; i < px__opt.connections; i++) {
    curl_easy_cleanup(clients[i].easy);
    free(clients[i].resp);
  }
  curl_multi_cleanup(m);
  curl_slist_free_all(hdrs);
  curl_global_cleanup();
  for (size_t i = 0; i < px__opt.count; i++)
    free(px__bodies[i].data);
  free(px__bodies);
  free(px__retry_queue);
  free(px__lat_ms);
  free(clients);
  if (px__acks != NULL)
    fclose(px__acks);
  return px__failed == 0 ? 0 : 3;
}
