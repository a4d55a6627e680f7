/* parallax run: one round, as a timer runs it. Take the run lock, check
 * in with the collector (country, targets, control addresses, the time,
 * the address it sees us at), measure every target against its own
 * answers AND the control addresses within the volunteer's budget, scrub
 * our own addresses, sign, spool, upload, and leave a run record. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/cli/common.h"
#include "agent/cli/measure.h"
#include "agent/cli/run.h"
#include "agent/cli/config.h"
#include "agent/engine.h"
#include "agent/held.h"
#include "agent/runstate.h"
#include "agent/scrub.h"
#include "collector-client/checkin.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "px_version.h"

static void px__usage(FILE *out) {
  fputs("Usage: parallax run [--config FILE] [FLAG]... [TARGET]...\n"
        "One round, as the systemd timer runs it: check in with the collector\n"
        "(country and network unless configured, targets, control addresses that\n"
        "other countries saw verify, the time), measure every target against its\n"
        "own DNS answers and the control addresses, scrub this machine's addresses,\n"
        "sign, spool, upload. Targets given here (or in the config) replace the\n"
        "collector's list. Without the collector, the last check-in (kept in the\n"
        "state directory) is used. Needs the consent `parallax setup` records; one\n"
        "run at a time (a second one exits 0 at once).\n\n"
        "  --config FILE               an INI file of these flags (default " PX_DEFAULT_CONFIG
        "\n"
        "                              when it exists; see parallax.conf(5)); a flag\n"
        "                              replaces the file's value for its key, lists\n"
        "                              (--collector, --resolver, --address) included\n",
        out);
  px_agent_flags_usage(out, true);
  px_measure_flags_usage(out);
  fputs("\nExit status: 0 the round ran (or another was running, or the spool was\n"
        "full and the round only uploaded), 1 runtime error, 2 bad usage or no consent.\n",
        out);
}

typedef struct px__round {
  px_agent_opts_t agent;
  px_measure_opts_t o;
  px_config_t config;
  px_checkin_t ci;
  char *raw;
  long offset;
  const char *source; /* of the check-in: "collector", "cached" or "none" */
  bool have_checkin;
  px_scrub_t scrub;
  const char *hold_all;
  char held_dir[4200];
  size_t held, released, skipped_by_budget;
  px_engine_stats_t stats;
  json_t *record;
  char why[768]; /* a run that failed before measuring: the reason */
  bool offline;  /* no resolver was reachable: this machine was offline */
  /* The spool limit: what was unsent when the round decided whether to
   * measure, and whether it was too much to. */
  bool spool_known, spool_full;
  uint64_t spool_bytes, max_spool;
} px__round_t;

/* Says why the round cannot go on (on stderr, or in the journal) and
 * keeps the reason for its run record. */
static void px__fail(px__round_t *r, const char *prog, bool log, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void px__fail(px__round_t *r, const char *prog, bool log, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof(r->why), fmt, ap);
  va_end(ap);
  if (log)
    px_log(PX_LOG_ERR, "%s", r->why);
  else
    px_cli_error(prog, "%s", r->why);
}

/* The config file first (given, or the default one when present), then
 * the flags: what the volunteer types wins. Returns -1 to go on, else the
 * exit code. */
