/* parallax run: one round, as a timer runs it. Check in with the
 * collector (country, targets, control addresses, the time), measure every
 * target against its own answers AND the control addresses, sign, spool,
 * upload. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cli_common.h"
#include "agent/cli_measure.h"
#include "agent/cli_run.h"
#include "agent/config.h"
#include "collector-client/checkin.h"
#include "common/fileio.h"
#include "common/target.h"

static void px__usage(FILE *out) {
  fputs("Usage: parallax run --collector URL [--config FILE] [FLAG]... [TARGET]...\n"
        "One round: check in with the collector (country and network unless\n"
        "configured, targets, control addresses that other countries saw verify,\n"
        "the time), measure every target against its own DNS answers and the\n"
        "control addresses, sign, spool, upload. Targets given here (or in the\n"
        "config) replace the collector's list. Without the collector, the last\n"
        "check-in (kept in the state directory) is used.\n\n"
        "  --config FILE               an INI file of these flags (see parallax.conf(5));\n"
        "                              flags on the command line win\n",
        out);
  px_agent_flags_usage(out, true);
  px_measure_flags_usage(out);
}

/* The last good check-in, for rounds when the collector is unreachable. */
static int px__checkin(px_agent_opts_t *agent, px_measure_opts_t *o, char **raw, long *offset,
                       const char **source, const char *prog) {
  char err[512], cache[4200];
  px_upload_config_t ucfg = {agent->collector, agent->proxy, agent->collector_ca,
                             agent->collector_pin, 30000};
  snprintf(cache, sizeof(cache), "%s/checkin.json", agent->state_dir);
  int rc = px_checkin_fetch(&ucfg, o->cc_set ? o->probe_cc : NULL, o->asn_set ? o->probe_asn : NULL,
                            raw, offset, err, sizeof(err));
  if (rc == 0) {
    *source = "collector";
    px_write_file_atomic(agent->state_dir, "checkin.json", *raw, strlen(*raw), 0600);
    return 0;
  }
  fprintf(stderr, "%s: check-in with %s failed: %s\n", prog, agent->collector, err);
  *offset = 0;
  if (px_read_file(cache, raw, NULL) == 0) {
    fprintf(stderr, "%s: using the last check-in (%s)\n", prog, cache);
    *source = "cached";
    return 0;
  }
  *source = "none";
  return -EIO;
}

int px_cmd_run(int argc, char **argv) {
  const char *prog = "parallax run";
  static const struct option own[] = {{"config", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0}};
  struct option *opts = px_agent_options(own, true);
  px_measure_opts_t o;
  px_agent_opts_t agent;
  px_config_t config;
  px_checkin_t ci;
  char err[512];
  int c, code = PX_EXIT_OK;
  char *raw = NULL;
  px_target_t *targets = NULL;

  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  px_measure_opts_init(&o);
  memset(&agent, 0, sizeof(agent));
  memset(&config, 0, sizeof(config));
  memset(&ci, 0, sizeof(ci));

  /* The file first, then the flags: what the volunteer types wins. */
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
    if (c == 'c' && px_config_load(optarg, &config, &o, &agent, err, sizeof(err)) != 0) {
      fprintf(stderr, "%s: %s\n", prog, err);
      code = PX_EXIT_USAGE;
      goto done;
    }
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') {
      px__usage(stdout);
      goto done;
    }
    if (c == 'c')
      continue;
    if (c == '?' || c == ':') {
      char shortopt[3] = {'-', (char)optopt, '\0'};
      fprintf(stderr, "%s: %s '%s' (see --help)\n", prog,
              c == ':' ? "missing value for" : "unknown option",
              optopt > 0 && optopt < 256 ? shortopt : argv[optind - 1]);
      code = PX_EXIT_USAGE;
      goto done;
    }
    int rc = px_measure_apply(&o, c, optarg, err, sizeof(err));
    if (rc == -ENOENT)
      rc = px_agent_apply(&agent, c, optarg, err, sizeof(err));
    if (rc != 0) {
      fprintf(stderr, "%s: %s\n", prog, err);
      code = PX_EXIT_USAGE;
      goto done;
    }
  }
  if (px_measure_add_targets(&o, argc - optind, argv + optind, err, sizeof(err)) != 0 ||
      px_measure_push_targets(&o, config.ntargets, config.targets, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    code = PX_EXIT_USAGE;
    goto done;
  }
  if (agent.collector == NULL) {
    fprintf(stderr, "%s: --collector URL is required (or collector = in the config)\n", prog);
    code = PX_EXIT_USAGE;
    goto done;
  }

  /* The signer forks before anything touches the network. */
  px_signer_t signer;
  px_spool_t spool;
  if (px_agent_signing(&agent, &signer, &spool, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  long offset = 0;
  const char *source;
  bool have_checkin = px__checkin(&agent, &o, &raw, &offset, &source, prog) == 0 &&
                      px_checkin_parse(raw, o.allow_nonpublic, &ci, err, sizeof(err)) == 0;
  if (have_checkin) {
    if (!o.cc_set)
      memcpy(o.probe_cc, ci.probe_cc, sizeof(o.probe_cc));
    if (!o.asn_set)
      memcpy(o.probe_asn, ci.probe_asn, sizeof(o.probe_asn));
    /* No local targets: the collector's list. */
    bool local = o.ntargets > 0;
    for (size_t i = 0; !local && i < ci.ntargets; i++)
      if (px_measure_push_targets(&o, 1, &ci.targets[i].input, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        break;
      }
    /* Control addresses go with the target they were given for. */
    for (size_t t = 0; t < o.ntargets; t++)
      for (size_t i = 0; i < ci.ntargets; i++)
        if (strcmp(o.targets[t].input, ci.targets[i].input) == 0) {
          o.targets[t].controls = ci.targets[i].controls;
          o.targets[t].ncontrols = ci.targets[i].ncontrols;
        }
  }
  if (o.ntargets == 0) {
    fprintf(stderr, "%s: no targets: the collector gave none and none are configured\n", prog);
    px_signer_stop(&signer);
    px_agent_upload(&agent, &spool, true, prog);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  if (o.system_resolver == 0 && o.nresolvers == 0 && o.naddresses == 0) {
    bool any = false;
    for (size_t t = 0; t < o.ntargets; t++)
      any = any || o.targets[t].ncontrols > 0;
    if (!any) {
      fprintf(stderr, "%s: nothing to probe: --no-system-resolver needs --resolver or --address\n", prog);
      px_signer_stop(&signer);
      code = PX_EXIT_USAGE;
      goto done;
    }
  }

  json_t *ann = json_object();
  char buf[32];
  snprintf(buf, sizeof(buf), "%ld", offset);
  json_object_set_new(ann, "clock_offset_s", json_string(buf));
  json_object_set_new(ann, "check_in", json_string(source));
  px_exec_t x = {.signer = &signer, .spool = &spool, .clock_offset = offset, .no_stdout = true,
                 .annotations = ann};
  code = px_measure_execute(&o, &x, prog);
  json_decref(ann);
  px_signer_stop(&signer);
  /* A collector that answered the check-in is up: no reason to wait out
   * an earlier backoff. */
  px_agent_upload(&agent, &spool, !have_checkin || strcmp(source, "collector") != 0, prog);
done:
  free(raw);
  free(targets);
  px_checkin_free(&ci);
  px_measure_opts_free(&o);
  px_config_free(&config);
  free(opts);
  return code;
}
