/* parallax setup: from a fresh install to an agent the timer may run.
 * Explains what is measured and published, asks for consent (or takes
 * --yes), writes the config, creates the key and records the consent in
 * the state directory, which `parallax run` and the unit's
 * ConditionPathExists= both require. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cli/common.h"
#include "agent/cli/keys.h"
#include "agent/cli/measure.h"
#include "agent/cli/run.h"
#include "agent/cli/config.h"
#include "agent/cli/consent.h"
#include "common/keyfile.h"
#include "agent/runstate.h"
#include "collector-client/checkin.h"
#include "common/fileio.h"
#include "common/sshsig.h"
#include "common/statedir.h"
#include "common/timeutil.h"
#include "px_version.h"

enum { PX__YES = 1000, PX__WITHDRAW, PX__FORCE, PX__CONFIG };

static void px__usage(FILE *out) {
  fputs("Usage: parallax setup [--yes] [--config FILE] [--state-dir DIR] [SETTING]...\n"
        "       parallax setup --withdraw [--state-dir DIR]\n"
        "Explains what parallax measures and publishes, asks for your consent, writes\n"
        "the config (default " PX_DEFAULT_CONFIG ") from the settings given\n"
        "here, creates the agent's key and records the consent in the state directory.\n"
        "Without a terminal, --yes gives consent non-interactively.\n\n"
        "  --yes                       consent without asking (automation)\n"
        "  --config FILE               the config to write (kept as it is when it exists\n"
        "                              and no setting is given)\n"
        "  --force                     replace an existing config with these settings\n"
        "  --withdraw                  withdraw consent: runs stop measuring\n\n"
        "Settings (written to the config; see parallax.conf(5)):\n",
        out);
  px_agent_flags_usage(out, true);
  px_measure_flags_usage(out);
}

typedef struct px__setting {
  const char *name;
  const char *value; /* NULL for a switch */
} px__setting_t;

typedef struct px__setup {
  bool yes, withdraw, force, interactive;
  const char *config;
  px__setting_t *settings;
  size_t nsettings;
  char *answers[16]; /* typed answers and absolute paths, kept for the settings */
  size_t nanswers;
} px__setup_t;

static bool px__is_path(const char *name) {
  static const char *const paths[] = {"ca-file", "targets-file", "collector-ca", "output",
                                      "state-dir", NULL};
  for (int i = 0; paths[i] != NULL; i++)
    if (strcmp(name, paths[i]) == 0)
      return true;
  return false;
}

static int px__add_setting(px__setup_t *s, const char *name, const char *value) {
  /* The service runs elsewhere than this shell: relative paths would
   * point nowhere. The absolute copy lives as long as the answers. */
  if (value != NULL && value[0] != '/' && px__is_path(name) &&
      s->nanswers < sizeof(s->answers) / sizeof(s->answers[0])) {
    char cwd[4096], *abs = NULL;
    if (getcwd(cwd, sizeof(cwd)) == NULL || asprintf(&abs, "%s/%s", cwd, value) < 0)
      return -ENOMEM;
    s->answers[s->nanswers++] = abs;
    value = abs;
  }
  px__setting_t *grown = realloc(s->settings, (s->nsettings + 1) * sizeof(*grown));
  if (grown == NULL)
    return -ENOMEM;
  s->settings = grown;
  s->settings[s->nsettings++] = (px__setting_t){name, value};
  return 0;
}

/* A line from the terminal, without the newline; NULL at end of input. */
static char *px__ask(px__setup_t *s, const char *question) {
  char buf[1024];
  fputs(question, stdout);
  fflush(stdout);
  if (fgets(buf, sizeof(buf), stdin) == NULL)
    return NULL;
  buf[strcspn(buf, "\r\n")] = '\0';
  /* The answers own every line; one they could not hold would leak. */
  if (s->nanswers >= sizeof(s->answers) / sizeof(s->answers[0]))
    return NULL;
  char *line = strdup(buf);
  if (line != NULL)
    s->answers[s->nanswers++] = line;
  return line;
}