static int px__parse(px__round_t *r, int argc, char **argv, const char *prog) {
  static const struct option own[] = {{"config", required_argument, NULL, 'c'},
                                      {NULL, 0, NULL, 0}};
  struct option *opts = px_agent_options(own, true);
  char err[512];
  int c, code = -1;

  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  const char *config = px_agent_config_path(argc, argv, opts, 'c');
  if (config != NULL && px_config_load(config, &r->config, &r->o, &r->agent, err, sizeof(err)) != 0) {
    px__fail(r, prog, false, "%s", err);
    code = PX_EXIT_USAGE;
    goto done;
  }
  /* One rule for every key, lists included: a flag replaces the file's
   * value. A list flag empties the file's list the first time it is met
   * (repeating it on the command line still builds a list). */
  bool flag_seen[3] = {false, false, false};
  bool flag_targets = false;
  optind = 1;
  while (code < 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int list = c == PX_OPT_COLLECTOR ? 0 : c == PX_OPT_RESOLVER ? 1 : c == PX_OPT_ADDRESS ? 2 : -1;
    if (list >= 0 && !flag_seen[list]) {
      flag_seen[list] = true;
      if (list == 0) {
        r->agent.ncollectors = 0;
        r->agent.collector = NULL;
      } else if (list == 1) {
        r->o.nresolvers = 0;
      } else {
        r->o.naddresses = 0;
      }
    }
    if (c == PX_OPT_TARGETS_FILE)
      flag_targets = true;
    if (c == 'h') {
      px__usage(stdout);
      code = PX_EXIT_OK;
    } else if (c == '?' || c == ':') {
      char shortopt[3] = {'-', (char)optopt, '\0'};
      px__fail(r, prog, false, "%s '%s' (see --help)",
               c == ':' ? "missing value for" : "unknown option",
               optopt > 0 && optopt < 256 ? shortopt : argv[optind - 1]);
      code = PX_EXIT_USAGE;
    } else if (c != 'c') {
      int rc = px_measure_apply(&r->o, c, optarg, err, sizeof(err));
      if (rc == -ENOENT)
        rc = px_agent_apply(&r->agent, c, optarg, err, sizeof(err));
      if (rc != 0) {
        px__fail(r, prog, false, "%s", err);
        code = PX_EXIT_USAGE;
      }
    }
  }
  if (code < 0 &&
      (px_measure_add_targets(&r->o, argc - optind, argv + optind, err, sizeof(err)) != 0 ||
       /* Targets on the command line replace the file's, like any key. */
       (!flag_targets && optind == argc &&
        px_measure_push_targets(&r->o, r->config.ntargets, r->config.targets, err,
                                sizeof(err)) != 0))) {
    px__fail(r, prog, false, "%s", err);
    code = PX_EXIT_USAGE;
  }
  if (code < 0 && r->agent.collector == NULL) {
    px__fail(r, prog, false, "no collector: give --collector URL or set collector = in the "
                             "config (`parallax setup` writes one)");
    code = PX_EXIT_USAGE;
  }
done:
  free(opts);
  return code;
}

/* Tries the collectors in order; the first that answers becomes the one
 * this round uploads to. Falls back to the cached answer. */
static void px__checkin(px__round_t *r) {
  px_agent_opts_t *a = &r->agent;
  px_measure_opts_t *o = &r->o;
  char err[512];
  /* Through a proxy or Tor the volunteer hides where they are: the
   * collector must not look at the address (it would see the proxy's). */
  bool geolocate = a->proxy == NULL;

  r->source = "none";
  for (size_t i = 0; i < a->ncollectors; i++) {
    px_upload_config_t ucfg = {a->collectors[i], a->proxy, a->collector_ca, a->collector_pin,
                               30000};
    free(r->raw);
    r->raw = NULL;
    int rc = px_checkin_fetch(&ucfg, o->cc_set ? o->probe_cc : NULL,
                              o->asn_set ? o->probe_asn : NULL, geolocate, &r->raw, &r->offset,
                              err, sizeof(err));
    if (rc == 0 && r->raw != NULL) {
      a->collector = a->collectors[i];
      r->source = "collector";
      px_write_file_atomic(a->state_dir, "checkin.json", r->raw, strlen(r->raw), 0600);
      break;
    }
    px_log(PX_LOG_WARNING, "check-in with %s failed: %s", a->collectors[i], err);
  }
  if (strcmp(r->source, "collector") != 0) {
    r->offset = 0;
    free(r->raw);
    r->raw = NULL;
    char cache[4200];
    snprintf(cache, sizeof(cache), "%s/checkin.json", a->state_dir);
    if (px_read_file(cache, &r->raw, NULL) == 0) {
      px_log(PX_LOG_NOTICE, "using the last check-in (%s)", cache);
      r->source = "cached";
    }
  }
  r->have_checkin = r->raw != NULL &&
                    px_checkin_parse(r->raw, o->allow_nonpublic, &r->ci, err, sizeof(err)) == 0;
  if (r->raw != NULL && !r->have_checkin)
    px_log(PX_LOG_WARNING, "check-in answer unusable: %s", err);
}

/* Local targets win; else the collector's. Control addresses go with the
 * target they were given for. Then the budget's --max-targets: a window
 * that moves along the list from run to run, so every target gets its
 * turn. */
