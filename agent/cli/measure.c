#include "agent/cli/measure.h"

#include <ares.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <uv.h>

#include "agent/cli/common.h"
#include "agent/engine.h"
#include "agent/held.h"
#include "agent/outbox.h"
#include "agent/cli/progress.h"
#include "agent/scrub.h"
#include "agent/sysresolver.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/measurement.h"
#include "common/netaddr.h"
#include "common/strmap.h"
#include "common/termsafe.h"
#include "probes/tls_context.h"
#include "px_version.h"

#define PX_DEFAULT_TIMEOUT_MS 10000
#define PX_DEFAULT_DNS_LATE_WINDOW_MS 1000
#define PX_DEFAULT_PARALLEL 64
#define PX_MAX_PARALLEL 4096

const struct option px_measure_long_options[] = {
    {"resolver", required_argument, NULL, PX_OPT_RESOLVER},
    {"system-resolver", no_argument, NULL, PX_OPT_SYSTEM_RESOLVER},
    {"no-system-resolver", no_argument, NULL, PX_OPT_NO_SYSTEM_RESOLVER},
    {"address", required_argument, NULL, PX_OPT_ADDRESS},
    {"port", required_argument, NULL, PX_OPT_PORT},
    {"ca-file", required_argument, NULL, PX_OPT_CA_FILE},
    {"timeout", required_argument, NULL, PX_OPT_TIMEOUT},
    {"parallel", required_argument, NULL, PX_OPT_PARALLEL},
    {"probe-cc", required_argument, NULL, PX_OPT_PROBE_CC},
    {"probe-asn", required_argument, NULL, PX_OPT_PROBE_ASN},
    {"allow-nonpublic-addresses", no_argument, NULL, PX_OPT_ALLOW_NONPUBLIC},
    {"output", required_argument, NULL, PX_OPT_OUTPUT},
    {"targets-file", required_argument, NULL, PX_OPT_TARGETS_FILE},
    {"summary", no_argument, NULL, PX_OPT_SUMMARY},
    {"dns-late-window", required_argument, NULL, PX_OPT_DNS_LATE_WINDOW},
    {"tls", no_argument, NULL, PX_OPT_TLS},
    {"no-tls", no_argument, NULL, PX_OPT_NO_TLS},
    {NULL, 0, NULL, 0},
};

void px_measure_flags_usage(FILE *out) {
  fputs(
      "Measurement flags:\n"
      "  --resolver IP[:PORT]        a nameserver to query (repeatable; IPv6 as\n"
      "                              [addr]:port); default port 53\n"
      "  --system-resolver           also query the nameservers of /etc/resolv.conf\n"
      "                              (the default when no --resolver is given)\n"
      "  --no-system-resolver        never query the system nameservers\n"
      "  --address IP                also probe this address for every target\n"
      "                              (repeatable; always probed, even non-public)\n"
      "  --port N                    TLS port when a target has none (default 443)\n"
      "  --ca-file PEM               judge chains against this trust store instead\n"
      "                              of the system's\n"
      "  --timeout MS                per operation: DNS lookup, connect, handshake\n"
      "                              (default 10000)\n"
      "  --dns-late-window MS        after the first reply to a UDP query, record\n"
      "                              further replies this long (dns_late_replies;\n"
      "                              an injector answers first); 0: off (default 1000)\n"
      "  --no-tls                    DNS only: resolve every target through every\n"
      "                              resolver, no TCP or TLS (annotation tls=off)\n"
      "  --tls                       probe TLS too (the default; undoes a config's\n"
      "                              tls = off)\n"
      "  --parallel N                operations in flight (default 64, max 4096)\n"
      "  --probe-cc CC               country code to record (default ZZ)\n"
      "  --probe-asn ASN             network to record, AS1234 or 1234 (default AS0)\n"
      "  --allow-nonpublic-addresses connect to private, loopback, documentation\n"
      "                              addresses found in DNS answers (test worlds)\n"
      "  --output FILE               write the JSON lines to FILE (default stdout)\n"
      "  --targets-file FILE         more targets: one per line (# comments), or a\n"
      "                              CSV file with a url column (Citizen Lab test\n"
      "                              lists); - reads standard input\n"
      "  --summary                   print a human-readable table on stderr\n",
      out);
}

static void px__usage(FILE *out) {
  fputs("Usage: parallax measure [FLAG]... TARGET...\n"
        "Measure how each TARGET (a domain, domain:port, or an https:// or http://\n"
        "URL; IDNs as written) resolves and which certificate chains its addresses\n"
        "present. One OONI-style JSON line per target; failures inside a\n"
        "measurement are data, not errors.\n\n",
        out);
  px_measure_flags_usage(out);
  fputs("\nUpload (optional): every measurement is also signed with the agent's key,\n"
        "spooled in the state directory and uploaded:\n", out);
  px_agent_flags_usage(out, true);
  fputs("\nExit status: 0 measurements written, 1 runtime error, 2 bad usage.\n",
        out);
}

