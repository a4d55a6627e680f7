#include "agent/cli/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cli/measure.h"
#include "agent/cli/rotate.h"
#include "agent/runstate.h"
#include "agent/scrub.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/netaddr.h"
#include "common/statedir.h"
#include "common/termsafe.h"
#include "px_version.h"

const struct option px_agent_long_options[] = {
    {"state-dir", required_argument, NULL, PX_OPT_STATE_DIR},
    {"collector", required_argument, NULL, PX_OPT_COLLECTOR},
    {"proxy", required_argument, NULL, PX_OPT_PROXY},
    {"collector-ca", required_argument, NULL, PX_OPT_COLLECTOR_CA},
    {"collector-pin", required_argument, NULL, PX_OPT_COLLECTOR_PIN},
    {"upload", no_argument, NULL, PX_OPT_UPLOAD},
    {"no-upload", no_argument, NULL, PX_OPT_NO_UPLOAD},
    {"max-targets", required_argument, NULL, PX_OPT_MAX_TARGETS},
    {"max-runtime", required_argument, NULL, PX_OPT_MAX_RUNTIME},
    {"max-bytes", required_argument, NULL, PX_OPT_MAX_BYTES},
    {"max-spool", required_argument, NULL, PX_OPT_MAX_SPOOL},
    {"log-level", required_argument, NULL, PX_OPT_LOG_LEVEL},
    {"public-address", required_argument, NULL, PX_OPT_PUBLIC_ADDRESS},
    {NULL, 0, NULL, 0},
};

/* The help line(s) of each agent flag, in the order --help shows them. */
static const struct {
  int code;
  const char *text;
} px__agent_help[] = {
    {PX_OPT_STATE_DIR, "  --state-dir DIR             key, spool and run records (default\n"
                       "                              $STATE_DIRECTORY, /var/lib/parallax for root,\n"
                       "                              else ~/.local/state/parallax)\n"},
    {PX_OPT_LOG_LEVEL, "  --log-level LEVEL           error, warning, notice, info (default) or debug\n"},
    {PX_OPT_COLLECTOR, "  --collector URL             the collector to upload to (http:// or https://);\n"
                       "                              repeat for fallbacks, tried in order\n"},
    {PX_OPT_PROXY, "  --proxy URL                 upload through this proxy; socks5h://127.0.0.1:9050\n"
                   "                              for Tor (names resolved by the proxy)\n"},
    {PX_OPT_COLLECTOR_CA, "  --collector-ca PEM          trust only these CAs for the collector\n"},
    {PX_OPT_COLLECTOR_PIN, "  --collector-pin sha256//B64 also require this public key (curl pinning)\n"},
    {PX_OPT_NO_UPLOAD, "  --no-upload                 sign and spool, but leave uploading to\n"
                       "                              `parallax upload` (--upload undoes it)\n"},
    {PX_OPT_MAX_TARGETS, "  --max-targets N             run budget: measure at most N targets a run\n"
                         "                              (the next run continues down the list)\n"},
    {PX_OPT_MAX_RUNTIME, "  --max-runtime TIME          run budget: start no target after TIME (90s,\n"
                         "                              15m, 1h); those in flight finish\n"},
    {PX_OPT_MAX_BYTES, "  --max-bytes SIZE            run budget: start no target once this much\n"
                       "                              DNS and TLS traffic is spent (500k, 20M, 1G)\n"},
    {PX_OPT_MAX_SPOOL, "  --max-spool SIZE            measure nothing new while this much is unsent\n"
                       "                              (pending and held; default 50M): the round\n"
                       "                              only uploads; nothing unsent is deleted\n"},
    {PX_OPT_PUBLIC_ADDRESS, "  --public-address IP         also scrub this address of ours from\n"
                            "                              measurements; 'unknown' uploads without\n"
                            "                              knowing it (e.g. through a proxy)\n"},
};

void px_agent_flags_usage_for(FILE *out, bool (*takes)(int code)) {
  for (size_t i = 0; i < sizeof(px__agent_help) / sizeof(px__agent_help[0]); i++)
    if (takes(px__agent_help[i].code))
      fputs(px__agent_help[i].text, out);
}