static int px__targets(px__round_t *r) {
  px_measure_opts_t *o = &r->o;
  if (r->have_checkin) {
    char err[256];
    if (!o->cc_set)
      memcpy(o->probe_cc, r->ci.probe_cc, sizeof(o->probe_cc));
    if (!o->asn_set)
      memcpy(o->probe_asn, r->ci.probe_asn, sizeof(o->probe_asn));
    bool local = o->ntargets > 0;
    for (size_t i = 0; !local && i < r->ci.ntargets; i++)
      if (px_measure_push_targets(o, 1, &r->ci.targets[i].input, err, sizeof(err)) != 0)
        px_log(PX_LOG_WARNING, "target from the collector skipped: %s", err);
    for (size_t t = 0; t < o->ntargets; t++)
      for (size_t i = 0; i < r->ci.ntargets; i++)
        if (strcmp(o->targets[t].input, r->ci.targets[i].input) == 0) {
          o->targets[t].controls = r->ci.targets[i].controls;
          o->targets[t].ncontrols = r->ci.targets[i].ncontrols;
        }
  }
  size_t n = o->ntargets, max = r->agent.max_targets;
  if (max == 0 || max >= n)
    return 0;
  px_target_t *window = malloc(max * sizeof(*window));
  if (window == NULL)
    return -ENOMEM;
  size_t start = px_cursor_load(r->agent.state_dir) % n;
  for (size_t i = 0; i < max; i++)
    window[i] = o->targets[(start + i) % n];
  free(o->targets);
  o->targets = window;
  o->ntargets = max;
  r->skipped_by_budget = n - max;
  px_cursor_save(r->agent.state_dir, (start + max) % n);
  px_log(PX_LOG_INFO, "max_targets: measuring %zu of %zu targets (from #%zu)", max, n, start + 1);
  return 0;
}

/* Our addresses: the interfaces', the one the collector sees now, the ones
 * it saw before, and a configured one. Without a fresh one from the
 * collector we cannot be sure, and the round's measurements wait in held/
 * for a run that knows (unless the volunteer said "unknown" is fine). */
static void px__scrub_setup(px__round_t *r) {
  px_agent_opts_t *a = &r->agent;
  bool fresh = strcmp(r->source, "collector") == 0 && r->ci.client_address[0] != '\0';
  if (fresh)
    px_public_address_remember(a->state_dir, r->ci.client_address);
  px_agent_known_addresses(a, &r->scrub);
  if (!fresh && a->public_address == NULL) {
    r->hold_all = PX_HELD_UNKNOWN_PUBLIC ": the check-in did not say which address the "
                  "collector sees (collector unreachable, or uploads go through a proxy); "
                  "set public_address in the config to upload anyway";
    px_log(PX_LOG_WARNING, "this machine's public address is unknown: this round's "
                           "measurements stay in %s until a run learns it", r->held_dir);
  }
}

static void px__record(px__round_t *r, time_t started, int code) {
  char a[PX_TIME_ISO_LEN], b[PX_TIME_ISO_LEN];
  px_time_format_iso(started, a);
  px_time_format_iso(px_time_now(), b);
  r->record = json_pack("{s:s, s:s, s:i, s:s?, s:s, s:I, s:I, s:I, s:I, s:I, s:s?}", "started", a,
                        "finished", b, "exit_code", code, "collector", r->agent.collector,
                        "check_in", r->source ? r->source : "none", "targets",
                        (json_int_t)r->o.ntargets, "measured", (json_int_t)r->stats.done, "held",
                        (json_int_t)r->held, "bytes", (json_int_t)r->stats.bytes,
                        "not_started", (json_int_t)(r->skipped_by_budget + r->o.ntargets -
                                                    r->stats.started),
                        "stopped_by", r->stats.stopped_by);
  if (r->record != NULL && r->spool_known) {
    json_object_set_new(r->record, "spool_bytes", json_integer((json_int_t)r->spool_bytes));
    json_object_set_new(r->record, "max_spool", json_integer((json_int_t)r->max_spool));
    if (r->spool_full)
      json_object_set_new(r->record, "spool_full", json_true());
  }
}

/* Whether the unsent spool (pending and held) is at or over max_spool.
 * When it is, uploads first (they may drain it) and asks again: a round
 * measures as soon as there is room, and deletes nothing to make room. */
