/* parallax submit, parallax upload, parallax status. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent/cli/common.h"
#include "agent/cli/config.h"
#include "agent/held.h"
#include "agent/runstate.h"
#include "agent/signer_policy.h"
#include "agent/cli/keys.h"
#include "agent/cli/measure.h"
#include "common/sshsig.h"
#include "common/termsafe.h"
#include "common/timeutil.h"
#include "px_version.h"

/* Which agent flags each small command takes; the others are refused,
 * not silently ignored, and --help lists only these. */
static bool px__takes_transfer(int code) {
  return code != PX_OPT_MAX_TARGETS && code != PX_OPT_MAX_RUNTIME && code != PX_OPT_MAX_BYTES &&
         code != PX_OPT_MAX_SPOOL &&
         code != PX_OPT_PUBLIC_ADDRESS && code != PX_OPT_UPLOAD;
}

static bool px__takes_upload(int code) {
  return px__takes_transfer(code) && code != PX_OPT_NO_UPLOAD;
}

static bool px__takes_submit(int code) {
  return px__takes_transfer(code) || code == PX_OPT_UPLOAD;
}

static bool px__takes_status(int code) {
  return code == PX_OPT_STATE_DIR;
}

/* What --config loaded: the options point into it until the process
 * ends (each of these commands parses once). */
static px_config_t px__config;
static px_measure_opts_t px__config_measure;

/* Parses the agent flags of a small command: --config FILE (default
 * PX_DEFAULT_CONFIG when it exists) first, then the flags, which replace
 * the file's values (lists included), as in `run`. The file's keys that
 * the command does not use are read (and checked) but have no effect.
 * Returns -1 to go on, or the exit code to return. */
static int px__parse(const char *prog, const char *usage, int argc, char **argv,
                     px_agent_opts_t *agent, bool (*takes)(int code)) {
  static const struct option own[] = {{"config", required_argument, NULL, 'c'},
                                      {NULL, 0, NULL, 0}};
  struct option *opts = px_agent_options(own, false);
  char err[512];
  int c, code = -1;
  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  memset(agent, 0, sizeof(*agent));
  const char *config = px_agent_config_path(argc, argv, opts, 'c');
  px_measure_opts_init(&px__config_measure);
  if (config != NULL &&
      px_config_load(config, &px__config, &px__config_measure, agent, err, sizeof(err)) != 0) {
    char shown[PX_TERM_ESCAPED_MAX(sizeof(err))];
    fprintf(stderr, "%s: %s\n", prog, px_term_str(err, shown, sizeof(shown)));
    free(opts);
    return PX_EXIT_USAGE;
  }
  bool collectors_from_flags = false;
  optind = 1;
  while (code < 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') {
      fputs(usage, stdout);
      fputs("  --config FILE               read these flags from an INI file first (default\n"
            "                              " PX_DEFAULT_CONFIG " when it exists)\n",
            stdout);
      px_agent_flags_usage_for(stdout, takes);
      code = PX_EXIT_OK;
    } else if (c == '?' || c == ':') {
      px_cli_getopt_error(prog, c, argv);
      code = PX_EXIT_USAGE;
    } else if (c == 'c') {
      continue;
    } else if (!takes(c)) {
      const char *name = "?";
      for (const struct option *o = opts; o->name != NULL; o++)
        if (o->val == c)
          name = o->name;
      fprintf(stderr, "%s: --%s does not apply to this command (see --help)\n", prog, name);
      code = PX_EXIT_USAGE;
    } else {
      if (c == PX_OPT_COLLECTOR && !collectors_from_flags) {
        collectors_from_flags = true; /* the flags' list replaces the file's */
        agent->ncollectors = 0;
        agent->collector = NULL;
      }
      if (px_agent_apply(agent, c, optarg, err, sizeof(err)) != 0) {
        px_cli_error(prog, "%s", err);
        code = PX_EXIT_USAGE;
      }
    }
  }
  free(opts);
  return code;
}