static bool px__takes_base(int code) {
  return code == PX_OPT_STATE_DIR || code == PX_OPT_LOG_LEVEL;
}

static bool px__takes_all(int code) {
  (void)code;
  return true;
}

void px_agent_flags_usage(FILE *out, bool with_collector) {
  px_agent_flags_usage_for(out, with_collector ? px__takes_all : px__takes_base);
}

int px_agent_apply(px_agent_opts_t *o, int code, const char *arg, char *err, size_t errlen) {
  switch (code) {
  case PX_OPT_STATE_DIR:
    if (arg[0] == '\0') {
      snprintf(err, errlen, "--state-dir: empty path");
      return -EINVAL;
    }
    o->state_dir_flag = arg;
    return 0;
  case PX_OPT_COLLECTOR:
    if (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0) {
      snprintf(err, errlen, "--collector: '%s' is not an http:// or https:// URL", arg);
      return -EINVAL;
    }
    if (o->ncollectors == PX_MAX_COLLECTORS) {
      snprintf(err, errlen, "--collector: at most %d collectors", PX_MAX_COLLECTORS);
      return -EINVAL;
    }
    for (size_t i = 0; i < o->ncollectors; i++)
      if (strcmp(o->collectors[i], arg) == 0)
        return 0;
    o->collectors[o->ncollectors++] = arg;
    o->collector = o->collectors[0];
    return 0;
  case PX_OPT_PROXY:
    if (strstr(arg, "://") == NULL) {
      snprintf(err, errlen, "--proxy: '%s' needs a scheme (http://, socks5h://…)", arg);
      return -EINVAL;
    }
    o->proxy = arg;
    return 0;
  case PX_OPT_COLLECTOR_CA:
    if (access(arg, R_OK) != 0) {
      snprintf(err, errlen, "--collector-ca: cannot read '%s': %s", arg, strerror(errno));
      return -EINVAL;
    }
    o->collector_ca = arg;
    return 0;
  case PX_OPT_COLLECTOR_PIN:
    if (strncmp(arg, "sha256//", 8) != 0 || strlen(arg) < 8 + 43) {
      snprintf(err, errlen, "--collector-pin: expected sha256//<base64 of the SPKI hash>");
      return -EINVAL;
    }
    o->collector_pin = arg;
    return 0;
  case PX_OPT_UPLOAD:
  case PX_OPT_NO_UPLOAD:
    o->no_upload = code == PX_OPT_NO_UPLOAD;
    return 0;
  case PX_OPT_MAX_TARGETS: {
    unsigned long v;
    if (px_parse_ulong(arg, 1, 1000000, &v) != 0) {
      snprintf(err, errlen, "--max-targets: expected a number from 1 to 1000000, not '%s'", arg);
      return -EINVAL;
    }
    o->max_targets = (unsigned)v;
    return 0;
  }
  case PX_OPT_MAX_RUNTIME:
    if (px_parse_duration(arg, &o->max_runtime_s) != 0 || o->max_runtime_s == 0) {
      snprintf(err, errlen, "--max-runtime: expected a duration such as 90s, 15m or 1h, not '%s'",
               arg);
      return -EINVAL;
    }
    return 0;
  case PX_OPT_MAX_BYTES:
    if (px_parse_size(arg, &o->max_bytes) != 0 || o->max_bytes == 0) {
      snprintf(err, errlen, "--max-bytes: expected a size such as 500k, 20M or 1G, not '%s'", arg);
      return -EINVAL;
    }
    return 0;
  case PX_OPT_MAX_SPOOL:
    if (px_parse_size(arg, &o->max_spool) != 0 || o->max_spool == 0) {
      snprintf(err, errlen, "--max-spool: expected a size such as 500k, 50M or 1G, not '%s'", arg);
      return -EINVAL;
    }
    return 0;
  case PX_OPT_LOG_LEVEL:
    if (px_log_level_parse(arg, &o->log_level) != 0) {
      snprintf(err, errlen, "--log-level: expected error, warning, notice, info or debug, not '%s'",
               arg);
      return -EINVAL;
    }
    return 0;
  case PX_OPT_PUBLIC_ADDRESS: {
    struct sockaddr_storage ss;
    if (strcmp(arg, "unknown") != 0 && px_addr_parse_ip(arg, &ss) != 0) {
      snprintf(err, errlen, "--public-address: expected an IP address or 'unknown', not '%s'", arg);
      return -EINVAL;
    }
    o->public_address = arg;
    return 0;
  }
  default:
    return -ENOENT;
  }
}