static bool px__spool_full(px__round_t *r, px_spool_t *spool, const char *prog) {
  uint64_t pending = 0, held = 0;
  r->max_spool = r->agent.max_spool > 0 ? r->agent.max_spool : PX_DEFAULT_MAX_SPOOL;
  for (int pass = 0; pass < 2; pass++) {
    int rc = px_spool_unsent_bytes(spool, r->held_dir, &pending, &held);
    if (rc != 0) {
      /* Not knowing is no reason to stop measuring: the disk itself
       * still bounds the spool (a full one is reported as such). */
      px_log(PX_LOG_WARNING, "cannot size the spool in %s: %s", spool->root, strerror(-rc));
      return false;
    }
    r->spool_known = true;
    r->spool_bytes = pending + held;
    if (r->spool_bytes < r->max_spool)
      return false;
    if (pass == 0 && !r->agent.no_upload && pending > 0)
      px_agent_upload(&r->agent, spool, strcmp(r->source, "collector") != 0, prog);
    else
      break;
  }
  r->spool_full = true;
  px_log(PX_LOG_WARNING, "spool full: %llu bytes unsent (%llu pending, %llu held) of max_spool "
                         "%llu; no new measurements until uploads drain it",
         (unsigned long long)r->spool_bytes, (unsigned long long)pending,
         (unsigned long long)held, (unsigned long long)r->max_spool);
  return true;
}

/* Measures, scrubs, signs and spools; returns the exit code. */
static int px__measure(px__round_t *r, px_signer_t *signer, px_spool_t *spool, const char *prog) {
  json_t *ann = json_object();
  char buf[32];
  snprintf(buf, sizeof(buf), "%ld", r->offset);
  json_object_set_new(ann, "clock_offset_s", json_string(buf));
  json_object_set_new(ann, "check_in", json_string(r->source));
  px_exec_t x = {.signer = signer,
                 .spool = spool,
                 .clock_offset = r->offset,
                 .no_stdout = true,
                 .annotations = ann,
                 .network_name = r->have_checkin && r->ci.probe_network_name[0] != '\0'
                                     ? r->ci.probe_network_name
                                     : NULL,
                 .scrub = &r->scrub,
                 .hold_all = r->hold_all,
                 .held_dir = r->held_dir,
                 .max_runtime_ms = r->agent.max_runtime_s * 1000,
                 .max_bytes = r->agent.max_bytes,
                 .stats = &r->stats,
                 .held = &r->held,
                 .offline = &r->offline};
  int code = px_measure_execute(&r->o, &x, prog);
  json_decref(ann);
  return code;
}