/* Asks until the answer is one the flag's own code accepts (applied to o
 * or agent, as the config loader will), saying why after each bad one;
 * an empty answer is asked again too. NULL at the end of input (nothing
 * has been written by then). */
static char *px__ask_valid(px__setup_t *s, const char *question, int code, px_measure_opts_t *o,
                           px_agent_opts_t *agent) {
  for (;;) {
    char *v = px__ask(s, question);
    if (v == NULL)
      return NULL;
    char err[512];
    int rc = v[0] == '\0' ? -EINVAL : px_measure_apply(o, code, v, err, sizeof(err));
    if (rc == -ENOENT)
      rc = px_agent_apply(agent, code, v, err, sizeof(err));
    if (rc == 0)
      return v;
    printf("  %s; please try again (Ctrl-C stops setup, nothing is written).\n",
           v[0] == '\0' ? "an answer is needed" : err);
    /* Forget the refused answer: the answers hold only what is kept. */
    free(s->answers[--s->nanswers]);
  }
}

/* Contacts the collector as a run would (a check-in). 0 when it answered;
 * otherwise the reason is in err. */
static int px__reachable(const px_agent_opts_t *agent, const px_measure_opts_t *o,
                         const char *url, char *err, size_t errlen) {
  px_upload_config_t ucfg = {url, agent->proxy, agent->collector_ca, agent->collector_pin,
                             15000};
  char *raw = NULL;
  long offset = 0;
  int rc = px_checkin_fetch(&ucfg, o->cc_set ? o->probe_cc : NULL,
                            o->asn_set ? o->probe_asn : NULL, agent->proxy == NULL, &raw,
                            &offset, err, errlen);
  free(raw);
  return rc;
}

/* The config text: one "key = value" line per setting, lists joined. */
static char *px__config_text(const px__setup_t *s) {
  char *text = NULL, when[PX_TIME_ISO_LEN];
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  if (out == NULL)
    return NULL;
  px_time_format_iso(time(NULL), when);
  fprintf(out, "# parallax agent configuration, written by `parallax setup` at %s.\n"
               "# Every key is described in parallax.conf(5). Readable by the service's\n"
               "# dynamic user: put no secrets here.\n\n[parallax]\n", when);
  for (size_t i = 0; i < s->nsettings; i++) {
    bool seen = false;
    for (size_t j = 0; j < i && !seen; j++)
      seen = strcmp(s->settings[j].name, s->settings[i].name) == 0;
    if (seen)
      continue;
    char key[64];
    snprintf(key, sizeof(key), "%s", s->settings[i].name);
    for (char *p = key; *p; p++)
      if (*p == '-')
        *p = '_';
    fprintf(out, "%s =", key);
    if (s->settings[i].value == NULL)
      fputs(" yes", out);
    for (size_t j = i; j < s->nsettings; j++)
      if (strcmp(s->settings[j].name, s->settings[i].name) == 0 && s->settings[j].value != NULL)
        fprintf(out, " %s", s->settings[j].value);
    fputs("\n", out);
  }
  fclose(out);
  return text;
}

static int px__write_config(const char *path, const char *text, char *err, size_t errlen) {
  char *copy = strdup(path), *copy2 = strdup(path);
  int rc = -ENOMEM;
  if (copy != NULL && copy2 != NULL) {
    const char *dir = dirname(copy), *base = basename(copy2);
    rc = px_mkdirs(dir, 0755);
    if (rc == 0)
      rc = px_write_file_atomic(dir, base, text, strlen(text), 0644);
  }
  if (rc != 0)
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
  free(copy);
  free(copy2);
  return rc;
}

