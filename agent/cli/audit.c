/* parallax audit: a researcher's check of a collector's measurement log
 * (docs/transparency.md). It fetches the latest signed tree head and
 * checks its signature; with --since-sth FILE, checks that it extends the
 * head saved there (a consistency proof); replays every leaf, recomputing
 * the root itself; with --measurements, fetches every measurement and
 * checks that its bytes are the logged ones. On success the new head is
 * saved in FILE for the next audit. It trusts nothing the collector
 * computes: leaf hashes and roots are recomputed here (common/merkle.c). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/common.h"
#include "agent/cli/measure.h"
#include "agent/cli/run.h"
#include "collector-client/http.h"
#include "collector-client/log_proof.h"
#include "common/encoding.h"
#include "common/fileio.h"
#include "common/merkle.h"
#include "common/sshsig.h"
#include "common/termsafe.h"
#include "common/timeutil.h"

typedef struct {
  px_log_verified_head_t h;
  json_t *doc; /* as the collector sent it (saved as is) */
} px__head_t;

/* GET path as JSON; 0, or -1 with the reason printed. */
static int px__get(const px_upload_config_t *cfg, const char *prog, const char *path,
                   json_t **out) {
  long status;
  char *body = NULL, err[512], shown[2048];
  if (px_http_request(cfg, path, NULL, &status, &body, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, px_term_str(err, shown, sizeof(shown)));
    return -1;
  }
  *out = json_loads(body, 0, NULL);
  if (status != 200 || *out == NULL) {
    json_t *d = *out;
    const char *detail = d != NULL ? json_string_value(json_object_get(d, "detail")) : NULL;
    fprintf(stderr, "%s: %s: HTTP %ld: %s\n", prog, path, status,
            px_term_str(detail != NULL ? detail : body, shown, sizeof(shown)));
    json_decref(*out);
    *out = NULL;
    free(body);
    return -1;
  }
  free(body);
  return 0;
}

/* A signed head from doc, its signature checked (namespace
 * parallax-sth-v1, by the key it names). 0, or -1 with why. */
static int px__head(json_t *doc, px__head_t *h, const char **why) {
  h->doc = NULL;
  if (px_log_head_parse(doc, &h->h, why) != 0)
    return -1;
  h->doc = json_incref(doc);
  return 0;
}

static void px__describe(const px__head_t *h, char *out, size_t n) {
  char root[2 * PX_MERKLE_HASH_LEN + 1], when[PX_TIME_ISO_LEN];
  px_hex_encode(h->h.root, sizeof(h->h.root), root);
  px_time_format_iso(h->h.timestamp, when);
  snprintf(out, n, "size %llu, root %.16s…, signed %s", (unsigned long long)h->h.size, root, when);
}

/* The old head extends into the new one. 0, or 1 with the failure said. */
static int px__consistent(const px_upload_config_t *cfg, const char *prog, const px__head_t *old,
                          const px__head_t *now) {
  char a[160], b[160];
  px__describe(old, a, sizeof(a));
  px__describe(now, b, sizeof(b));
  if (strcmp(old->h.key_id, now->h.key_id) != 0) {
    printf("FAILED: the collector's tree-head key changed: %s signed the saved head (%s), %s "
           "the new one (%s)\n", old->h.key_id, a, now->h.key_id, b);
    return 1;
  }
  if (old->h.size > now->h.size) {
    printf("FAILED: the log shrank: the saved head has %s, the new one %s\n", a, b);
    return 1;
  }
  if (old->h.size == 0)
    return 0;
  if (old->h.size == now->h.size) {
    if (memcmp(old->h.root, now->h.root, sizeof(old->h.root)) == 0)
      return 0;
    printf("FAILED: two histories of the same size, both signed: %s and %s\n", a, b);
    return 1;
  }
  char path[128];
  snprintf(path, sizeof(path), "/api/v1/log/proof/consistency?first=%llu&second=%llu",
           (unsigned long long)old->h.size, (unsigned long long)now->h.size);
  json_t *doc;
  if (px__get(cfg, prog, path, &doc) != 0)
    return 1;
  int rc = px_log_consistency_check(doc, &old->h, &now->h) == 0 ? 0 : 1;
  json_decref(doc);
  if (rc != 0)
    printf("FAILED: the new head does not extend the saved one (a forked or rewritten "
           "history): saved %s, new %s\n", a, b);
  return rc;
}