void px_measure_opts_init(px_measure_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->system_resolver = -1;
  o->port = 443;
  o->timeout_ms = PX_DEFAULT_TIMEOUT_MS;
  o->dns_late_window_ms = PX_DEFAULT_DNS_LATE_WINDOW_MS;
  o->parallel = PX_DEFAULT_PARALLEL;
  strcpy(o->probe_cc, "ZZ");
  strcpy(o->probe_asn, "AS0");
}

void px_measure_opts_free(px_measure_opts_t *o) {
  free(o->resolvers);
  free(o->addresses);
  free(o->targets);
  memset(o, 0, sizeof(*o));
}

static int px__append_addr(struct sockaddr_storage **arr, size_t *n,
                           const struct sockaddr_storage *ss) {
  for (size_t i = 0; i < *n; i++)
    if (px_addr_same_ip((struct sockaddr *)&(*arr)[i], (const struct sockaddr *)ss) &&
        px_addr_port((struct sockaddr *)&(*arr)[i]) == px_addr_port((const struct sockaddr *)ss))
      return 0; /* the same resolver twice would only double the load */
  struct sockaddr_storage *p = realloc(*arr, (*n + 1) * sizeof(*p));
  if (p == NULL)
    return -ENOMEM;
  p[*n] = *ss;
  *arr = p;
  (*n)++;
  return 0;
}

static int px__parse_uint(const char *arg, unsigned min, unsigned max, unsigned *out) {
  unsigned long v;
  int rc = px_parse_ulong(arg, min, max, &v);
  if (rc == 0)
    *out = (unsigned)v;
  return rc;
}

#define PX__FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -EINVAL)

/* "::1:53" is both the address ::1:53 and ::1 port 53, and people who
 * write it mostly mean the port: neither is guessed. Returns 2 for such
 * text (no brackets, ends in ":1-65535", an IPv6 address with and without
 * that ending), 1 when only the part before the ending is an IPv6 address
 * (a port without brackets), 0 otherwise ("::1", "2001:db8::53"). *head_len
 * is the address part's length. */
static int px__resolver_unbracketed(const char *arg, size_t *head_len) {
  const char *last = strrchr(arg, ':');
  if (arg[0] == '[' || last == NULL || last == strchr(arg, ':'))
    return 0;
  unsigned long port;
  if (px_parse_ulong(last + 1, 1, 65535, &port) != 0)
    return 0;
  char head[INET6_ADDRSTRLEN + 1];
  size_t n = (size_t)(last - arg);
  if (n >= sizeof(head))
    return 0;
  memcpy(head, arg, n);
  head[n] = '\0';
  struct sockaddr_storage a;
  if (px_addr_parse_ip(head, &a) != 0 || a.ss_family != AF_INET6)
    return 0;
  *head_len = n;
  return px_addr_parse_ip(arg, &a) == 0 ? 2 : 1;
}