/* The key, created when missing; its id into key_id. */
static int px__key(px_agent_opts_t *agent, char *key_id, char *err, size_t errlen) {
  char path[4200], pubpath[4300], *line = NULL;
  px_ssh_pubkey_t pub;
  px_agent_key_path(agent, path, sizeof(path));
  if (access(path, F_OK) != 0) {
    int rc = px_key_generate(path, &pub, err, errlen);
    if (rc != 0)
      return rc;
    /* Root setting up a directory the service already owns: the key must
     * be the service's, or it could not load it. */
    struct stat st;
    if (geteuid() == 0 && stat(agent->state_dir, &st) == 0 && st.st_uid != 0) {
      snprintf(pubpath, sizeof(pubpath), "%s.pub", path);
      if (chown(path, st.st_uid, st.st_gid) != 0 || chown(pubpath, st.st_uid, st.st_gid) != 0) {
        snprintf(err, errlen, "cannot give the key to the service's user: %s", strerror(errno));
        return -errno;
      }
    }
  } else {
    snprintf(pubpath, sizeof(pubpath), "%s.pub", path);
    if (px_read_file(pubpath, &line, NULL) != 0 || px_ssh_pubkey_parse(line, &pub) != 0) {
      free(line);
      snprintf(err, errlen, "cannot read the public key %.400s", pubpath);
      return -EINVAL;
    }
    free(line);
  }
  memcpy(key_id, pub.key_id, PX_KEY_ID_LEN);
  return 0;
}

static int px__withdraw(px_agent_opts_t *agent) {
  char err[512];
  agent->state_read_only = true;
  if (px_agent_state(agent, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax setup: %s\n", err);
    return PX_EXIT_RUNTIME;
  }
  int rc = px_consent_withdraw(agent->state_dir);
  if (rc != 0) {
    fprintf(stderr, "parallax setup: cannot remove the consent in %s: %s\n", agent->state_dir,
            strerror(-rc));
    return PX_EXIT_RUNTIME;
  }
  printf("Consent withdrawn: `parallax run` (and the timer) will not measure any more.\n"
         "This agent's key and any measurements not yet uploaded are in %s;\n"
         "delete that directory to remove them. Measurements already published stay\n"
         "published (CC BY 4.0); for anything more, write to the collector's operator\n"
         "with this agent's key id (parallax status shows it).\n",
         agent->state_dir);
  return PX_EXIT_OK;
}

/* Fills what a proxy user must state themselves; 0 or an exit code. */
static int px__proxy_questions(px__setup_t *s, px_measure_opts_t *o, px_agent_opts_t *agent) {
  if (agent->proxy == NULL)
    return 0;
  struct {
    bool have;
    int code;
    const char *name, *question;
  } need[] = {
      {o->cc_set, PX_OPT_PROBE_CC, "probe-cc",
       "Uploads go through a proxy, so the collector cannot tell where "
       "you are.\nYour country (two letters, e.g. DE): "},
      {o->asn_set, PX_OPT_PROBE_ASN, "probe-asn", "Your network's AS number (e.g. AS3320): "},
      {agent->public_address != NULL, PX_OPT_PUBLIC_ADDRESS, "public-address",
       "This machine's public IP address, to scrub from measurements ('unknown' to\n"
       "upload without it): "},
  };
  for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
    if (need[i].have)
      continue;
    if (!s->interactive) {
      fprintf(stderr, "parallax setup: with --proxy, give --probe-cc, --probe-asn and "
                      "--public-address (an IP or 'unknown'): the collector cannot see where "
                      "you are\n");
      return PX_EXIT_USAGE;
    }
    char *v = px__ask_valid(s, need[i].question, need[i].code, o, agent);
    if (v == NULL) {
      printf("\nSetup stopped: nothing was written.\n");
      return PX_EXIT_USAGE;
    }
    if (px__add_setting(s, need[i].name, v) != 0)
      return PX_EXIT_RUNTIME;
  }
  return 0;
}

/* Reads the flags: setup's own, and settings, each checked by applying it
 * to scratch options exactly as the config loader will. Returns -1 to go
 * on, or an exit code. */