int px_agent_state(px_agent_opts_t *o, char *err, size_t errlen) {
  int rc = px_state_dir_resolve(o->state_dir_flag, "parallax", o->state_dir,
                                sizeof(o->state_dir), err, errlen);
  if (rc != 0)
    return rc;
  if (o->state_must_exist) {
    /* A reader never creates it: a mistyped --state-dir is an error,
     * not an empty agent. */
    struct stat sst;
    int e = stat(o->state_dir, &sst) != 0 ? errno : S_ISDIR(sst.st_mode) ? 0 : ENOTDIR;
    if (e != 0) {
      snprintf(err, errlen,
               "no state directory %s (%s): check --state-dir (or the config's state_dir); "
               "`parallax setup` or a first run creates it",
               o->state_dir, strerror(e));
      return -e;
    }
  } else {
    rc = px_mkdirs(o->state_dir, 0700);
  }
  if (rc != 0) {
    snprintf(err, errlen, "cannot create state directory %s: %s", o->state_dir, strerror(-rc));
    return rc;
  }
  struct stat st;
  if (!o->state_read_only && geteuid() == 0 && stat(o->state_dir, &st) == 0 && st.st_uid != 0) {
    snprintf(err, errlen,
             "%s belongs to uid %lu (the service's user), and files root writes there would "
             "lock the service out; run the command as that user: systemd-run --pipe --wait "
             "-p DynamicUser=yes -p User=parallax -p StateDirectory=parallax parallax ...",
             o->state_dir, (unsigned long)st.st_uid);
    return -EPERM;
  }
  return 0;
}

void px_agent_known_addresses(const px_agent_opts_t *o, px_scrub_t *s) {
  if (px_scrub_add_local(s) != 0)
    px_log(PX_LOG_WARNING, "cannot list this machine's addresses: %s", strerror(errno));
  json_t *seen = px_public_addresses_load(o->state_dir);
  size_t i;
  json_t *v;
  json_array_foreach(seen, i, v)
    if (json_is_string(v))
      px_scrub_add(s, json_string_value(v));
  json_decref(seen);
  if (o->public_address != NULL && strcmp(o->public_address, "unknown") != 0)
    px_scrub_add(s, o->public_address);
}

void px_agent_key_path(const px_agent_opts_t *o, char *out, size_t n) {
  snprintf(out, n, "%s/%s", o->state_dir, PX_KEY_FILE);
}

int px_agent_signing(px_agent_opts_t *o, px_signer_t *signer, px_spool_t *spool, char *err,
                     size_t errlen) {
  char key[4200];
  int rc = px_agent_state(o, err, errlen);
  if (rc != 0)
    return rc;
  rc = px_spool_open(spool, o->state_dir, err, errlen);
  if (rc != 0)
    return rc;
  px_agent_key_path(o, key, sizeof(key));
  return px_signer_start(signer, key, true, err, errlen);
}

/* One collector: 0 when nothing is left pending, -EAGAIN when some is,
 * -ECONNREFUSED when the drain was deferred by the backoff. */
