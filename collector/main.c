/* parallax-collector: receives signed measurements, verifies and stores
 * them, serves them to researchers. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "collector/analysis/analysis.h"
#include "collector/ingest/geoip.h"
#include "collector/analysis/analysis_worker.h"
#include "collector/tools/migrate.h"
#include "collector/http/sdnotify.h"
#include "collector/http/server.h"
#include "collector/log/sth.h"
#include "common/target.h"
#include "common/encoding.h"
#include "common/fileio.h"
#include "common/netaddr.h"
#include "common/statedir.h"
#include "px_version.h"

#define PX_EXIT_OK 0
#define PX_EXIT_RUNTIME 1
#define PX_EXIT_USAGE 2

/* Waits for SIGTERM or SIGINT, blocked in every thread so that only this
 * wait takes them (no handler racing a pause()). Under WatchdogSec= it
 * wakes twice per interval and keeps systemd's watchdog fed for as long as
 * the database answers. Returns the signal. */
static int px__wait_for_stop(const sigset_t *set, px_store_t *store) {
  uint64_t wd = px_sd_watchdog_usec();
  for (;;) {
    int sig;
    if (wd == 0) {
      if (sigwait(set, &sig) == 0)
        return sig;
      continue;
    }
    struct timespec half = {(time_t)(wd / 2000000), (long)(wd / 2 % 1000000) * 1000};
    sig = sigtimedwait(set, NULL, &half);
    if (sig > 0)
      return sig;
    if (errno == EAGAIN && px_store_ping(store) == 0)
      px_sd_notify("WATCHDOG=1");
  }
}

static void px__usage(FILE *out) {
  fputs("Usage: parallax-collector [FLAG]...\n"
        "       parallax-collector migrate --from sqlite:PATH --to postgresql://... [--batch N]\n"
        "Receive signed parallax measurements, verify and store them, serve them.\n"
        "migrate copies a SQLite database into PostgreSQL (see migrate --help).\n\n"
        "  --listen ADDR:PORT      where to listen (default 127.0.0.1:8080; [::]:8080 for IPv6)\n"
        "  --db sqlite:PATH        the database (default sqlite:STATE_DIR/collector.sqlite)\n"
        "  --db postgresql://USER@HOST[:PORT]/DB[?PARAM=VALUE&...]\n"
        "                          PostgreSQL 12 or later (libpq URL; pool_size=N\n"
        "                          connections, default 10); several collectors may share\n"
        "                          one database\n"
        "  --state-dir DIR         default $STATE_DIRECTORY, /var/lib/parallax-collector (root)\n"
        "                          or ~/.local/state/parallax-collector\n"
        "  --max-body BYTES        largest accepted request body (default 1048576)\n"
        "  --max-connections N     concurrent connections (default 1024)\n"
        "  --per-ip-limit N        concurrent connections per client address (default 64)\n"
        "  --ipv6-prefix-len N     IPv6 clients are counted by their first N bits, one\n"
        "                          allowance per prefix (1 to 128, default 64)\n"
        "  --max-exports N         concurrent GET /api/v1/export.jsonl streams (default 8;\n"
        "                          PostgreSQL: also at most half of pool_size)\n"
        "  --timeout SECONDS       idle connection timeout (default 30)\n"
        "  --trusted-proxy CIDR    take the client address from X-Forwarded-For when the\n"
        "                          peer is in CIDR (repeatable; e.g. 127.0.0.1/32 for nginx)\n"
        "  --public-url URL        base of measurement_url links (default http://<Host>)\n"
        "  --ca-file PEM           the reference trust store every recorded chain is\n"
        "                          re-validated against (default: the system's)\n"
        "  --targets FILE          what check-in hands out: one target a line, or a CSV list\n"
        "                          (default: iCloud, Apple ID and other often-interfered\n"
        "                          services)\n"
        "  --allow-nonpublic-addresses  control addresses may be non-public (test worlds)\n"
        "  --sth-key FILE          the key that signs the measurement log's tree heads\n"
        "                          (created on first start; default beside a --db\n"
        "                          sqlite: file, else STATE_DIR/sth-key)\n"
        "  --sth-interval SECONDS  sign a new tree head at most this often (default 60)\n"
        "  --geoip-db FILE         a MaxMind-format database (country or ASN layout, e.g.\n"
        "                          GeoLite2-Country, GeoLite2-ASN, DB-IP lite); repeatable.\n"
        "                          Check-in answers the client's country and network from\n"
        "                          it, submissions from another country are flagged\n"
        "  -h, --help, --version\n"
        "\nThe collector never stores the uploader's IP address.\n",
        out);
}