int px_measure_apply(px_measure_opts_t *o, int code, const char *arg,
                     char *err, size_t errlen) {
  struct sockaddr_storage ss;
  switch (code) {
  case PX_OPT_RESOLVER:
  {
    size_t h = 0;
    int unbracketed = px__resolver_unbracketed(arg, &h);
    if (unbracketed == 2)
      return PX__FAIL("--resolver: '%s' is ambiguous: write [%.*s]:%s for port %s of %.*s, "
                      "or [%s] for the address %s", arg, (int)h, arg, arg + h + 1, arg + h + 1,
                      (int)h, arg, arg, arg);
    if (unbracketed == 1)
      return PX__FAIL("--resolver: '%s': an IPv6 address with a port needs brackets: [%.*s]:%s",
                      arg, (int)h, arg, arg + h + 1);
  }
    if (px_addr_parse_hostport(arg, 53, &ss) != 0)
      return PX__FAIL("--resolver: '%s' is not IP[:PORT] (IPv6 as [addr]:port)", arg);
    if (o->nresolvers >= PX_RESOLVERS_MAX)
      return PX__FAIL("--resolver: at most %d resolvers", PX_RESOLVERS_MAX);
    return px__append_addr(&o->resolvers, &o->nresolvers, &ss);
  case PX_OPT_SYSTEM_RESOLVER:
    o->system_resolver = 1;
    return 0;
  case PX_OPT_NO_SYSTEM_RESOLVER:
    o->system_resolver = 0;
    return 0;
  case PX_OPT_ADDRESS:
    if (px_addr_parse_ip(arg, &ss) != 0)
      return PX__FAIL("--address: '%s' is not an IP address", arg);
    if (o->naddresses >= PX_ADDRESSES_MAX)
      return PX__FAIL("--address: at most %d addresses", PX_ADDRESSES_MAX);
    return px__append_addr(&o->addresses, &o->naddresses, &ss);
  case PX_OPT_PORT:
    if (px__parse_uint(arg, 1, 65535, &o->port) != 0)
      return PX__FAIL("--port: '%s' is not a port number (1-65535)", arg);
    return 0;
  case PX_OPT_CA_FILE:
    if (access(arg, R_OK) != 0)
      return PX__FAIL("--ca-file: cannot read '%s': %s", arg, strerror(errno));
    o->ca_file = arg;
    return 0;
  case PX_OPT_TIMEOUT:
    if (px__parse_uint(arg, 1, 3600000, &o->timeout_ms) != 0)
      return PX__FAIL("--timeout: '%s' is not a duration in milliseconds (1-3600000)", arg);
    return 0;
  case PX_OPT_DNS_LATE_WINDOW:
    if (px__parse_uint(arg, 0, 60000, &o->dns_late_window_ms) != 0)
      return PX__FAIL("--dns-late-window: '%s' is not a duration in milliseconds (0-60000)", arg);
    return 0;
  case PX_OPT_PARALLEL:
    if (px__parse_uint(arg, 1, PX_MAX_PARALLEL, &o->parallel) != 0)
      return PX__FAIL("--parallel: '%s' is not a number from 1 to %d", arg, PX_MAX_PARALLEL);
    return 0;
  case PX_OPT_PROBE_CC:
    if (px_probe_cc_normalize(arg, o->probe_cc) != 0)
      return PX__FAIL("--probe-cc: '%s' is not a two-letter country code", arg);
    o->cc_set = true;
    return 0;
  case PX_OPT_PROBE_ASN:
    if (px_probe_asn_normalize(arg, o->probe_asn) != 0)
      return PX__FAIL("--probe-asn: '%s' is not an AS number (AS1234 or 1234)", arg);
    o->asn_set = true;
    return 0;
  case PX_OPT_ALLOW_NONPUBLIC:
    o->allow_nonpublic = true;
    return 0;
  case PX_OPT_OUTPUT:
    if (arg[0] == '\0')
      return PX__FAIL("--output: empty file name");
    o->output = arg;
    return 0;
  case PX_OPT_TARGETS_FILE:
    o->targets_file = arg;
    return 0;
  case PX_OPT_SUMMARY:
    o->summary = true;
    return 0;
  case PX_OPT_TLS:
  case PX_OPT_NO_TLS:
    o->no_tls = code == PX_OPT_NO_TLS;
    return 0;
  default:
    return -ENOENT;
  }
}

static int px__push_target(px_measure_opts_t *o, const char *text,
                           const char **reason) {
  px_target_t t;
  if (px_target_parse(text, (uint16_t)o->port, &t, reason) != 0)
    return -EINVAL;
  if ((o->ntargets & (o->ntargets - 1)) == 0) { /* grow at powers of two */
    size_t cap = o->ntargets ? o->ntargets * 2 : 8;
    px_target_t *n = realloc(o->targets, cap * sizeof(*n));
    if (n == NULL) {
      *reason = "out of memory";
      return -ENOMEM;
    }
    o->targets = n;
  }
  o->targets[o->ntargets++] = t;
  return 0;
}

int px_measure_push_targets(px_measure_opts_t *o, size_t n, char *const *list, char *err,
                            size_t errlen) {
  const char *reason;
  for (size_t i = 0; i < n; i++)
    if (px__push_target(o, list[i], &reason) != 0)
      return PX__FAIL("bad target '%s': %s", list[i], reason);
  return 0;
}

/* What px__file_target needs to push a file's target or say why not. */
typedef struct px__file_ctx {
  px_measure_opts_t *o;
  const char *path;
  char *err;
  size_t errlen;
  size_t added;
} px__file_ctx_t;

static int px__file_target(void *ctx, const char *text, unsigned line) {
  px__file_ctx_t *c = ctx;
  char *err = c->err;
  size_t errlen = c->errlen;
  const char *reason;
  int rc = px__push_target(c->o, text, &reason);
  if (rc == -ENOMEM) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  if (rc != 0)
    return PX__FAIL("%s:%u: bad target '%s': %s", c->path, line, text, reason);
  c->added++;
  return 0;
}

/* The whole of f, NUL-terminated, in *buf (the caller frees it); a targets
 * file is read at once because a CSV record may span lines. */