static int px__parse(px__setup_t *s, px_measure_opts_t *o, px_agent_opts_t *agent, int argc,
                     char **argv) {
  static const struct option own[] = {{"yes", no_argument, NULL, PX__YES},
                                      {"withdraw", no_argument, NULL, PX__WITHDRAW},
                                      {"force", no_argument, NULL, PX__FORCE},
                                      {"config", required_argument, NULL, PX__CONFIG},
                                      {NULL, 0, NULL, 0}};
  struct option *opts = px_agent_options(own, true);
  char err[512];
  int c, idx, code = -1;
  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  opterr = 0;
  optind = 1;
  while (code < 0 && (c = getopt_long(argc, argv, ":h", opts, &idx)) != -1) {
    switch (c) {
    case 'h':
      px__usage(stdout);
      code = PX_EXIT_OK;
      break;
    case '?':
    case ':':
      px_cli_getopt_error("parallax setup", c, argv);
      code = PX_EXIT_USAGE;
      break;
    case PX__YES:
      s->yes = true;
      break;
    case PX__WITHDRAW:
      s->withdraw = true;
      break;
    case PX__FORCE:
      s->force = true;
      break;
    case PX__CONFIG:
      s->config = optarg;
      break;
    default: {
      int rc = px_measure_apply(o, c, optarg, err, sizeof(err));
      if (rc == -ENOENT)
        rc = px_agent_apply(agent, c, optarg, err, sizeof(err));
      if (rc == 0)
        rc = px__add_setting(s, opts[idx].name, optarg);
      if (rc != 0) {
        px_cli_error("parallax setup", "%s", rc == -ENOMEM ? "out of memory" : err);
        code = PX_EXIT_USAGE;
      }
    }
    }
  }
  if (code < 0 && optind < argc) {
    fprintf(stderr, "parallax setup: unexpected argument '%s' (targets go in --targets-file "
                    "or the config)\n", argv[optind]);
    code = PX_EXIT_USAGE;
  }
  free(opts);
  return code;
}

/* Interactive consent; 0 when given. */
static int px__consent(px__setup_t *s, const px_agent_opts_t *agent) {
  px_consent_print(stdout, agent->collectors, agent->ncollectors);
  if (s->yes) {
    printf("\nConsent given with --yes.\n");
    return 0;
  }
  char *answer = px__ask(s, "\nDo you agree to run these measurements and publish them as "
                            "described? [y/N] ");
  if (answer != NULL && (strcmp(answer, "y") == 0 || strcmp(answer, "Y") == 0 ||
                         strcasecmp(answer, "yes") == 0))
    return 0;
  printf("No consent: nothing was changed.\n");
  return -EPERM;
}