int px_cmd_submit(int argc, char **argv) {
  const char *prog = "parallax submit";
  px_agent_opts_t agent;
  int code = px__parse(prog,
                       "Usage: parallax submit [FLAG]... [FILE|-]\n"
                       "Sign each measurement of a JSONL file (one compact JSON object per line;\n"
                       "the signed bytes are the line without its newline), spool it, and\n"
                       "upload the spool when --collector is given. Only this agent's own\n"
                       "measurements are signed (software_name \"parallax\", test_name\n"
                       "\"tls_cert_consistency\", probe_ip \"127.0.0.1\"); other lines are\n"
                       "skipped, and the exit status is then 1.\n\n",
                       argc, argv, &agent, px__takes_submit);
  if (code >= 0)
    return code;
  if (argc - optind > 1) {
    fprintf(stderr, "%s: give one FILE (or - for standard input)\n", prog);
    return PX_EXIT_USAGE;
  }
  const char *path = optind < argc ? argv[optind] : "-";
  FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (in == NULL) {
    fprintf(stderr, "%s: cannot open %s: %s\n", prog, path, strerror(errno));
    return PX_EXIT_USAGE;
  }
  px_signer_t signer;
  px_spool_t spool;
  char err[512];
  if (px_agent_signing(&agent, &signer, &spool, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    if (in != stdin)
      fclose(in);
    return PX_EXIT_RUNTIME;
  }
  char *line = NULL;
  size_t cap = 0, lineno = 0, spooled = 0, bad = 0;
  ssize_t n;
  code = PX_EXIT_OK;
  while ((n = getline(&line, &cap, in)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n == 0)
      continue;
    json_error_t jerr;
    json_t *m = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (m == NULL || !json_is_object(m)) {
      /* jansson's message quotes the offending text. */
      char shown[PX_TERM_ESCAPED_MAX(sizeof(jerr.text))];
      fprintf(stderr, "%s: %s:%zu: not a JSON object (%s); skipped\n", prog, path, lineno,
              m == NULL ? px_term_str(jerr.text, shown, sizeof(shown)) : "another JSON value");
      json_decref(m);
      bad++;
      continue;
    }
    json_decref(m);
    /* The signer refuses what is not a measurement of this agent; say
     * which line and why, and go on with the rest. */
    if (px_signer_frame_check(line, (size_t)n, err, sizeof(err)) != 0) {
      fprintf(stderr, "%s: %s:%zu: %s; skipped\n", prog, path, lineno, err);
      bad++;
      continue;
    }
    if (px_sign_and_spool(&signer, &spool, line, (size_t)n, err, sizeof(err)) != 0) {
      fprintf(stderr, "%s: %s:%zu: %s\n", prog, path, lineno, err);
      code = PX_EXIT_RUNTIME;
      break;
    }
    spooled++;
  }
  free(line);
  if (in != stdin)
    fclose(in);
  px_signer_stop(&signer);
  fprintf(stderr, "%s: signed and spooled %zu measurement(s) (key %s)\n", prog, spooled,
          signer.pub.key_id);
  if (bad > 0)
    code = PX_EXIT_RUNTIME;
  if (agent.collector != NULL && !agent.no_upload &&
      px_agent_upload(&agent, &spool, false, prog) != 0 &&
      code == PX_EXIT_OK)
    code = PX_EXIT_RUNTIME;
  return code;
}

int px_cmd_upload(int argc, char **argv) {
  const char *prog = "parallax upload";
  px_agent_opts_t agent;
  char err[512];
  int code = px__parse(prog,
                       "Usage: parallax upload [--collector URL | --config FILE] [FLAG]...\n"
                       "Send every pending measurement of the spool now (ignoring the backoff\n"
                       "that automatic uploads keep after failures) to the collector(s) given\n"
                       "or configured. Exit status 1 while measurements remain pending.\n\n",
                       argc, argv, &agent, px__takes_upload);
  if (code >= 0)
    return code;
  if (optind < argc) {
    fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
    return PX_EXIT_USAGE;
  }
  if (agent.collector == NULL) {
    fprintf(stderr, "%s: no collector: give --collector URL, or --config FILE with collector = "
                    "in it\n", prog);
    return PX_EXIT_USAGE;
  }
  px_spool_t spool;
  if (px_agent_state(&agent, err, sizeof(err)) != 0 ||
      px_spool_open(&spool, agent.state_dir, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    return PX_EXIT_RUNTIME;
  }
  return px_agent_upload(&agent, &spool, false, prog) == 0 ? PX_EXIT_OK : PX_EXIT_RUNTIME;
}

static void px__when(time_t t, char *out, size_t n) {
  if (t == 0) {
    snprintf(out, n, "never");
    return;
  }
  char iso[PX_TIME_ISO_LEN];
  px_time_format_iso(t, iso);
  snprintf(out, n, "%s", iso);
}

/* systemd's answer for the timer, or "" when there is no systemd to ask. */
static void px__timer(const char *property, char *out, size_t n) {
  out[0] = '\0';
  if (access("/run/systemd/system", F_OK) != 0)
    return;
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "systemctl show parallax.timer --property=%s --value 2>/dev/null",
           property);
  /* A fixed command line: the property names are this file's constants. */
  FILE *p = popen(cmd, "r"); /* NOLINT(cert-env33-c) */
  if (p == NULL)
    return;
  if (fgets(out, (int)n, p) == NULL)
    out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
  pclose(p);
}

/* obj[key] (or fallback) rendered for the terminal into buf: the state
 * files are JSON anyone with the state directory could have edited. */
static const char *px__str(json_t *obj, const char *key, const char *fallback, char *buf,
                           size_t n) {
  const char *v = json_string_value(json_object_get(obj, key));
  return px_term_str(v != NULL ? v : fallback, buf, n);
}

/* What `parallax run` left: consent, held measurements, a key rotation
 * still to send, the last runs, and the timer. */
static void px__status_more(px_agent_opts_t *agent) {
  char path[4200], when[64];
  json_t *consent = NULL;
  if (px_consent_load(agent->state_dir, &consent) == 0) {
    char given[256];
    printf("consent: given %s (text version %lld)\n",
           px__str(consent, "given_at", "(date unknown)", given, sizeof(given)),
           json_integer_value(json_object_get(consent, "consent_version")));
  } else {
    printf("consent: not given (runs do not measure; see parallax setup)\n");
  }
  json_decref(consent);
  /* Where the collector placed this machine last time it was asked: what
   * the next measurements say, unless the config sets probe_cc. */
  snprintf(path, sizeof(path), "%s/checkin.json", agent->state_dir);
  json_t *ci = json_load_file(path, 0, NULL);
  if (ci != NULL) {
    char cc[64], asn[64];
    printf("last check-in: %s %s\n", px__str(ci, "probe_cc", "??", cc, sizeof(cc)),
           px__str(ci, "probe_asn", "AS0", asn, sizeof(asn)));
  }
  json_decref(ci);
  snprintf(path, sizeof(path), "%s/held", agent->state_dir);
  size_t held = px_held_count(path);
  if (held > 0)
    printf("kept local: %zu measurement(s) in %s (see the .reason files)\n", held, path);
  snprintf(path, sizeof(path), "%s/key-rotation.json", agent->state_dir);
  if (access(path, F_OK) == 0)
    printf("key rotation: waiting to be sent to the collector (with the next upload)\n");

  pid_t running = px_run_holder(agent->state_dir);
  if (running > 0)
    printf("run in progress: pid %ld (its record follows when it ends)\n", (long)running);
  json_t *runs = px_runs_load(agent->state_dir);
  size_t n = json_array_size(runs);
  printf("runs: %zu recorded%s\n", n, n > 0 ? ", the latest last:" : "");
  for (size_t i = n > 5 ? n - 5 : 0; i < n; i++) {
    json_t *r = json_array_get(runs, i);
    char started[256], check_in[256], stopped_by[256];
    const char *stopped = json_string_value(json_object_get(r, "stopped_by"));
    printf("  %s  exit %lld  %lld/%lld measured  %lld held  %lld bytes  check-in: %s%s%s\n",
           px__str(r, "started", "?", started, sizeof(started)),
           json_integer_value(json_object_get(r, "exit_code")),
           json_integer_value(json_object_get(r, "measured")),
           json_integer_value(json_object_get(r, "targets")),
           json_integer_value(json_object_get(r, "held")),
           json_integer_value(json_object_get(r, "bytes")),
           px__str(r, "check_in", "?", check_in, sizeof(check_in)),
           stopped ? "  stopped by " : "", px_term_str(stopped, stopped_by, sizeof(stopped_by)));
    if (json_string_value(json_object_get(r, "error")) != NULL) {
      char error[PX_TERM_ESCAPED_MAX(768)];
      printf("      failed: %s\n", px__str(r, "error", "?", error, sizeof(error)));
    }
  }
  json_decref(runs);
  px__timer("NextElapseUSecRealtime", when, sizeof(when));
  if (when[0] != '\0')
    printf("next run: %s (parallax.timer)\n", when);
  else
    printf("next run: unknown (parallax.timer is not active, or there is no systemd)\n");
}

/* A failed last run is the first thing a volunteer must see: every
 * later line is about an agent that is not working. */
static void px__last_run_first(const px_agent_opts_t *agent) {
  json_t *runs = px_runs_load(agent->state_dir);
  json_t *last = json_array_get(runs, json_array_size(runs) - 1);
  if (last != NULL && json_integer_value(json_object_get(last, "exit_code")) != 0) {
    char when[256], error[PX_TERM_ESCAPED_MAX(768)];
    printf("last run FAILED at %s (exit %lld): %s\n",
           px__str(last, "started", "?", when, sizeof(when)),
           json_integer_value(json_object_get(last, "exit_code")),
           px__str(last, "error", "see the journal (journalctl -u parallax)", error,
                   sizeof(error)));
  }
  json_decref(runs);
}

/* Below this, a round's measurements (tens of KiB each) may not fit. */
#define PX__DISK_LOW (1024ULL * 1024)

/* What is unsent, and whether the last run found it over its max_spool:
 * said as it is now, not as it was (an upload since may have drained it). */
static void px__spool_size(const px_agent_opts_t *agent, px_spool_t *spool) {
  char held_dir[4200];
  uint64_t pending = 0, held = 0;
  snprintf(held_dir, sizeof(held_dir), "%s/held", agent->state_dir);
  if (px_spool_unsent_bytes(spool, held_dir, &pending, &held) != 0) {
    printf("unsent: unknown (cannot read %s)\n", spool->root);
    return;
  }
  uint64_t unsent = pending + held;
  printf("unsent: %llu bytes (%llu pending, %llu held)\n", (unsigned long long)unsent,
         (unsigned long long)pending, (unsigned long long)held);
  json_t *runs = px_runs_load(agent->state_dir);
  json_t *last = json_array_get(runs, json_array_size(runs) - 1);
  json_int_t limit = json_integer_value(json_object_get(last, "max_spool"));
  if (json_is_true(json_object_get(last, "spool_full")) && limit > 0) {
    if (unsent >= (uint64_t)limit)
      printf("spool full: %llu bytes of max_spool %lld unsent; no new measurements until "
             "uploads drain it%s\n", (unsigned long long)unsent, (long long)limit,
             held > 0 ? " (held measurements count too: see held/)" : "");
    else
      printf("spool was full at the last run (max_spool %lld); %llu bytes unsent now: the "
             "next run measures again\n", (long long)limit, (unsigned long long)unsent);
  }
  json_decref(runs);
  /* A round on a full disk cannot even write its run record: the runs
   * below would read as if all were well. */
  struct statvfs vfs;
  if (statvfs(agent->state_dir, &vfs) == 0) {
    unsigned long long avail = (unsigned long long)vfs.f_bavail * (unsigned long long)vfs.f_frsize;
    if (avail < PX__DISK_LOW)
      printf("disk full: %llu bytes free for %s: rounds can keep neither measurements nor "
             "their records until space is freed (nothing kept is lost)\n",
             avail, agent->state_dir);
  }
}

int px_cmd_status(int argc, char **argv) {
  const char *prog = "parallax status";
  px_agent_opts_t agent;
  char err[512], key[4200], when[64];
  int code = px__parse(prog,
                       "Usage: parallax status [--state-dir DIR | --config FILE]\n"
                       "The agent's identity, its upload spool (pending, sent, rejected, the\n"
                       "last success and the last error), consent, measurements kept local,\n"
                       "the last runs and when the systemd timer fires next. It only reads:\n"
                       "a state directory that is not there is an error.\n\n",
                       argc, argv, &agent, px__takes_status);
  if (code >= 0)
    return code;
  agent.state_read_only = true;
  agent.state_must_exist = true;
  px_spool_t spool;
  if (px_agent_state(&agent, err, sizeof(err)) != 0 ||
      px_spool_open_readonly(&spool, agent.state_dir, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    return PX_EXIT_RUNTIME;
  }
  printf("state directory: %s\n", agent.state_dir);
  px__last_run_first(&agent);
  /* The public half only: status never touches the private key. */
  px_agent_key_path(&agent, key, sizeof(key));
  strncat(key, ".pub", sizeof(key) - strlen(key) - 1);
  FILE *f = fopen(key, "r");
  char line[512] = "";
  px_ssh_pubkey_t pub;
  if (f != NULL && fgets(line, sizeof(line), f) != NULL && px_ssh_pubkey_parse(line, &pub) == 0)
    printf("key id: %s\n", pub.key_id);
  else
    printf("key id: none yet (created by the first signed measurement, or parallax keygen)\n");
  if (f != NULL)
    fclose(f);
  size_t pending, sent, rejected;
  if (px_spool_counts(&spool, &pending, &sent, &rejected) != 0) {
    fprintf(stderr, "%s: cannot read the spool in %s\n", prog, spool.root);
    return PX_EXIT_RUNTIME;
  }
  px_upload_state_t st;
  px_spool_state_load(&spool, &st);
  printf("pending: %zu\nsent: %zu (kept)\nrejected: %zu\n", pending, sent, rejected);
  px__when(st.last_success, when, sizeof(when));
  printf("last upload: %s\n", when);
  /* An error older than the last success is history, not a problem. */
  if (st.last_error[0] != '\0' && st.last_error_at >= st.last_success) {
    /* Mostly the collector's own words (its error detail). */
    char shown[PX_TERM_ESCAPED_MAX(sizeof(st.last_error))];
    px__when(st.last_error_at, when, sizeof(when));
    printf("last error: %s (%s)\n", px_term_str(st.last_error, shown, sizeof(shown)), when);
  }
  px__spool_size(&agent, &spool);
  if (st.next_attempt > px_time_now()) {
    px__when(st.next_attempt, when, sizeof(when));
    printf("next automatic upload: not before %s (%u failure(s) in a row)\n", when, st.failures);
  }
  px__status_more(&agent);
  return PX_EXIT_OK;
}