#define PX__TARGETS_FILE_MAX (64u << 20)
static int px__slurp(FILE *f, char **buf, size_t *n) {
  size_t cap = 1 << 16, len = 0;
  char *b = malloc(cap + 1);
  while (b != NULL) {
    size_t got = fread(b + len, 1, cap - len, f);
    len += got;
    if (len < cap) {
      if (ferror(f)) {
        free(b);
        return errno != 0 ? -errno : -EIO;
      }
      b[len] = '\0';
      *buf = b;
      *n = len;
      return 0;
    }
    if (cap >= PX__TARGETS_FILE_MAX) {
      free(b);
      return -EFBIG;
    }
    char *grown = realloc(b, cap * 2 + 1);
    if (grown == NULL)
      free(b);
    b = grown;
    cap *= 2;
  }
  return -ENOMEM;
}

int px_measure_add_targets(px_measure_opts_t *o, int argc, char **argv,
                           char *err, size_t errlen) {
  int rc = px_measure_push_targets(o, (size_t)argc, argv, err, errlen);
  if (rc != 0 || o->targets_file == NULL)
    return rc;

  const char *path = o->targets_file;
  bool is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "r");
  if (f == NULL)
    return PX__FAIL("--targets-file: cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  char *text = NULL;
  size_t n = 0;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = PX__FAIL("--targets-file: '%s' is a directory, not a file of targets", path);
  } else {
    errno = 0;
    rc = px__slurp(f, &text, &n);
    if (rc == -EFBIG)
      rc = PX__FAIL("--targets-file: '%s' is larger than %u MiB", path,
                    PX__TARGETS_FILE_MAX >> 20);
    else if (rc != 0)
      rc = PX__FAIL("--targets-file: cannot read '%s': %s", path, strerror(-rc));
  }
  if (!is_stdin)
    fclose(f);
  if (rc != 0)
    return rc;

  px__file_ctx_t ctx = {o, is_stdin ? "standard input" : path, err, errlen, 0};
  bool csv = false;
  unsigned line = 0;
  const char *reason = NULL;
  rc = px_target_list_parse(text, n, px__file_target, &ctx, &csv, &line, &reason);
  free(text);
  if (rc != 0 && reason != NULL)
    return PX__FAIL("%s:%u: %s", ctx.path, line, reason);
  if (rc == 0 && ctx.added == 0) {
    const char *why = csv        ? " (a CSV header and no records)"
                      : n > 0    ? " (only blank lines and # comments)"
                      : is_stdin ? " (nothing was read)"
                                 : " (the file is empty)";
    if (is_stdin)
      return PX__FAIL("--targets-file: no targets in standard input%s", why);
    return PX__FAIL("--targets-file: no targets in '%s'%s", path, why);
  }
  return rc;
}

/* ---- running ---------------------------------------------------------- */

typedef struct px__summary_row {
  char *input;
  size_t order; /* the target's place in the input */
  int addresses, verified;
  char *failures;
} px__summary_row_t;

/* What every run says at its end, in one line. */
typedef struct px__tally {
  size_t measured, succeeded, dns_failed, tls_failed, skipped;
  size_t queries, unreachable; /* DNS queries, and those that met no route */
} px__tally_t;

typedef struct px__writer {
  FILE *out;
  const char *path;
  size_t written; /* handed to the outbox */
  /* With --collector: every line is also signed and spooled, off the
   * loop (see agent/outbox.h). */
  px_signer_t *signer;
  px_outbox_t *outbox;
  const px_exec_t *x;
  bool summary;
  px__summary_row_t *rows;
  size_t nrows;
  px_strmap_t order; /* input -> its target, whose place orders --summary */
  const px_target_t *targets;
  px__tally_t tally;
} px__writer_t;

/* Counts m into the run's tally. A measurement "succeeded" when at least
 * one handshake completed without failure; DNS "failed" when no query got
 * an answer; TLS "failed" when any connect or handshake did. */
static void px__count(px__tally_t *t, json_t *m) {
  json_t *keys = json_object_get(m, "test_keys"), *h;
  size_t i;
  bool ok = false, tls_bad = false, answered = false;
  t->measured++;
  json_array_foreach(json_object_get(keys, "tls_handshakes"), i, h) {
    if (json_is_null(json_object_get(h, "failure")))
      ok = true;
    else
      tls_bad = true;
  }
  json_array_foreach(json_object_get(keys, "tcp_connect"), i, h)
    if (!json_is_null(json_object_get(json_object_get(h, "status"), "failure")))
      tls_bad = true;
  json_array_foreach(json_object_get(keys, "queries"), i, h) {
    const char *f = json_string_value(json_object_get(h, "failure"));
    t->queries++;
    if (f == NULL)
      answered = true;
    else if (strcmp(f, "network_unreachable") == 0 || strcmp(f, "host_unreachable") == 0)
      t->unreachable++;
  }
  t->succeeded += ok;
  t->tls_failed += tls_bad;
  t->dns_failed += !answered;
  t->skipped += json_array_size(json_object_get(keys, "skipped_addresses"));
}