int px_cmd_setup(int argc, char **argv) {
  px__setup_t s;
  px_measure_opts_t o;
  px_agent_opts_t agent;
  px_config_t cfg;
  char err[512], key_id[PX_KEY_ID_LEN], *text = NULL;
  memset(&s, 0, sizeof(s));
  memset(&agent, 0, sizeof(agent));
  memset(&cfg, 0, sizeof(cfg));
  px_measure_opts_init(&o);

  int code = px__parse(&s, &o, &agent, argc, argv);
  if (code >= 0)
    goto done;
  if (s.withdraw) {
    code = px__withdraw(&agent);
    goto done;
  }
  s.interactive = !s.yes && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  if (!s.yes && !s.interactive) {
    fprintf(stderr, "parallax setup: no terminal to ask for consent on; read `parallax setup "
                    "--help` and give --yes to consent\n");
    code = PX_EXIT_USAGE;
    goto done;
  }
  if (s.config == NULL)
    s.config = PX_DEFAULT_CONFIG;
  /* The commented template `make install` leaves counts as no config. */
  bool exists = access(s.config, F_OK) == 0 && !px_config_is_blank(s.config);
  bool write = !exists || s.force;
  /* --state-dir says where to record consent; alone it changes nothing. */
  size_t nchanges = s.nsettings;
  for (size_t i = 0; i < s.nsettings; i++)
    nchanges -= strcmp(s.settings[i].name, "state-dir") == 0;
  if (exists && !s.force && nchanges > 0) {
    fprintf(stderr, "parallax setup: %s exists: edit it, or give --force to replace it with "
                    "the settings given here\n", s.config);
    code = PX_EXIT_USAGE;
    goto done;
  }
  if (!write) {
    /* Keep the volunteer's file; its settings decide the questions. */
    px_measure_opts_free(&o);
    px_measure_opts_init(&o);
    const char *state_flag = agent.state_dir_flag;
    memset(&agent, 0, sizeof(agent));
    if (px_config_load(s.config, &cfg, &o, &agent, err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax setup: %s\n", err);
      code = PX_EXIT_USAGE;
      goto done;
    }
    if (state_flag != NULL)
      agent.state_dir_flag = state_flag;
  }
  if (agent.ncollectors == 0 && write && s.interactive) {
    char *url = px__ask_valid(&s, "Collector URL (https://…): ", PX_OPT_COLLECTOR, &o, &agent);
    if (url == NULL) {
      printf("\nSetup stopped: nothing was written.\n");
      code = PX_EXIT_USAGE;
      goto done;
    }
    px__add_setting(&s, "collector", url);
  }
  if (agent.ncollectors == 0) {
    fprintf(stderr, "parallax setup: no collector: give --collector URL%s\n",
                    write ? "" : " (or add collector = to the config)");
    code = PX_EXIT_USAGE;
    goto done;
  }
  if ((code = px__proxy_questions(&s, &o, &agent)) != 0)
    goto done;
  /* Before "set up": does the collector answer? A volunteer may set up
   * offline, so a silent one is a warning and, at a terminal, a choice. */
  for (size_t i = 0; i < agent.ncollectors; i++) {
    char why[512];
    if (px__reachable(&agent, &o, agent.collectors[i], why, sizeof(why)) == 0) {
      printf("Collector %s answers.\n", agent.collectors[i]);
      continue;
    }
    printf("Warning: the collector %s does not answer: %s\n", agent.collectors[i], why);
    if (!s.interactive)
      continue;
    char *keep = px__ask(&s, "Keep it anyway (runs will retry it)? [y/N] ");
    if (keep == NULL || (strcasecmp(keep, "y") != 0 && strcasecmp(keep, "yes") != 0)) {
      printf("Nothing was written; run `parallax setup` again with the right URL.\n");
      code = PX_EXIT_USAGE;
      goto done;
    }
  }
  if (px__consent(&s, &agent) != 0) {
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  if (write) {
    text = px__config_text(&s);
    if (text == NULL || px__write_config(s.config, text, err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax setup: %s\n", text == NULL ? "out of memory" : err);
      code = PX_EXIT_RUNTIME;
      goto done;
    }
  }
  /* Only the consent marker (readable by all) and, at most, a key that is
   * handed to the directory's owner are written here. */
  agent.state_read_only = true;
  if (px_agent_state(&agent, err, sizeof(err)) != 0 ||
      px__key(&agent, key_id, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax setup: %s\n", err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(time(NULL), when);
  json_t *marker = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s}", "consent_version",
                             PX_CONSENT_VERSION, "given_at", when, "data_licence",
                             PX_DATA_LICENCE, "key_id", key_id, "config", s.config, "how",
                             s.yes ? "--yes" : "interactive", "software_version",
                             PX_SOFTWARE_VERSION);
  int rc = marker != NULL ? px_consent_save(agent.state_dir, marker) : -ENOMEM;
  json_decref(marker);
  if (rc != 0) {
    fprintf(stderr, "parallax setup: cannot record the consent in %s: %s\n", agent.state_dir,
            strerror(-rc));
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  printf("\nparallax is set up.\n"
         "  config:      %s%s\n"
         "  key id:      %s\n"
         "  state:       %s (consent recorded in %s/%s)\n"
         "Next: `systemctl enable --now parallax.timer` measures about once an hour;\n"
         "`parallax run` measures now; `parallax status` shows what happened;\n"
         "`systemctl stop parallax.timer` pauses; `parallax setup --withdraw` leaves.\n",
         s.config, write ? " (written)" : " (kept)", key_id, agent.state_dir, agent.state_dir,
         PX_CONSENT_FILE);
  code = PX_EXIT_OK;
done:
  free(text);
  for (size_t i = 0; i < s.nanswers; i++)
    free(s.answers[i]);
  free(s.settings);
  px_config_free(&cfg);
  px_measure_opts_free(&o);
  return code;
}