/* Replays leaves [0, head->h.size), checking each measurement's bytes when
 * asked; 0 when the recomputed root is the head's. */
static int px__replay(const px_upload_config_t *cfg, const char *prog, const px__head_t *head,
                      bool measurements, size_t *bad) {
  px_merkle_frontier_t *f = malloc(sizeof(*f));
  if (f == NULL)
    return -1;
  px_merkle_frontier_init(f);
  int rc = 0;
  for (uint64_t start = 0; rc == 0 && start < head->h.size; start += 1000) {
    uint64_t end = start + 1000 < head->h.size ? start + 1000 : head->h.size;
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/log/leaves?start=%llu&end=%llu",
             (unsigned long long)start, (unsigned long long)end);
    json_t *doc;
    if (px__get(cfg, prog, path, &doc) != 0) {
      rc = -1;
      break;
    }
    json_t *leaves = json_object_get(doc, "leaves");
    if (json_array_size(leaves) != end - start) {
      printf("FAILED: %s: %zu leaves for %llu\n", path, json_array_size(leaves),
             (unsigned long long)(end - start));
      rc = 1;
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(leaves); i++) {
      uint8_t sha[32], hash[PX_MERKLE_HASH_LEN];
      char uid[PX_MERKLE_LEAF_MAX], shown[512];
      if (px_log_leaf_parse(json_array_get(leaves, i), hash, sha, uid, sizeof(uid)) != 0) {
        printf("FAILED: leaf %llu is malformed\n", (unsigned long long)start + i);
        rc = 1;
        break;
      }
      px_merkle_append(f, hash, NULL);
      if (!measurements)
        continue;
      char rpath[1024], enc[768], *body = NULL, err[512];
      long status = 0;
      px_percent_encode(uid, enc, sizeof(enc));
      snprintf(rpath, sizeof(rpath), "/api/v1/raw_measurement?measurement_uid=%s", enc);
      uint8_t got[32];
      if (px_http_request(cfg, rpath, NULL, &status, &body, err, sizeof(err)) != 0 ||
          status != 200) {
        printf("FAILED: %s (leaf %llu) is in the log but not served (HTTP %ld)\n",
               px_term_str(uid, shown, sizeof(shown)), (unsigned long long)start + i, status);
        (*bad)++;
      } else if (SHA256((const uint8_t *)body, strlen(body), got) == NULL ||
                 memcmp(got, sha, 32) != 0) {
        printf("FAILED: %s (leaf %llu): the bytes served are not the ones logged\n",
               px_term_str(uid, shown, sizeof(shown)), (unsigned long long)start + i);
        (*bad)++;
      }
      free(body);
    }
    json_decref(doc);
  }
  if (rc == 0) {
    uint8_t root[PX_MERKLE_HASH_LEN];
    px_merkle_root(f, root);
    if (memcmp(root, head->h.root, sizeof(root)) != 0) {
      char a[160];
      px__describe(head, a, sizeof(a));
      printf("FAILED: the leaves do not make the signed root (%s): a leaf was altered, "
             "removed or reordered\n", a);
      rc = 1;
    }
  }
  free(f);
  return rc;
}