/* Descriptors that are not connections: stdio, the listener, MHD's
 * wake-up pipe, SQLite's files (writer, readers, analysis; each with its
 * -wal and -shm), the geolocation databases. */
#define PX__FD_RESERVE 64

/* One descriptor per connection. Takes the hard open-file limit (systemd
 * leaves the soft one at 1024 for the sake of select() users) and, when
 * even that cannot hold --max-connections, lowers the connection limit so
 * MHD refuses the excess cleanly instead of failing accept() with EMFILE. */
static void px__fit_nofile(px_collector_config_t *cfg) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
      return;
  }
  /* MHD may hold PX_SERVER_CONN_SLACK connections more for an instant
   * (those being refused). */
  rlim_t reserve = PX__FD_RESERVE + PX_SERVER_CONN_SLACK;
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur <= reserve ||
      (rlim_t)cfg->max_connections + reserve <= rl.rlim_cur)
    return;
  unsigned fit = (unsigned)(rl.rlim_cur - reserve);
  fprintf(stderr, "parallax-collector: open-file limit %llu: serving %u connections, not %u "
                  "(raise LimitNOFILE / ulimit -n)\n",
          (unsigned long long)rl.rlim_cur, fit, cfg->max_connections);
  cfg->max_connections = fit;
}

/* Services whose interference has been documented, iCloud first (2014). */
static const char *const px__default_targets[] = {
    "icloud.com",          "www.icloud.com",     "appleid.apple.com", "setup.icloud.com",
    "www.apple.com",       "www.google.com",     "www.youtube.com",   "www.facebook.com",
    "www.instagram.com",   "twitter.com",        "www.wikipedia.org", "signal.org",
    "www.whatsapp.com",    "telegram.org",       "www.torproject.org", "www.bbc.com",
    "www.nytimes.com",     "github.com",
};

/* What px__config_target needs to keep a target or say why not. */
typedef struct px__targets_ctx {
  px_collector_config_t *cfg;
  const char *path;
  char *err;
  size_t errlen;
} px__targets_ctx_t;

static int px__config_target(void *ctx, const char *s, unsigned line) {
  px__targets_ctx_t *t = ctx;
  px_target_t parsed;
  const char *reason;
  if (px_target_parse(s, 443, &parsed, &reason) != 0) {
    snprintf(t->err, t->errlen, "%s:%u: bad target '%s': %s", t->path, line, s, reason);
    return -EINVAL;
  }
  char **grown = realloc(t->cfg->targets, (t->cfg->ntargets + 1) * sizeof(char *));
  if (grown != NULL)
    t->cfg->targets = grown;
  if (grown == NULL || (t->cfg->targets[t->cfg->ntargets] = strdup(s)) == NULL) {
    snprintf(t->err, t->errlen, "out of memory");
    return -ENOMEM;
  }
  t->cfg->ntargets++;
  return 0;
}

/* Reads --targets in the agent's own forms (one target a line with #
 * comments, or a Citizen Lab CSV list; URLs and IDNs as the agent reads
 * them), or takes the default list; every target is checked like the
 * agent checks its own, so what check-in hands out is what an agent can
 * measure. */
static int px__load_targets(const char *path, px_collector_config_t *cfg, char *err,
                            size_t errlen) {
  if (path == NULL) {
    size_t n = sizeof(px__default_targets) / sizeof(px__default_targets[0]);
    cfg->targets = calloc(n, sizeof(char *));
    if (cfg->targets == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
      /* Every target is compared by name later: none may be NULL. */
      if ((cfg->targets[i] = strdup(px__default_targets[i])) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
      }
      cfg->ntargets++;
    }
    return 0;
  }
  char *text = NULL;
  size_t n = 0;
  int rc = px_read_file(path, &text, &n);
  if (rc != 0) {
    char why[128]; /* strerror_r (GNU): threads run once serving */
    snprintf(err, errlen, "--targets: cannot read '%s': %s", path,
             strerror_r(-rc, why, sizeof(why)));
    return rc;
  }
  px__targets_ctx_t ctx = {cfg, path, err, errlen};
  unsigned line = 0;
  const char *reason = NULL;
  rc = px_target_list_parse(text, n, px__config_target, &ctx, NULL, &line, &reason);
  free(text);
  if (rc != 0 && reason != NULL)
    snprintf(err, errlen, "%s:%u: %s", path, line, reason);
  else if (rc == 0 && cfg->ntargets == 0) {
    /* An empty list would hand agents nothing to measure, every hour. */
    snprintf(err, errlen, "--targets: no targets in '%s'", path);
    rc = -EINVAL;
  }
  return rc;
}