int px_cmd_run(int argc, char **argv) {
  const char *prog = "parallax run";
  px__round_t r;
  px_signer_t signer;
  px_spool_t spool;
  char err[512];
  int lock = -1;
  time_t started = px_time_now();
  bool have_state = false, recorded = false;

  memset(&r, 0, sizeof(r));
  px_measure_opts_init(&r.o);
  int code = px__parse(&r, argc, argv, prog);
  if (code >= 0)
    goto done;
  px_log_setup(prog, r.agent.log_level);
  code = PX_EXIT_OK;

  if (px_agent_state(&r.agent, err, sizeof(err)) != 0) {
    px_log(PX_LOG_ERR, "%s", err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  have_state = true;
  if (px_consent_load(r.agent.state_dir, NULL) != 0) {
    px__fail(&r, prog, true, "no consent recorded in %s: run `parallax setup` first (it "
                             "explains what is measured and published)", r.agent.state_dir);
    code = PX_EXIT_USAGE;
    goto done;
  }
  pid_t holder;
  int rc = px_run_lock(r.agent.state_dir, &lock, &holder, err, sizeof(err));
  if (rc == -EWOULDBLOCK) {
    if (holder > 0)
      px_log(PX_LOG_NOTICE, "another run (pid %ld) is in progress; this one has nothing to do",
             (long)holder);
    else
      px_log(PX_LOG_NOTICE, "another run is in progress; this one has nothing to do");
    goto done; /* not a failure: the timer fired while a long round ran */
  }
  if (rc != 0) {
    px__fail(&r, prog, true, "%s", err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  snprintf(r.held_dir, sizeof(r.held_dir), "%s/held", r.agent.state_dir);

  /* The signer forks before anything touches the network. */
  if (px_agent_signing(&r.agent, &signer, &spool, err, sizeof(err)) != 0) {
    px__fail(&r, prog, true, "%s", err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  px__checkin(&r);
  px__scrub_setup(&r);
  if (r.hold_all == NULL) {
    err[0] = '\0';
    if (px_held_release(r.held_dir, &r.scrub, &signer, &spool, &r.released, err,
                        sizeof(err)) != 0)
      px_log(PX_LOG_WARNING, "%s", err);
    else if (r.released > 0)
      px_log(PX_LOG_INFO, "released %zu measurement(s) held while the public address was "
                          "unknown", r.released);
  }
  if (px__spool_full(&r, &spool, prog)) {
    /* Not a failure (exit 0): the agent works as designed and catches up
     * by itself once the collector takes the backlog. A failed unit would
     * read as a crash in systemctl; status and the journal say why. */
    r.stats.stopped_by = "max_spool";
  } else if (px__targets(&r) != 0) {
    snprintf(r.why, sizeof(r.why), "cannot build the list of targets");
    code = PX_EXIT_RUNTIME;
  } else if (r.o.ntargets == 0) {
    px__fail(&r, prog, true, "no targets: the collector gave none and none are configured");
    code = PX_EXIT_RUNTIME;
  } else if (r.o.system_resolver == 0 && r.o.nresolvers == 0 && r.o.naddresses == 0 &&
             r.o.targets[0].ncontrols == 0) {
    px__fail(&r, prog, true, "nothing to probe: --no-system-resolver needs --resolver or "
                             "--address");
    code = PX_EXIT_USAGE;
  } else {
    px_held_mark_t mark;
    bool marked = px_held_mark(r.held_dir, &spool, &mark) == 0;
    code = px__measure(&r, &signer, &spool, prog);
    if (r.offline) {
      /* Not data about the network's censors: about this machine. Kept
       * where no later round uploads it by itself. */
      size_t moved = 0;
      if (!marked || px_held_take_round(r.held_dir, &spool, &mark, PX_HELD_OFFLINE, &moved) != 0)
        px_log(PX_LOG_WARNING, "cannot move this offline round to %s: it stays in the spool",
               r.held_dir);
      r.held += moved;
      px__fail(&r, prog, true, "no resolver reachable: is this machine online? This round "
                               "is kept in %s, not uploaded", r.held_dir);
      if (code == PX_EXIT_OK)
        code = PX_EXIT_RUNTIME;
    }
    px_held_mark_free(&mark);
    if (r.stats.stopped_by != NULL && strcmp(r.stats.stopped_by, "signal") != 0)
      px_log(PX_LOG_NOTICE, "budget %s reached after %zu of %zu target(s); uploading what "
                            "there is", r.stats.stopped_by, r.stats.done, r.o.ntargets);
  }
  px_signer_stop(&signer);
  if (r.held > 0)
    px_log(PX_LOG_NOTICE, "%zu measurement(s) kept on this machine in %s (see the .reason "
                          "files)", r.held, r.held_dir);
  if (r.agent.no_upload)
    px_log(PX_LOG_INFO, "upload is off: measurements stay in the spool for `parallax upload`");
  else if (r.offline)
    px_log(PX_LOG_NOTICE, "offline: what is spooled stays pending for the next round");
  else
    /* A collector that answered the check-in is up: no reason to wait out
     * an earlier backoff. */
    px_agent_upload(&r.agent, &spool, strcmp(r.source, "collector") != 0, prog);
  px__record(&r, started, code);
  if (r.record != NULL && r.why[0] != '\0')
    json_object_set_new(r.record, "error", json_string(r.why));
  if (r.record != NULL && r.offline)
    json_object_set_new(r.record, "offline", json_true());
  if (r.record == NULL || px_runs_append(r.agent.state_dir, r.record) != 0)
    px_log(PX_LOG_WARNING, "cannot write the run record in %s", r.agent.state_dir);
  recorded = true;
done:
  /* A round that failed before it measured leaves a record too, so that
   * `parallax status` shows the failure rather than the last good run. */
  if (!recorded && code != PX_EXIT_OK && r.why[0] != '\0' &&
      (have_state ||
       /* never created for this: only an agent that has one hears of it */
       (r.agent.state_must_exist = true, px_agent_state(&r.agent, err, sizeof(err)) == 0))) {
    px__record(&r, started, code);
    if (r.record != NULL)
      json_object_set_new(r.record, "error", json_string(r.why));
    if (r.record == NULL || px_runs_append(r.agent.state_dir, r.record) != 0)
      px_log(PX_LOG_WARNING, "cannot write the run record in %s", r.agent.state_dir);
  }
  json_decref(r.record);
  px_run_unlock(lock);
  free(r.raw);
  px_checkin_free(&r.ci);
  px_measure_opts_free(&r.o);
  px_config_free(&r.config);
  return code;
}