static int px__upload_one(px_agent_opts_t *o, const char *url, px_spool_t *spool,
                          bool respect_backoff) {
  char err[512];
  px_uploader_t *u;
  px_upload_config_t cfg = {url, o->proxy, o->collector_ca, o->collector_pin, 60000};
  if (px_uploader_new(&cfg, &u, err, sizeof(err)) != 0) {
    px_log(PX_LOG_ERR, "%s", err);
    return -EINVAL;
  }
  px_drain_report_t rep;
  int rc = px_drain(u, spool, respect_backoff, &rep);
  px_uploader_free(u);
  if (rc != 0) {
    px_log(PX_LOG_ERR, "upload: %s", strerror(-rc));
    return rc;
  }
  if (rep.deferred) {
    px_log(PX_LOG_NOTICE, "upload deferred after earlier failures (%s); %zu pending",
           rep.last_error, rep.pending);
    return -ECONNREFUSED;
  }
  if (rep.accepted + rep.rejected > 0 || rep.pending > 0)
    px_log(rep.pending > 0 || rep.rejected > 0 ? PX_LOG_WARNING : PX_LOG_INFO,
           "uploaded %zu to %s, rejected %zu, pending %zu%s%s", rep.accepted, url, rep.rejected,
           rep.pending, rep.last_error[0] ? " - last error: " : "", rep.last_error);
  /* Said after what was sent, so "No space left" is not read as "not
   * sent". */
  if (rep.state_error != 0)
    px_log(PX_LOG_WARNING, "cannot save the upload state in %s: %s", spool->root,
           strerror(-rep.state_error));
  return rep.pending == 0 ? rep.state_error : -EAGAIN;
}

int px_agent_upload(px_agent_opts_t *o, px_spool_t *spool, bool respect_backoff,
                    const char *prog) {
  char err[512];
  px_log_setup(prog, o->log_level);
  /* A new identity first: the collector should know the old key is
   * retired before it sees the new one. */
  int rc = px_rotation_send_pending(o, err, sizeof(err));
  if (rc == -EAGAIN)
    px_log(PX_LOG_WARNING, "key rotation not sent yet: %s", err[0] ? err : "no collector");
  else if (rc != 0)
    px_log(PX_LOG_ERR, "%s", err);
  rc = px__upload_one(o, o->collector, spool, respect_backoff);
  /* The fallbacks, in order, for what the first one did not take. */
  for (size_t i = 0; i < o->ncollectors && rc == -EAGAIN; i++)
    if (o->collectors[i] != o->collector)
      rc = px__upload_one(o, o->collectors[i], spool, false);
  return rc == -ECONNREFUSED ? -EAGAIN : rc;
}

const char *px_agent_config_path(int argc, char **argv, const struct option *opts, int code) {
  const char *config = NULL;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
    if (c == code)
      config = optarg;
  if (config == NULL && access(PX_DEFAULT_CONFIG, F_OK) == 0)
    config = PX_DEFAULT_CONFIG;
  return config;
}

struct option *px_agent_options(const struct option *own, bool with_measure) {
  size_t n_own = 0, n_measure = 0;
  while (own != NULL && own[n_own].name != NULL)
    n_own++;
  if (with_measure)
    while (px_measure_long_options[n_measure].name != NULL)
      n_measure++;
  size_t total = n_own + PX_AGENT_NOPTS + n_measure + 2;
  struct option *o = calloc(total, sizeof(*o));
  if (o == NULL)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n_own; i++)
    o[k++] = own[i];
  for (size_t i = 0; i < PX_AGENT_NOPTS; i++)
    o[k++] = px_agent_long_options[i];
  for (size_t i = 0; i < n_measure; i++)
    o[k++] = px_measure_long_options[i];
  o[k++] = (struct option){"help", no_argument, NULL, 'h'};
  return o;
}

void px_cli_error(const char *prog, const char *fmt, ...) {
  char msg[2048];
  char shown[PX_TERM_ESCAPED_MAX(sizeof(msg))];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s\n", prog, px_term_str(msg, shown, sizeof(shown)));
}

void px_cli_getopt_error(const char *prog, int c, char **argv) {
  char shortopt[3] = {'-', (char)optopt, '\0'};
  /* optopt names a short option; long ones are only in argv. */
  const char *what = optopt > 0 && optopt < 256 ? shortopt : argv[optind - 1];
  px_cli_error(prog, "%s '%s' (see --help)", c == ':' ? "missing value for" : "unknown option",
               what);
}