/* Everything main does, with c's configuration left for main to free, so
 * that no exit path (usage errors included) leaks what parsing collected. */
static int px__main(int argc, char **argv, px_collector_t *c) {
  enum { O_LISTEN = 256, O_DB, O_STATE, O_MAXBODY, O_MAXCONN, O_PERIP, O_TIMEOUT, O_PROXY,
         O_PUBLIC, O_VERSION, O_CAFILE, O_TARGETS, O_NONPUBLIC, O_GEOIP, O_V6PREFIX,
         O_MAXEXPORTS, O_STHKEY, O_STHINTERVAL };
  static const struct option opts[] = {
      {"listen", required_argument, NULL, O_LISTEN},
      {"db", required_argument, NULL, O_DB},
      {"state-dir", required_argument, NULL, O_STATE},
      {"max-body", required_argument, NULL, O_MAXBODY},
      {"max-connections", required_argument, NULL, O_MAXCONN},
      {"per-ip-limit", required_argument, NULL, O_PERIP},
      {"ipv6-prefix-len", required_argument, NULL, O_V6PREFIX},
      {"max-exports", required_argument, NULL, O_MAXEXPORTS},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"trusted-proxy", required_argument, NULL, O_PROXY},
      {"public-url", required_argument, NULL, O_PUBLIC},
      {"version", no_argument, NULL, O_VERSION},
      {"ca-file", required_argument, NULL, O_CAFILE},
      {"targets", required_argument, NULL, O_TARGETS},
      {"allow-nonpublic-addresses", no_argument, NULL, O_NONPUBLIC},
      {"geoip-db", required_argument, NULL, O_GEOIP},
      {"sth-key", required_argument, NULL, O_STHKEY},
      {"sth-interval", required_argument, NULL, O_STHINTERVAL},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *db = NULL, *state_flag = NULL, *ca_file = NULL, *targets_file = NULL;
  const char *sth_key = NULL;
  unsigned sth_interval = 60;
  char err[512], why[128], dbbuf[4200], keybuf[4200];
  unsigned long v;
  int opt;

  signal(SIGPIPE, SIG_IGN);
  /* Blocked before the first thread starts (the store's, the analysis',
   * MHD's), so every thread inherits the mask; a stop asked for during
   * start-up is taken once the server is up. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  px_addr_parse_hostport("127.0.0.1:8080", 8080, &c->cfg.listen);
  c->cfg.max_body = 1 << 20;
  c->cfg.max_connections = 1024;
  c->cfg.per_ip_limit = 64;
  c->cfg.ipv6_prefix_len = 64;
  c->cfg.max_exports = 8;
  c->cfg.timeout_s = 30;

  opterr = 0;
  /* Before the first thread starts: getopt's static state is ours alone. */
  /* NOLINTNEXTLINE(concurrency-mt-unsafe) */
  while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (opt) {
    case 'h':
      px__usage(stdout);
      return PX_EXIT_OK;
    case O_VERSION:
#ifdef PX_TEST_HOOKS
      /* Said, so that nobody ships a test build by mistake. */
      printf("parallax-collector %s (test build: PX_TEST_* hooks honoured)\n", PX_SOFTWARE_VERSION);
#else
      printf("parallax-collector %s\n", PX_SOFTWARE_VERSION);
#endif
      return PX_EXIT_OK;
    case O_LISTEN:
      if (px_addr_parse_hostport(optarg, 8080, &c->cfg.listen) != 0) {
        fprintf(stderr, "parallax-collector: --listen: '%s' is not ADDR:PORT\n", optarg);
        return PX_EXIT_USAGE;
      }
      break;
    case O_DB:
      db = optarg;
      break;
    case O_STATE:
      state_flag = optarg;
      break;
    case O_MAXBODY:
      if (px_parse_ulong(optarg, 1024, 1ul << 30, &v) != 0) {
        fprintf(stderr, "parallax-collector: --max-body: 1024 to 1073741824 bytes\n");
        return PX_EXIT_USAGE;
      }
      c->cfg.max_body = v;
      break;
    case O_MAXCONN:
    case O_PERIP:
    case O_TIMEOUT:
      if (px_parse_ulong(optarg, 1, 1000000, &v) != 0) {
        fprintf(stderr, "parallax-collector: %s: a positive number\n", argv[optind - 1]);
        return PX_EXIT_USAGE;
      }
      if (opt == O_MAXCONN)
        c->cfg.max_connections = (unsigned)v;
      else if (opt == O_PERIP)
        c->cfg.per_ip_limit = (unsigned)v;
      else
        c->cfg.timeout_s = (unsigned)v;
      break;
    case O_V6PREFIX:
      if (px_parse_ulong(optarg, 1, 128, &v) != 0) {
        fprintf(stderr, "parallax-collector: --ipv6-prefix-len: 1 to 128 bits\n");
        return PX_EXIT_USAGE;
      }
      c->cfg.ipv6_prefix_len = (unsigned)v;
      break;
    case O_MAXEXPORTS:
      if (px_parse_ulong(optarg, 1, 10000, &v) != 0) {
        fprintf(stderr, "parallax-collector: --max-exports: 1 to 10000\n");
        return PX_EXIT_USAGE;
      }
      c->cfg.max_exports = (unsigned)v;
      break;
    case O_PROXY: {
      px_cidr_t cidr;
      if (px_cidr_parse(optarg, &cidr) != 0) {
        fprintf(stderr, "parallax-collector: --trusted-proxy: '%s' is not a CIDR range\n", optarg);
        return PX_EXIT_USAGE;
      }
      px_cidr_t *t = realloc(c->cfg.trusted, (c->cfg.ntrusted + 1) * sizeof(*t));
      if (t == NULL)
        return PX_EXIT_RUNTIME;
      t[c->cfg.ntrusted++] = cidr;
      c->cfg.trusted = t;
      break;
    }
    case O_CAFILE:
      if (access(optarg, R_OK) != 0) {
        fprintf(stderr, "parallax-collector: --ca-file: cannot read '%s'\n", optarg);
        return PX_EXIT_USAGE;
      }
      ca_file = optarg;
      break;
    case O_TARGETS:
      targets_file = optarg;
      break;
    case O_STHKEY:
      sth_key = optarg;
      break;
    case O_STHINTERVAL:
      if (px_parse_ulong(optarg, 1, 86400, &v) != 0) {
        fprintf(stderr, "parallax-collector: --sth-interval: 1 to 86400 seconds\n");
        return PX_EXIT_USAGE;
      }
      sth_interval = (unsigned)v;
      break;
    case O_NONPUBLIC:
      c->cfg.allow_nonpublic = true;
      break;
    case O_GEOIP: {
      unsigned what;
      if (px_geoip_add(&c->cfg.geoip, optarg, &what, err, sizeof(err)) != 0) {
        fprintf(stderr, "parallax-collector: --geoip-db: %s\n", err);
        return PX_EXIT_USAGE;
      }
      fprintf(stderr, "parallax-collector: geolocation from %s:%s%s\n", optarg,
              (what & PX_GEOIP_COUNTRY) ? " country" : "", (what & PX_GEOIP_ASN) ? " asn" : "");
      break;
    }
    case O_PUBLIC:
      if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
        fprintf(stderr, "parallax-collector: --public-url: an http:// or https:// URL\n");
        return PX_EXIT_USAGE;
      }
      c->cfg.public_url = optarg;
      break;
    default:
      fprintf(stderr, "parallax-collector: %s '%s' (see --help)\n",
              opt == ':' ? "missing value for" : "unknown option", argv[optind - 1]);
      return PX_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "parallax-collector: unexpected argument '%s'\n", argv[optind]);
    return PX_EXIT_USAGE;
  }
  bool on_sqlite = db == NULL || strncmp(db, "sqlite:", 7) == 0;
  if (db == NULL || (sth_key == NULL && (state_flag != NULL || !on_sqlite))) {
    char state[4096];
    if (px_state_dir_resolve(state_flag, "parallax-collector", state, sizeof(state), err,
                             sizeof(err)) != 0) {
      fprintf(stderr, "parallax-collector: %s\n", err);
      return PX_EXIT_USAGE;
    }
    int rc = px_mkdirs(state, 0700);
    if (rc != 0) {
      fprintf(stderr, "parallax-collector: cannot create %s: %s\n", state,
              strerror_r(-rc, why, sizeof(why)));
      return PX_EXIT_RUNTIME;
    }
    if (db == NULL) {
      snprintf(dbbuf, sizeof(dbbuf), "sqlite:%s/collector.sqlite", state);
      db = dbbuf;
    }
    if (sth_key == NULL) {
      snprintf(keybuf, sizeof(keybuf), "%s/sth-key", state);
      sth_key = keybuf;
    }
  }
  /* The tree-head key, where nothing else says: beside a SQLite database
   * in the collector's own directory, else in the state directory (the
   * nodes on one PostgreSQL database share one log: give them the same
   * key, docs/operator.md). */
  if (sth_key == NULL) {
    const char *path = db + 7, *slash = strrchr(path, '/');
    snprintf(keybuf, sizeof(keybuf), "%.*s/sth-key", slash != NULL ? (int)(slash - path) : 1,
             slash != NULL ? path : ".");
    sth_key = keybuf;
  }
  /* The signer forks now, before any thread: the key never enters this
   * process, which parses requests. */
  if (px_sth_signer_start(&c->sth, sth_key, sth_interval, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax-collector: the tree-head key %s: %s\n", sth_key, err);
    return PX_EXIT_RUNTIME;
  }
  px__fit_nofile(&c->cfg);
  if (px__load_targets(targets_file, &c->cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax-collector: %s\n", err);
    return PX_EXIT_USAGE;
  }
  int opened = px_store_open(db, &c->store, err, sizeof(err));
  if (opened != 0) {
    fprintf(stderr, "parallax-collector: %s\n", err);
    return opened == -EPROTONOSUPPORT ? PX_EXIT_USAGE : PX_EXIT_RUNTIME;
  }
  /* The analysis runs in a worker re-executed from this very binary. */
  if (px_analysis_start(c->store, ca_file, "/proc/self/exe", &c->analysis, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax-collector: %s\n", err);
    px_store_close(c->store);
    return ca_file != NULL ? PX_EXIT_USAGE : PX_EXIT_RUNTIME;
  }

  if (px_server_start(c, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax-collector: %s\n", err);
    px_analysis_stop(c->analysis);
    px_store_close(c->store);
    return PX_EXIT_RUNTIME;
  }
  char addr[PX_ADDRSTRLEN];
  px_addr_format((struct sockaddr *)&c->cfg.listen, addr, sizeof(addr));
  /* A PostgreSQL URL may hold a password: never in the log. */
  char shown[1024];
  px_store_url_redact(db, shown, sizeof(shown));
  fprintf(stderr, "parallax-collector %s: listening on %s, database %s\n", PX_SOFTWARE_VERSION,
          addr, shown);

  /* Ready means: listening and the database open (Type=notify). */
  char status[5000];
  snprintf(status, sizeof(status), "READY=1\nSTATUS=listening on %s, database %s", addr, shown);
  int notified = px_sd_notify(status);
  if (notified != 0)
    fprintf(stderr, "parallax-collector: cannot notify the service manager: %s\n",
            strerror_r(-notified, why, sizeof(why)));

  int sig = px__wait_for_stop(&stop_signals, c->store);
  fprintf(stderr, "parallax-collector: %s: stopping (finishing requests in flight)\n",
          sigdescr_np(sig));
  px_sd_notify("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
  px_server_stop(c);
  px_analysis_stop(c->analysis);
  px_store_close(c->store);
  return PX_EXIT_OK;
}

/* What px__main leaves running on any return, ended here. */
static void px__main_done(px_collector_t *c) {
  px_sth_signer_stop(&c->sth);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "migrate") == 0)
    return px_migrate_main(argc - 1, argv + 1);
  /* Internal: the analysis worker the collector starts itself. */
  if (argc > 1 && strcmp(argv[1], "analysis-worker") == 0)
    return px_aworker_main(argc - 2, argv + 2);
  px_collector_t c;
  memset(&c, 0, sizeof(c));
  int code = px__main(argc, argv, &c);
  px__main_done(&c);
  free(c.cfg.trusted);
  px_geoip_free(c.cfg.geoip);
  for (size_t i = 0; i < c.cfg.ntargets; i++)
    free(c.cfg.targets[i]);
  free(c.cfg.targets);
  return code;
}