static int px__by_order(const void *a, const void *b) {
  size_t x = ((const px__summary_row_t *)a)->order, y = ((const px__summary_row_t *)b)->order;
  return x < y ? -1 : x > y;
}

/* Appends f to the comma-separated list unless present or out of room. */
static void px__add_failure(char *list, size_t cap, const char *f) {
  size_t len = strlen(list);
  if (f == NULL || strstr(list, f) != NULL || len + strlen(f) + 2 > cap)
    return;
  snprintf(list + len, cap - len, "%s%s", len ? "," : "", f);
}

static void px__summarise(px__writer_t *w, json_t *m) {
  px__summary_row_t row = {0};
  char failures[256] = "";
  size_t i;
  json_t *h;
  json_t *keys = json_object_get(m, "test_keys");

  json_array_foreach(json_object_get(keys, "tls_handshakes"), i, h) {
    const char *f = json_string_value(json_object_get(h, "failure"));
    row.addresses++;
    if (f == NULL)
      row.verified++;
    px__add_failure(failures, sizeof(failures), f);
  }
  json_array_foreach(json_object_get(keys, "tcp_connect"), i, h) {
    const char *f = json_string_value(json_object_get(json_object_get(h, "status"), "failure"));
    if (f != NULL) {
      row.addresses++;
      px__add_failure(failures, sizeof(failures), f);
    }
  }
  if (row.addresses == 0)
    json_array_foreach(json_object_get(keys, "queries"), i, h)
      px__add_failure(failures, sizeof(failures), json_string_value(json_object_get(h, "failure")));

  px__summary_row_t *rows = realloc(w->rows, (w->nrows + 1) * sizeof(*rows));
  if (rows == NULL)
    return; /* the summary is a courtesy; the JSON line is already out */
  w->rows = rows;
  /* Rendered for the terminal now, so the column widths are those of
   * what is printed. */
  char shown[PX_TERM_ESCAPED_MAX(sizeof(failures))];
  row.input = strdup(px_term_str(json_string_value(json_object_get(m, "input")), shown,
                                 sizeof(shown)));
  row.failures = strdup(px_term_str(failures[0] ? failures : "-", shown, sizeof(shown)));
  const px_target_t *t =
      px_strmap_get(&w->order, json_string_value(json_object_get(m, "input")));
  row.order = t != NULL ? (size_t)(t - w->targets) : SIZE_MAX;
  if (row.input == NULL || row.failures == NULL) {
    free(row.input);
    free(row.failures);
    return;
  }
  w->rows[w->nrows++] = row;
}

/* Scrubs m; 1 when it must stay on this machine (why says why). */
static int px__keep_local(px__writer_t *w, json_t *m, char *why, size_t whylen) {
  if (w->x->scrub == NULL)
    return 0;
  int rc = px_scrub_measurement(w->x->scrub, m, NULL, why, whylen);
  if (rc < 0)
    return rc;
  if (rc == 0 && w->x->hold_all != NULL) {
    snprintf(why, whylen, "%s", w->x->hold_all);
    rc = 1;
  }
  return rc;
}

/* Runs on the loop: judges and hands over, and must never wait
 * for a signature or a disk (see agent/outbox.h). */
static int px__emit(void *data, json_t *m) {
  px__writer_t *w = data;
  char why[256];
  int local = w->signer != NULL ? px__keep_local(w, m, why, sizeof(why)) : 0;
  if (local < 0)
    return local;
  char *line = px_json_dump(m);
  if (line == NULL)
    return -ENOMEM;
  /* The signed bytes are the compact JSON without the newline; one not
   * signed at all (local) has nothing about it easy to pass on. */
  int rc = px_outbox_put(w->outbox, line, strlen(line), local == 1 ? why : NULL);
  if (rc != 0)
    return rc;
  w->written++;
  px__count(&w->tally, m);
  if (w->summary)
    px__summarise(w, m);
  return 0;
}