int px_cmd_audit(int argc, char **argv) {
  const char *prog = "parallax audit";
  static const struct option own[] = {
      {"since-sth", required_argument, NULL, 's'},
      {"measurements", no_argument, NULL, 'm'},
      {NULL, 0, NULL, 0},
  };
  struct option *opts = px_agent_options(own, false);
  px_agent_opts_t agent;
  const char *since = NULL;
  bool measurements = false;
  char err[512];
  int c, code = PX_EXIT_OK;
  px__head_t now = {0}, old = {0};
  json_t *doc = NULL;

  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  memset(&agent, 0, sizeof(agent));
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') {
      puts("Usage: parallax audit --collector URL [--since-sth FILE] [--measurements]\n"
           "Checks a collector's measurement log (docs/transparency.md): the signature of\n"
           "its latest tree head (parallax-sth-v1); with --since-sth, that it extends the\n"
           "head saved in FILE (which then receives the new one); every leaf, the root\n"
           "recomputed here; with --measurements, that every logged measurement is\n"
           "served with the very bytes logged.\n"
           "Exit status: 0 all checks passed, 1 a check failed or the collector could not\n"
           "be read, 2 bad usage.");
      goto done;
    } else if (c == 's') {
      since = optarg;
    } else if (c == 'm') {
      measurements = true;
    } else if (c == '?' || c == ':') {
      px_cli_getopt_error(prog, c, argv);
      code = PX_EXIT_USAGE;
      goto done;
    } else if (px_agent_apply(&agent, c, optarg, err, sizeof(err)) != 0) {
      px_cli_error(prog, "%s", err);
      code = PX_EXIT_USAGE;
      goto done;
    }
  }
  if (agent.collector == NULL || optind < argc) {
    fprintf(stderr, "%s: give --collector URL\n", prog);
    code = PX_EXIT_USAGE;
    goto done;
  }
  px_upload_config_t cfg = {agent.collector, agent.proxy, agent.collector_ca,
                            agent.collector_pin, 60000};
  const char *why;
  char text[160];
  if (since != NULL) {
    char *saved = NULL;
    size_t n;
    int rc = px_read_file(since, &saved, &n);
    json_t *sd = rc == 0 ? json_loadb(saved, n, 0, NULL) : NULL;
    free(saved);
    if (rc == -ENOENT) {
      printf("%s: no saved head yet: this audit starts the record\n", since);
    } else if (sd == NULL || px__head(sd, &old, &why) != 0) {
      fprintf(stderr, "%s: %s: %s\n", prog, since, rc != 0 ? strerror(-rc) : sd ? why
                                                                              : "not JSON");
      json_decref(sd);
      code = PX_EXIT_USAGE;
      goto done;
    }
    json_decref(sd);
  }
  if (px__get(&cfg, prog, "/api/v1/log/sth", &doc) != 0) {
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  if (px__head(doc, &now, &why) != 0) {
    printf("FAILED: the collector's tree head: %s\n", why);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  px__describe(&now, text, sizeof(text));
  printf("tree head: %s, by %s: signature good\n", text, now.h.key_id);
  if (old.doc != NULL && px__consistent(&cfg, prog, &old, &now) != 0) {
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  if (old.doc != NULL)
    printf("it extends the saved head of size %llu\n", (unsigned long long)old.h.size);
  size_t bad = 0;
  int rc = px__replay(&cfg, prog, &now, measurements, &bad);
  if (rc != 0 || bad > 0) {
    if (bad > 0)
      printf("%zu logged measurement(s) not served as logged\n", bad);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  printf("%llu leaves replayed: they make the signed root%s\n", (unsigned long long)now.h.size,
         measurements ? ", and every measurement is served as logged" : "");
  if (since != NULL) {
    char *out = json_dumps(now.doc, JSON_COMPACT);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", since);
    char *slash = strrchr(dir, '/');
    const char *name = slash != NULL ? slash + 1 : since;
    if (slash != NULL)
      *slash = '\0';
    else
      snprintf(dir, sizeof(dir), ".");
    if (out == NULL || px_write_file_atomic(dir, name, out, strlen(out), 0644) != 0) {
      fprintf(stderr, "%s: cannot save the new head in %s\n", prog, since);
      code = PX_EXIT_RUNTIME;
    }
    free(out);
  }
done:
  json_decref(doc);
  json_decref(now.doc);
  json_decref(old.doc);
  free(opts);
  return code;
}

/* ---- parallax verify --log: an agent's own measurements -------------------- */

/* The content of a sent entry NAME (NAME.jsonl, or an older version's
 * NAME.json) into *content; 0 or a negative errno. */
static int px__sent_content(const char *dir, const char *name, char **content, size_t *n) {
  char path[4800], *text = NULL;
  size_t len;
  snprintf(path, sizeof(path), "%s/%s.jsonl", dir, name);
  if (px_read_file(path, &text, &len) == 0) {
    json_t *e = json_loadb(text, len, 0, NULL);
    free(text);
    const char *c = json_string_value(json_object_get(e, "content"));
    int rc = c != NULL ? 0 : -EINVAL;
    if (c != NULL) {
      *n = json_string_length(json_object_get(e, "content"));
      *content = malloc(*n + 1);
      if (*content == NULL)
        rc = -ENOMEM;
      else
        memcpy(*content, c, *n + 1);
    }
    json_decref(e);
    return rc;
  }
  snprintf(path, sizeof(path), "%s/%s.json", dir, name);
  return px_read_file(path, content, n);
}

/* One sent measurement: its inclusion in the head, recomputed from our
 * own copy of its bytes. 0 included, 1 failed (said), 2 not yet covered
 * by the head. */
static int px__check_sent(const px_upload_config_t *cfg, const char *prog, const char *dir,
                          const char *name, const px__head_t *head) {
  char path[4800], *text = NULL, shown[600];
  size_t len;
  snprintf(path, sizeof(path), "%s/%s.receipt", dir, name);
  if (px_read_file(path, &text, &len) != 0)
    return 0; /* no receipt: nothing claimed */
  json_t *r = json_loadb(text, len, 0, NULL);
  free(text);
  const char *uid = json_string_value(json_object_get(r, "measurement_uid"));
  json_t *want_leaf = json_object_get(r, "leaf_index");
  char uidbuf[PX_MERKLE_LEAF_MAX];
  snprintf(uidbuf, sizeof(uidbuf), "%s", uid != NULL ? uid : "");
  long long want = json_is_integer(want_leaf) ? (long long)json_integer_value(want_leaf) : -1;
  json_decref(r);
  if (uidbuf[0] == '\0')
    return 0;
  px_term_str(uidbuf, shown, sizeof(shown));
  char *content = NULL;
  size_t n = 0;
  uint8_t sha[32];
  if (px__sent_content(dir, name, &content, &n) != 0) {
    printf("%s: our copy of it is gone (sent/%s): not checked\n", shown, name);
    return 0;
  }
  SHA256((const uint8_t *)content, n, sha);
  free(content);
  char url[1024], enc[600], err[512], *body = NULL;
  long status = 0;
  px_percent_encode(uidbuf, enc, sizeof(enc));
  snprintf(url, sizeof(url), "/api/v1/log/proof/inclusion?measurement_uid=%s&tree_size=%llu",
           enc, (unsigned long long)head->h.size);
  if (px_http_request(cfg, url, NULL, &status, &body, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, px_term_str(err, url, sizeof(url)));
    return 1;
  }
  json_t *p = json_loads(body, 0, NULL);
  free(body);
  int rc = 1;
  char hd[160];
  px__describe(head, hd, sizeof(hd));
  if (status == 404) {
    printf("FAILED: %s: accepted by the collector but not in its log (%s): dropped\n", shown,
           hd);
  } else if (status == 400) {
    rc = 2; /* logged after the signed head was: the next one covers it */
  } else if (status != 200 || p == NULL) {
    printf("FAILED: %s: the collector answered HTTP %ld\n", shown, status);
  } else {
    uint64_t at = 0;
    int ck = px_log_inclusion_check(p, uidbuf, sha, &head->h, &at);
    if (ck == -EBADMSG)
      printf("FAILED: %s: the log does not hold the bytes we sent (%s)\n", shown, hd);
    else if (ck != 0)
      printf("FAILED: %s: a malformed proof\n", shown);
    else if (want >= 0 && at != (uint64_t)want)
      printf("FAILED: %s: logged at leaf %llu, but the collector answered leaf %lld when it "
             "took it\n", shown, (unsigned long long)at, want);
    else
      rc = 0;
  }
  json_decref(p);
  return rc;
}

int px_verify_log(const char *collector, const char *state_dir_flag) {
  const char *prog = "parallax verify --log";
  px_agent_opts_t agent;
  char err[512], sent[4200], saved_path[4200];
  memset(&agent, 0, sizeof(agent));
  agent.state_dir_flag = state_dir_flag;
  agent.state_must_exist = true;
  if (px_agent_state(&agent, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    return PX_EXIT_USAGE;
  }
  px_upload_config_t cfg = {collector, NULL, NULL, NULL, 60000};
  px__head_t now = {0}, old = {0};
  json_t *doc = NULL;
  const char *why;
  int code = PX_EXIT_OK;
  if (px__get(&cfg, prog, "/api/v1/log/sth", &doc) != 0)
    return PX_EXIT_RUNTIME;
  if (px__head(doc, &now, &why) != 0) {
    printf("FAILED: the collector's tree head: %s\n", why);
    json_decref(doc);
    return PX_EXIT_RUNTIME;
  }
  /* The last head this agent saw of this collector, and its consistency. */
  snprintf(saved_path, sizeof(saved_path), "%s/log-sth.json", agent.state_dir);
  char *text = NULL;
  size_t n;
  if (px_read_file(saved_path, &text, &n) == 0) {
    json_t *s = json_loadb(text, n, 0, NULL);
    const char *from = json_string_value(json_object_get(s, "collector"));
    if (from != NULL && strcmp(from, collector) == 0 &&
        px__head(json_object_get(s, "head"), &old, &why) == 0 &&
        px__consistent(&cfg, prog, &old, &now) != 0)
      code = PX_EXIT_RUNTIME;
    json_decref(s);
  }
  free(text);
  size_t checked = 0, failed = 0, later = 0;
  snprintf(sent, sizeof(sent), "%s/spool/sent", agent.state_dir);
  DIR *d = code == PX_EXIT_OK ? opendir(sent) : NULL;
  for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    if (len <= 8 || strcmp(e->d_name + len - 8, ".receipt") != 0)
      continue;
    char name[512];
    snprintf(name, sizeof(name), "%.*s", (int)(len - 8), e->d_name);
    int rc = px__check_sent(&cfg, prog, sent, name, &now);
    checked += rc == 0;
    failed += rc == 1;
    later += rc == 2;
  }
  if (d != NULL)
    closedir(d);
  char hd[160];
  px__describe(&now, hd, sizeof(hd));
  if (code == PX_EXIT_OK)
    printf("%zu measurement(s) of this agent proven in the log (%s)%s%zu failed\n", checked, hd,
           later > 0 ? ", some sent after it, for the next head; " : "; ", failed);
  if (failed > 0)
    code = PX_EXIT_RUNTIME;
  if (code == PX_EXIT_OK) {
    json_t *s = json_object();
    json_object_set_new(s, "collector", json_string(collector));
    json_object_set(s, "head", now.doc);
    char *out = json_dumps(s, JSON_COMPACT);
    json_decref(s);
    if (out == NULL || px_write_file_atomic(agent.state_dir, "log-sth.json", out, strlen(out),
                                            0600) != 0) {
      fprintf(stderr, "%s: cannot keep the head in %s\n", prog, saved_path);
      code = PX_EXIT_RUNTIME;
    }
    free(out);
  }
  json_decref(doc);
  json_decref(now.doc);
  json_decref(old.doc);
  return code;
}
