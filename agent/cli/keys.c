/* parallax keygen, parallax verify. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cli/common.h"
#include "agent/cli/measure.h"
#include "agent/cli/keys.h"
#include "agent/cli/run.h"
#include "common/keyfile.h"
#include "agent/cli/rotate.h"
#include "common/allowed_signers.h"
#include "common/fileio.h"
#include "common/sshsig.h"
#include "common/termsafe.h"
#include "common/timeutil.h"

/* Shared getopt loop of the small commands: returns 0 to go on, or an exit
 * code + 1000 to return at once. */
static int px__getopt_error(const char *prog, int c, char **argv) {
  px_cli_getopt_error(prog, c, argv);
  return PX_EXIT_USAGE;
}

/* keygen --rotate: the key must be the state directory's, since the
 * pending statement and the spool live there. */
static int px__rotate(px_agent_opts_t *agent, const char *key, bool in_state_dir) {
  char err[512], old_id[PX_KEY_ID_LEN], new_id[PX_KEY_ID_LEN];
  if (!in_state_dir) {
    fprintf(stderr, "parallax keygen: --rotate works on the state directory's key (use "
                    "--state-dir, not --key)\n");
    return PX_EXIT_USAGE;
  }
  if (px_rotate_key(agent->state_dir, key, old_id, new_id, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax keygen: %s\n", err);
    return PX_EXIT_RUNTIME;
  }
  printf("old key id: %s (valid only before now)\nnew key id: %s\n", old_id, new_id);
  if (agent->ncollectors == 0) {
    printf("the collector learns of it with the next upload\n");
    return PX_EXIT_OK;
  }
  int rc = px_rotation_send_pending(agent, err, sizeof(err));
  if (rc == 0) {
    printf("the collector accepted the rotation\n");
    return PX_EXIT_OK;
  }
  char shown[PX_TERM_ESCAPED_MAX(sizeof(err))]; /* quotes the collector's answer */
  fprintf(stderr, "parallax keygen: %s; it is sent again with the next upload\n",
          px_term_str(err, shown, sizeof(shown)));
  return PX_EXIT_RUNTIME;
}

int px_cmd_keygen(int argc, char **argv) {
  static const struct option own[] = {{"key", required_argument, NULL, 'k'},
                                      {"rotate", no_argument, NULL, 'r'},
                                      {NULL, 0, NULL, 0}};
  struct option *opts = px_agent_options(own, false);
  px_agent_opts_t agent;
  const char *key = NULL;
  bool rotate = false;
  char err[512], path[4200];
  int c, code = PX_EXIT_OK;

  memset(&agent, 0, sizeof(agent));
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') {
      puts("Usage: parallax keygen [--key FILE] [--state-dir DIR]\n"
           "       parallax keygen --rotate [--state-dir DIR] [--collector URL]...\n"
           "Create the agent's Ed25519 key: FILE (default STATE_DIR/parallax_ed25519, mode\n"
           "0600) and FILE.pub (an OpenSSH ssh-ed25519 line). Prints the key id, the\n"
           "OpenSSH SHA256: fingerprint that names this agent's measurements.\n"
           "An existing key is never overwritten.\n\n"
           "--rotate starts a new identity: a new key replaces the old one, whose\n"
           "private half is deleted (FILE.old-<time>.pub keeps the public one). A\n"
           "statement signed by both tells the collector the old key is valid only\n"
           "before now; it is sent to --collector, or with the next upload.");
      goto done;
    }
    if (c == '?' || c == ':') {
      code = px__getopt_error("parallax keygen", c, argv);
      goto done;
    }
    if (c == 'k') {
      key = optarg;
      continue;
    }
    if (c == 'r') {
      rotate = true;
      continue;
    }
    if (px_agent_apply(&agent, c, optarg, err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax keygen: %s\n", err);
      code = PX_EXIT_USAGE;
      goto done;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "parallax keygen: unexpected argument '%s'\n", argv[optind]);
    code = PX_EXIT_USAGE;
    goto done;
  }
  if (key == NULL) {
    if (px_agent_state(&agent, err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax keygen: %s\n", err);
      code = PX_EXIT_RUNTIME;
      goto done;
    }
    px_agent_key_path(&agent, path, sizeof(path));
    key = path;
  }
  if (rotate) {
    code = px__rotate(&agent, key, key == path);
    goto done;
  }
  px_ssh_pubkey_t pub;
  if (px_key_generate(key, &pub, err, sizeof(err)) != 0) {
    fprintf(stderr, "parallax keygen: %s\n", err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  printf("key id: %s\nprivate key: %s\npublic key: %s.pub\n", pub.key_id, key, key);
done:
  free(opts);
  return code;
}

typedef struct {
  px_allowed_signers_t signers;
  bool have_signers;
  size_t ok, failed;
} px__verify_t;

/* Verifies one message; prints "<where>: verified …" or "<where>: FAILED:
 * …". expect_key_id: the key id the export line claims, or NULL. */
static void px__verify_one(px__verify_t *v, const char *where, const char *content, size_t n,
                           const char *sig, size_t sig_len, const char *expect_key_id) {
  px_ssh_pubkey_t signer;
  const char *why = NULL;
  if (px_sshsig_verify(sig, sig_len, PX_SSHSIG_NAMESPACE, (const uint8_t *)content, n, &signer,
                       &why) != 0) {
    printf("%s: FAILED: %s\n", where, why ? why : "bad signature");
    v->failed++;
    return;
  }
  if (expect_key_id != NULL && strcmp(expect_key_id, signer.key_id) != 0) {
    char claimed[PX_TERM_ESCAPED_MAX(96)]; /* whatever the export line says */
    printf("%s: FAILED: signed by %s, but the line says %s\n", where, signer.key_id,
           px_term_str(expect_key_id, claimed, sizeof(claimed)));
    v->failed++;
    return;
  }
  if (v->have_signers) {
    /* Judge at the measurement's own time, so a rotated key (valid-before)
     * still vouches for what it signed while it was current. */
    time_t at = time(NULL);
    json_t *m = json_loadb(content, n, 0, NULL);
    const char *mst = json_string_value(json_object_get(m, "measurement_start_time"));
    if (mst != NULL)
      px_time_parse_utc(mst, &at);
    json_decref(m);
    const px_allowed_signer_t *e =
        px_allowed_signers_find(&v->signers, &signer, PX_SSHSIG_NAMESPACE, at);
    if (e == NULL) {
      printf("%s: FAILED: key %s is not an allowed signer\n", where, signer.key_id);
      v->failed++;
      return;
    }
    char principals[1024];
    printf("%s: verified, signed by %s (%s)\n", where, signer.key_id,
           px_term_str(e->principals, principals, sizeof(principals)));
  } else {
    printf("%s: verified, signed by %s\n", where, signer.key_id);
  }
  v->ok++;
}

/* A collector export: one {"measurement_uid","key_id","content","signature"}
 * per line. */
static void px__verify_export(px__verify_t *v, const char *path, char *data, size_t n) {
  size_t lineno = 0;
  char *p = data, *end = data + n;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    char where[4200];
    lineno++;
    snprintf(where, sizeof(where), "%s:%zu", path, lineno);
    /* An empty line (nl == p) has len 0; cppcheck 2.10 only sees nl == NULL. */
    /* cppcheck-suppress knownConditionTrueFalse */
    if (len > 0) {
      json_t *line = json_loadb(p, len, JSON_REJECT_DUPLICATES, NULL);
      json_t *content = json_object_get(line, "content");
      const char *sig = json_string_value(json_object_get(line, "signature"));
      if (!json_is_string(content) || sig == NULL) {
        printf("%s: FAILED: not an export line (needs content and signature)\n", where);
        v->failed++;
      } else {
        px__verify_one(v, where, json_string_value(content), json_string_length(content), sig,
                       strlen(sig), json_string_value(json_object_get(line, "key_id")));
      }
      json_decref(line);
    }
    p += len + 1;
  }
}

int px_cmd_verify(int argc, char **argv) {
  static const struct option opts[] = {
      {"allowed-signers", required_argument, NULL, 'a'},
      {"log", required_argument, NULL, 'l'},
      /* Accepted like every agent command; verifying needs no state. */
      {"state-dir", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  px__verify_t v;
  const char *signers = NULL, *log_url = NULL, *state_dir = NULL;
  int c;

  memset(&v, 0, sizeof(v));
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') {
      puts("Usage: parallax verify [--allowed-signers FILE] FILE...\n"
           "       parallax verify --log URL [--state-dir DIR]\n"
           "Verify the OpenSSH signatures of measurements: M.json with M.json.sig beside\n"
           "it (downloaded, or as older versions spooled), a spool entry (NAME.jsonl,\n"
           "one {\"content\", \"signature\"} line) or a collector export (.jsonl, one\n"
           "{\"content\", \"signature\", \"key_id\"} per line). With --allowed-signers, the\n"
           "signing key must also be listed there for namespace parallax-measurement-v1,\n"
           "at the measurement's time. With --log, this agent's sent measurements are\n"
           "proven in the collector's signed log (docs/transparency.md), and its head\n"
           "must extend the last one seen. Exit status 1 if anything fails to verify.");
      return PX_EXIT_OK;
    }
    if (c == '?' || c == ':')
      return px__getopt_error("parallax verify", c, argv);
    if (c == 'a')
      signers = optarg;
    else if (c == 'l')
      log_url = optarg;
    else if (c == 's')
      state_dir = optarg;
  }
  if (log_url != NULL && optind >= argc)
    return px_verify_log(log_url, state_dir);
  if (optind >= argc) {
    fprintf(stderr, "parallax verify: give the files to verify\n");
    return PX_EXIT_USAGE;
  }
  if (signers != NULL) {
    char err[512];
    if (px_allowed_signers_load(signers, &v.signers, err, sizeof(err)) != 0) {
      fprintf(stderr, "parallax verify: %s\n", err);
      return PX_EXIT_USAGE;
    }
    v.have_signers = true;
  }
  for (int i = optind; i < argc; i++) {
    char path[4096], sigpath[4200];
    snprintf(path, sizeof(path), "%s", argv[i]);
    size_t plen = strlen(path);
    if (plen > 4 && strcmp(path + plen - 4, ".sig") == 0)
      path[plen - 4] = '\0'; /* given the signature: verify its message */
    size_t n, sig_len;
    char *data = NULL, *sig = NULL;
    if (px_read_file(path, &data, &n) != 0) {
      printf("%s: FAILED: cannot read: %s\n", path, strerror(errno));
      v.failed++;
      continue;
    }
    snprintf(sigpath, sizeof(sigpath), "%s.sig", path);
    bool is_export = (strlen(path) > 6 && strcmp(path + strlen(path) - 6, ".jsonl") == 0) ||
                     access(sigpath, F_OK) != 0;
    if (is_export) {
      px__verify_export(&v, path, data, n);
    } else {
      if (px_read_file(sigpath, &sig, &sig_len) != 0) {
        printf("%s: FAILED: cannot read %s\n", path, sigpath);
        v.failed++;
      } else {
        px__verify_one(&v, path, data, n, sig, sig_len, NULL);
      }
      free(sig);
    }
    free(data);
  }
  printf("%zu verified, %zu failed\n", v.ok, v.failed);
  if (v.have_signers)
    px_allowed_signers_free(&v.signers);
  return v.failed == 0 && v.ok > 0 ? PX_EXIT_OK : PX_EXIT_RUNTIME;
}