static void px__print_summary(px__writer_t *w) {
  int width = 6;
  size_t addresses = 0, verified = 0;
  /* In the order of the input, not of completion: a list of 2,000 reads
   * like the list that was given. */
  if (w->nrows > 1)
    qsort(w->rows, w->nrows, sizeof(w->rows[0]), px__by_order);
  for (size_t i = 0; i < w->nrows; i++)
    if ((int)strlen(w->rows[i].input) > width)
      width = (int)strlen(w->rows[i].input);
  fprintf(stderr, "%-*s  %9s  %8s  %s\n", width, "target", "addresses", "verified", "failures");
  for (size_t i = 0; i < w->nrows; i++) {
    px__summary_row_t *r = &w->rows[i];
    fprintf(stderr, "%-*s  %9d  %8d  %s\n", width, r->input, r->addresses, r->verified, r->failures);
    addresses += (size_t)r->addresses;
    verified += (size_t)r->verified;
    free(r->input);
    free(r->failures);
  }
  fprintf(stderr, "%-*s  %9zu  %8zu  %zu target(s); %zu non-public address(es) skipped\n", width,
          "total", addresses, verified, w->nrows, w->tally.skipped);
  free(w->rows);
  w->rows = NULL;
  w->nrows = 0;
}

/* The line every run ends with. */
static void px__print_tally(const px__writer_t *w, const char *prog, const char *where) {
  const px__tally_t *t = &w->tally;
  char line[512];
  snprintf(line, sizeof(line),
           "%zu measured, %zu with a verified handshake; DNS failed for %zu, TLS for %zu; "
           "%zu non-public address(es) skipped; output: %s",
           t->measured, t->succeeded, t->dns_failed, t->tls_failed, t->skipped, where);
  /* Under `run` everything goes to the journal, with its priority. */
  if (w->x->no_stdout)
    px_log(PX_LOG_INFO, "%s", line);
  else
    fprintf(stderr, "%s: %s\n", prog, line);
}

static void px__annotate(px_run_info_t *run, const px_measure_opts_t *o,
                         const px_tls_context_t *tls, bool system_resolver) {
  struct utsname u;
  char buf[64];
  px_run_annotate(run, "engine_name", PX_SOFTWARE_NAME);
  px_run_annotate(run, "engine_version", PX_SOFTWARE_VERSION);
  px_run_annotate(run, "libuv_version", uv_version_string());
  px_run_annotate(run, "openssl_version", OpenSSL_version(OPENSSL_FULL_VERSION_STRING));
  px_run_annotate(run, "c_ares_version", ares_version(NULL));
  px_run_annotate(run, "jansson_version", jansson_version_str());
  if (uname(&u) == 0) {
    px_run_annotate(run, "platform", "linux");
    px_run_annotate(run, "architecture", u.machine);
  }
  px_run_annotate(run, "trust_store", tls->trust_store);
  px_run_annotate(run, "trust_store_sha256", tls->trust_sha256);
  px_run_annotate(run, "system_resolver", system_resolver ? "true" : "false");
  px_run_annotate(run, "allow_nonpublic_addresses", o->allow_nonpublic ? "true" : "false");
  snprintf(buf, sizeof(buf), "%u", o->timeout_ms);
  px_run_annotate(run, "timeout_ms", buf);
  snprintf(buf, sizeof(buf), "%u", o->dns_late_window_ms);
  px_run_annotate(run, "dns_late_window_ms", buf);
  if (o->no_tls) /* so that empty tls_handshakes never read as "nothing answered" */
    px_run_annotate(run, "tls", "off");
}

/* Resolves the resolver set: explicit ones, plus the system's when asked
 * or when none is given. */
static int px__resolvers(px_measure_opts_t *o, bool *used_system, char *err,
                         size_t errlen) {
  *used_system = o->system_resolver == 1 || (o->system_resolver == -1 && o->nresolvers == 0);
  if (*used_system) {
    struct sockaddr_storage *sys = NULL;
    size_t nsys = 0;
    int rc = px_sysresolver_servers(getenv("PARALLAX_RESOLV_CONF"), &sys, &nsys, err, errlen);
    if (rc != 0)
      return rc;
    for (size_t i = 0; i < nsys && rc == 0 && o->nresolvers < PX_RESOLVERS_MAX; i++)
      rc = px__append_addr(&o->resolvers, &o->nresolvers, &sys[i]);
    free(sys);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Runs the measurements o describes and writes them where o says (and,
 * with x->signer, signs and spools each). Returns the process exit code;
 * prog prefixes error messages. */
int px_measure_execute(px_measure_opts_t *o, const px_exec_t *x, const char *prog) {
  static const px_exec_t plain = {0};
  char err[512];
  bool used_system = false;
  px_tls_context_t tls;
  px_run_info_t run;
  px__writer_t w = {0};
  px_progress_t progress;
  uv_loop_t loop;
  int rc, exit_code = PX_EXIT_OK;
  bool have_tls = false, have_run = false;

  if (x == NULL)
    x = &plain;
  px_strmap_init(&w.order);
  w.targets = o->targets;
  w.signer = x->signer;
  w.x = x;
  rc = px__resolvers(o, &used_system, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", prog, rc == -ENOMEM ? "out of memory" : err);
    exit_code = PX_EXIT_RUNTIME;
    goto done;
  }
  if (o->no_tls) {
    /* Nothing is judged: the trust store (a tenth of a second to parse
     * the system's) is neither loaded nor recorded. */
    memset(&tls, 0, sizeof(tls));
    snprintf(tls.trust_store, sizeof(tls.trust_store), "none");
  } else if (px_tls_context_init(&tls, o->ca_file, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    exit_code = o->ca_file != NULL ? PX_EXIT_USAGE : PX_EXIT_RUNTIME;
    goto done;
  }
  have_tls = true;
  tls.clock_offset = x->clock_offset;
  w.summary = o->summary;
  w.path = o->output != NULL && strcmp(o->output, "-") != 0 ? o->output : NULL;
  w.out = w.path != NULL ? fopen(w.path, "w") : (x->no_stdout && o->output == NULL ? NULL : stdout);
  if (w.path != NULL && w.out == NULL) {
    fprintf(stderr, "%s: cannot open output '%s': %s\n", prog, w.path, strerror(errno));
    exit_code = PX_EXIT_RUNTIME;
    goto done;
  }
  if (px_run_info_init(&run, o->probe_cc, o->probe_asn, time(NULL) + x->clock_offset) != 0) {
    fprintf(stderr, "%s: cannot initialise the run (random source)\n", prog);
    exit_code = PX_EXIT_RUNTIME;
    goto done;
  }
  have_run = true;
  if (x->network_name != NULL)
    run.probe_network_name = strdup(x->network_name);
  if (o->nresolvers > 0)
    px_addr_format_ip((struct sockaddr *)&o->resolvers[0], run.resolver_ip,
                      sizeof(run.resolver_ip));
  px__annotate(&run, o, &tls, used_system);
  if (x->annotations != NULL) {
    const char *k;
    json_t *v;
    json_object_foreach(x->annotations, k, v)
      px_run_annotate(&run, k, json_string_value(v));
  }

  /* Keys borrowed from o->targets, which outlive the run. */
  for (size_t i = 0; w.summary && i < o->ntargets; i++) {
    bool added;
    void **slot = px_strmap_slot(&w.order, o->targets[i].input, &added);
    if (slot != NULL && added)
      *slot = &o->targets[i];
  }
  px_progress_init(&progress, isatty(STDERR_FILENO) == 1);
  px_engine_config_t cfg = {
      .tls = &tls,
      .resolvers = o->resolvers,
      .nresolvers = o->nresolvers,
      .addresses = o->addresses,
      .naddresses = o->naddresses,
      .timeout_ms = o->timeout_ms,
      .dns_late_window_ms = o->dns_late_window_ms,
      .parallel = o->parallel,
      .allow_nonpublic = o->allow_nonpublic,
      .no_tls = o->no_tls,
      .run = &run,
      .emit = px__emit,
      .emit_data = &w,
      .progress = px_progress_update,
      .progress_data = &progress,
      .max_runtime_ms = x->max_runtime_ms,
      .max_bytes = x->max_bytes,
      .stats = x->stats,
  };
  px_outbox_report_t kept = {0};
  if ((rc = px_outbox_start(&w.outbox, w.out, w.signer, x->spool, x->held_dir)) != 0) {
    fprintf(stderr, "%s: cannot start the output's writer: %s\n", prog, strerror(-rc));
    exit_code = PX_EXIT_RUNTIME;
    goto done;
  }
  uv_loop_init(&loop);
  rc = px_engine_run(&loop, &cfg, o->targets, o->ntargets);
  int close_rc = uv_loop_close(&loop);
  /* The engine is done; what it handed over is kept now (or was lost to
   * the first failure, which outranks how the run ended). */
  if (px_outbox_finish(w.outbox, &kept) != 0)
    rc = kept.error;
  px_progress_finish(&progress);
  if (x->held != NULL)
    *x->held = kept.held;

  if (rc == -EIO) {
    fprintf(stderr, "%s: cannot write measurements to %s: %s\n", prog,
            w.path ? w.path : "standard output", strerror(kept.write_errno));
    exit_code = PX_EXIT_RUNTIME;
  } else if (rc == -ENOSPC) {
    /* What the full disk cost, so the volunteer knows what to free and
     * that nothing spooled is lost. */
    fprintf(stderr, "%s: %s\n%s: %zu measurement(s) of this run kept; %zu of %zu target(s) not "
                    "measured or not kept. Free space, then `parallax upload` sends what is "
                    "kept.\n",
            prog, kept.err, prog, kept.spooled + kept.held,
            o->ntargets - kept.spooled - kept.held, o->ntargets);
    exit_code = PX_EXIT_RUNTIME;
  } else if (rc == -EINTR) {
    fprintf(stderr, "%s: interrupted after %zu measurement(s)\n", prog, w.written);
    exit_code = 130;
  } else if (rc != 0) {
    fprintf(stderr, "%s: %s\n", prog, strerror(-rc));
    exit_code = PX_EXIT_RUNTIME;
  }
  if (close_rc != 0) {
    fprintf(stderr, "%s: internal error: handles left open at exit\n", prog);
    exit_code = PX_EXIT_RUNTIME;
  }
  if (w.summary)
    px__print_summary(&w);
  px__print_tally(&w, prog, w.path ? w.path : w.out ? "standard output" : "the spool");
  /* Every query met no route: not censorship data but a machine offline. */
  bool offline = w.tally.queries > 0 && w.tally.unreachable == w.tally.queries;
  if (offline && !x->no_stdout) /* run says it itself, and keeps the round */
    fprintf(stderr, "%s: no resolver reachable: is this machine online?\n", prog);
  if (x->offline != NULL)
    *x->offline = offline;
done:
  px_strmap_free(&w.order);
  if (w.path != NULL && w.out != NULL && fclose(w.out) != 0 && exit_code == PX_EXIT_OK) {
    fprintf(stderr, "%s: cannot write %s: %s\n", prog, w.path, strerror(errno));
    exit_code = PX_EXIT_RUNTIME;
  }
  if (have_run)
    px_run_info_free(&run);
  if (have_tls)
    px_tls_context_free(&tls);
  return exit_code;
}

int px_cmd_measure(int argc, char **argv) {
  px_measure_opts_t o;
  px_agent_opts_t agent;
  char err[512];
  int c, rc, exit_code = PX_EXIT_OK;
  struct option *opts = px_agent_options(NULL, true);

  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  px_measure_opts_init(&o);
  memset(&agent, 0, sizeof(agent));
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') {
      px__usage(stdout);
      exit_code = PX_EXIT_OK;
      goto done;
    }
    if (c == '?' || c == ':') {
      px_cli_getopt_error("parallax measure", c, argv);
      exit_code = PX_EXIT_USAGE;
      goto done;
    }
    rc = px_measure_apply(&o, c, optarg, err, sizeof(err));
    if (rc == -ENOENT)
      rc = px_agent_apply(&agent, c, optarg, err, sizeof(err));
    if (rc != 0) {
      px_cli_error("parallax measure", "%s", rc == -ENOMEM ? "out of memory" : err);
      exit_code = rc == -ENOMEM ? PX_EXIT_RUNTIME : PX_EXIT_USAGE;
      goto done;
    }
  }
  if (px_measure_add_targets(&o, argc - optind, argv + optind, err, sizeof(err)) != 0) {
    px_cli_error("parallax measure", "%s", err); /* quotes the targets file */
    exit_code = PX_EXIT_USAGE;
    goto done;
  }
  if (o.ntargets == 0) {
    fprintf(stderr, "parallax measure: no targets (give TARGET arguments or --targets-file)\n");
    exit_code = PX_EXIT_USAGE;
    goto done;
  }
  if (o.system_resolver == 0 && o.nresolvers == 0 && o.naddresses == 0) {
    fprintf(stderr, "parallax measure: nothing to probe: --no-system-resolver needs --resolver or --address\n");
    exit_code = PX_EXIT_USAGE;
    goto done;
  }
  if (agent.collector == NULL) {
    exit_code = px_measure_execute(&o, NULL, "parallax measure");
  } else {
    /* The signer forks before anything touches the network. */
    px_signer_t signer;
    px_spool_t spool;
    if (px_agent_signing(&agent, &signer, &spool, err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax measure: %s\n", err);
      exit_code = PX_EXIT_RUNTIME;
      goto done;
    }
    /* Scrubbed of what we know of our addresses; one that is about this
     * machine stays in held/ (run, with a check-in, also learns the
     * public address first). */
    px_scrub_t scrub = {0};
    char held_dir[4200];
    size_t held = 0;
    px_agent_known_addresses(&agent, &scrub);
    snprintf(held_dir, sizeof(held_dir), "%s/held", agent.state_dir);
    px_exec_t x = {.signer = &signer, .spool = &spool, .scrub = &scrub, .held_dir = held_dir,
                   .held = &held};
    exit_code = px_measure_execute(&o, &x, "parallax measure");
    px_signer_stop(&signer);
    if (held > 0)
      fprintf(stderr, "parallax measure: %zu measurement(s) are about this machine and stay in "
                      "%s\n", held, held_dir);
    /* Measurements are safe in the spool; an unreachable collector is
     * reported, not an error of the run. */
    if (!agent.no_upload)
      px_agent_upload(&agent, &spool, false, "parallax measure");
  }
done:
  px_measure_opts_free(&o);
  free(opts);
  return exit_code;
}
