/* The spool after crashes: spools of older versions (pairs, and the half
 * pairs their two renames could leave), and SIGKILL at every step of a
 * spool write, a thousand times over. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/keyfile.h"
#include "agent/spool.h"
#include "common/fileio.h"
#include "common/sshsig.h"
#include "tests/runner.h"

static void px__put(const char *dir, const char *file, const char *text) {
  char path[4700];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static bool px__there(const char *dir, const char *file) {
  char path[4700];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  return access(path, F_OK) == 0;
}

/* What an older parallax left, then what this one makes of it. */
PX_TEST(spool_recovers_what_older_versions_left) {
  (void)state;
  char *d = px_test_tmpdir(), err[256], pending[600], sent[600], orphaned[600], tmp[600];
  px_spool_t sp;
  assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
  assert_int_equal(sp.orphaned, 0);
  snprintf(pending, sizeof(pending), "%s/spool/pending", d);
  snprintf(sent, sizeof(sent), "%s/spool/sent", d);
  snprintf(orphaned, sizeof(orphaned), "%s/spool/orphaned", d);
  /* A complete pair: pending, read and uploaded as before. */
  px__put(pending, "20200101T000000Z_aa.json", "{\"pair\":1}");
  px__put(pending, "20200101T000000Z_aa.json.sig", "SIG-A\n");
  /* A move to sent/ interrupted between its renames. */
  px__put(pending, "20200101T000001Z_bb.json", "{\"pair\":2}");
  px__put(sent, "20200101T000001Z_bb.json.sig", "SIG-B\n");
  px__put(sent, "20200101T000001Z_bb.receipt", "{\"measurement_uid\":\"u\"}\n");
  /* A spool write interrupted between its renames (signature first)… */
  px__put(pending, "20200101T000002Z_cc.json.sig", "SIG-C\n");
  /* …and the failure path that unlinked the .sig of a written .json. */
  px__put(pending, "20200101T000003Z_dd.json", "{\"unsigned\":1}");
  /* A conversion to an entry interrupted before the pair was unlinked. */
  char name[128];
  assert_int_equal(px_spool_add(&sp, "{\"pair\":5}", 10, "SIG-E\n", name, sizeof(name)), 0);
  char file[200];
  snprintf(file, sizeof(file), "%s.json", name);
  px__put(pending, file, "{\"pair\":5}");
  /* Temporaries: of a process that is gone (pid 2^22 + 1 is above every
   * pid_max default and so never running), and of one that is running. */
  px__put(pending, ".tmp.4194305.20200101T000004Z_ee.jsonl", "{\"con");
  snprintf(tmp, sizeof(tmp), ".tmp.%ld.20200101T000005Z_ff.jsonl", (long)getppid());
  px__put(pending, tmp, "{\"con");

  assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
  assert_int_equal(sp.orphaned, 2);
  px_spool_list_t l;
  assert_int_equal(px_spool_pending(&sp, &l), 0);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.names[0], "20200101T000000Z_aa");
  assert_string_equal(l.names[1], name);
  /* The interrupted move finished; the half pairs set aside, explained. */
  assert_true(px__there(sent, "20200101T000001Z_bb.json"));
  assert_false(px__there(pending, "20200101T000001Z_bb.json"));
  assert_true(px__there(orphaned, "20200101T000002Z_cc.json.sig"));
  assert_true(px__there(orphaned, "20200101T000002Z_cc.json.sig.reason"));
  assert_true(px__there(orphaned, "20200101T000003Z_dd.json"));
  assert_true(px__there(orphaned, "20200101T000003Z_dd.json.reason"));
  assert_false(px__there(pending, file));
  assert_false(px__there(pending, ".tmp.4194305.20200101T000004Z_ee.jsonl"));
  assert_true(px__there(pending, tmp));
  size_t p, s, r;
  assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
  assert_int_equal(p, 2);
  assert_int_equal(s, 1);
  assert_int_equal(r, 0);

  /* The old pair reads as it did, and moves as one entry. */
  char *content, *sig;
  size_t n;
  assert_int_equal(px_spool_read(&sp, l.names[0], &content, &n, &sig), 0);
  assert_string_equal(content, "{\"pair\":1}");
  assert_int_equal(n, 10);
  assert_string_equal(sig, "SIG-A\n");
  free(content);
  free(sig);
  assert_int_equal(px_spool_mark_sent(&sp, l.names[0], "uid-a"), 0);
  assert_true(px__there(sent, "20200101T000000Z_aa.jsonl"));
  assert_true(px__there(sent, "20200101T000000Z_aa.receipt"));
  assert_false(px__there(pending, "20200101T000000Z_aa.json"));
  assert_false(px__there(pending, "20200101T000000Z_aa.json.sig"));
  assert_int_equal(px_spool_read(&sp, l.names[0], &content, &n, &sig), -ENOENT);
  /* A corrupt entry is refused by name, not read as something else. */
  px__put(pending, "20200101T000006Z_gg.jsonl", "{\"content\":1}\n");
  assert_int_equal(px_spool_read(&sp, "20200101T000006Z_gg", &content, &n, &sig), -EBADMSG);
  px_spool_list_free(&l);
  /* Pruning sent/ removes both formats and their receipts. */
  assert_int_equal(px_spool_prune_sent(&sp, 0), 0);
  assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
  assert_int_equal(s, 0);
  assert_false(px__there(sent, "20200101T000001Z_bb.json.sig"));
  assert_false(px__there(sent, "20200101T000001Z_bb.receipt"));
  px_test_rmrf(d);
  free(d);
}

#ifdef PX_TEST_HOOKS

#define PX__CYCLES 1200
#define PX__KILL_POINTS 40
#define PX__MAX_KNOWN 8192

typedef struct {
  char *content;  /* committed: seen in the spool once */
  char *signature;
  bool sent;      /* seen in sent/ (then it must never be pending again) */
} px__known_t;

typedef struct {
  EVP_PKEY *key;
  px__known_t known[PX__MAX_KNOWN];
  size_t nknown;
} px__world_t;

static char *px__sign(px__world_t *w, const char *msg) {
  char *sig = NULL;
  assert_int_equal(px_sshsig_sign(w->key, PX_SSHSIG_NAMESPACE, (const uint8_t *)msg,
                                  strlen(msg), &sig), 0);
  return sig;
}

static void px__say(int fd, const char *what) {
  assert_int_equal(px_write_all(fd, what, strlen(what)), 0);
}

/* The child: what the agent does with its spool in one run. Every line on
 * fd says that a call returned success, i.e. what the agent would report. */
static void px__child(const char *dir, unsigned long kill_at, char *const contents[3],
                      char *const sigs[3], int fd) {
  char err[256], name[128];
  px_spool_t sp;
  if (px_spool_open(&sp, dir, err, sizeof(err)) != 0)
    _exit(3);
  px_spool_test_kill_at(kill_at);
  /* A batch, as `measure` writes one, then its one sync. */
  for (int i = 0; i < 2; i++)
    if (px_spool_write(&sp, contents[i], strlen(contents[i]), sigs[i], name, sizeof(name)) != 0)
      _exit(4);
  if (px_spool_sync(&sp) != 0)
    _exit(5);
  px__say(fd, "S\n");
  /* An upload: everything pending goes to sent/, oldest first. */
  px_spool_list_t l;
  if (px_spool_pending(&sp, &l) != 0)
    _exit(6);
  for (size_t i = 0; i < l.n; i++) {
    if (px_spool_mark_sent(&sp, l.names[i], "uid") != 0)
      _exit(7);
    /* Named, so the parent checks that it is in sent/. */
    char line[200];
    snprintf(line, sizeof(line), "M%s\n", l.names[i]);
    px__say(fd, line);
  }
  px_spool_list_free(&l);
  /* `submit`: one at a time. */
  if (px_spool_add(&sp, contents[2], strlen(contents[2]), sigs[2], name, sizeof(name)) != 0)
    _exit(8);
  px__say(fd, "A\n");
  _exit(0);
}

static px__known_t *px__find(px__world_t *w, const char *content) {
  for (size_t i = 0; i < w->nknown; i++)
    if (strcmp(w->known[i].content, content) == 0)
      return &w->known[i];
  return NULL;
}

/* Reads every entry of sub/, checks its signature, and records it: each
 * content once over pending/ and sent/ together. */
static void px__scan(px__world_t *w, px_spool_t *sp, const char *sub, char ***seen, size_t *nseen) {
  char dir[4300];
  snprintf(dir, sizeof(dir), "%s/%s", sp->root, sub);
  DIR *dh = opendir(dir);
  assert_non_null(dh);
  for (struct dirent *e; (e = readdir(dh)) != NULL;) {
    const char *f = e->d_name;
    size_t len = strlen(f);
    if (strcmp(f, ".") == 0 || strcmp(f, "..") == 0)
      continue;
    if (len > 8 && strcmp(f + len - 8, ".receipt") == 0)
      continue;
    char path[4600], *text = NULL, *pc = NULL, *ps = NULL;
    const char *c, *s;
    json_t *o = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, f);
    if (len > 9 && strcmp(f + len - 9, ".json.sig") == 0) {
      /* The other half of a pair of the old format, read with it. */
      path[strlen(path) - 4] = '\0';
      if (access(path, F_OK) != 0)
        fail_msg("%s/%s: half a pair", sub, f);
      continue;
    }
    if (len > 5 && strcmp(f + len - 5, ".json") == 0) {
      assert_int_equal(px_read_file(path, &pc, NULL), 0);
      snprintf(path + strlen(path), sizeof(path) - strlen(path), ".sig");
      if (px_read_file(path, &ps, NULL) != 0)
        fail_msg("%s/%s: half a pair", sub, f);
      c = pc;
      s = ps;
    } else {
      /* No temporary, nothing but whole entries, once the spool has been
       * opened after the crash. */
      if (f[0] == '.' || len < 7 || strcmp(f + len - 6, ".jsonl") != 0)
        fail_msg("%s/%s: not an entry", sub, f);
      assert_int_equal(px_read_file(path, &text, NULL), 0);
      o = json_loads(text, 0, NULL);
      free(text);
      c = json_string_value(json_object_get(o, "content"));
      s = json_string_value(json_object_get(o, "signature"));
      assert_non_null(c);
      assert_non_null(s);
    }
    for (size_t i = 0; i < *nseen; i++)
      if (strcmp((*seen)[i], c) == 0)
        fail_msg("%s: spooled twice (%s/%s)", c, sub, f);
    *seen = realloc(*seen, (*nseen + 1) * sizeof(char *));
    (*seen)[(*nseen)++] = strdup(c);
    /* Verified when first seen (OpenSSL 3 makes every verification
     * cost a fetch); later, the signature must be the same bytes. */
    px__known_t *k = px__find(w, c);
    if (k == NULL) {
      assert_int_equal(px_sshsig_verify(s, strlen(s), PX_SSHSIG_NAMESPACE, (const uint8_t *)c,
                                        strlen(c), NULL, NULL), 0);
      assert_true(w->nknown < PX__MAX_KNOWN);
      k = &w->known[w->nknown++];
      k->content = strdup(c);
      k->signature = strdup(s);
      k->sent = false;
    } else {
      assert_string_equal(k->signature, s);
    }
    if (strcmp(sub, "pending") == 0 && k->sent)
      fail_msg("%s: back in pending/ after it was sent", c);
    if (strcmp(sub, "sent") == 0)
      k->sent = true;
    json_decref(o);
    free(pc);
    free(ps);
  }
  closedir(dh);
}

static bool px__in(char **seen, size_t nseen, const char *c) {
  for (size_t i = 0; i < nseen; i++)
    if (strcmp(seen[i], c) == 0)
      return true;
  return false;
}

/* SIGKILL at every step of the spool's writes, moves and conversions of
 * old pairs, over and over on one spool: whatever the agent reported as
 * spooled or sent is there, nothing committed is ever lost, nothing is
 * there twice, and after px_spool_open nothing but whole entries is left.
 * The child is a fork running the spool code the agent runs (a fork
 * rather than the agent binary: a thousand execs would take minutes under
 * the sanitizers); it lives on tmpfs when there is one, since a kill, not
 * a power cut, is what is tested. */
PX_TEST(spool_survives_sigkill_at_every_step) {
  (void)state;
  char base[64] = "/dev/shm/px-spool-kill-XXXXXX", err[256], keypath[200];
  char *d = access("/dev/shm", W_OK) == 0 ? mkdtemp(base) : NULL;
  if (d == NULL)
    d = px_test_tmpdir();
  else
    d = strdup(d);
  px__world_t *w = calloc(1, sizeof(*w));
  assert_non_null(w);
  px_ssh_pubkey_t pub;
  snprintf(keypath, sizeof(keypath), "%s/key", d);
  assert_int_equal(px_key_generate(keypath, &pub, err, sizeof(err)), 0);
  assert_int_equal(px_key_load(keypath, &w->key, err, sizeof(err)), 0);
  px_spool_t sp;
  assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
  char pending[4300];
  snprintf(pending, sizeof(pending), "%s/pending", sp.root);

  unsigned killed_at[PX__KILL_POINTS + 1] = {0};
  unsigned finished = 0;
  for (unsigned cycle = 0; cycle < PX__CYCLES; cycle++) {
    unsigned long kill_at = cycle % PX__KILL_POINTS + 1;
    /* Every third cycle, a pair of an older version waits too (older than
     * anything, so the upload converts and moves it first). */
    if (cycle % 3 == 0) {
      char c[64], file[96];
      snprintf(c, sizeof(c), "{\"legacy\":%u}", cycle);
      char *s = px__sign(w, c);
      snprintf(file, sizeof(file), "19990101T000000Z_%08u.json", cycle);
      px__put(pending, file, c);
      snprintf(file, sizeof(file), "19990101T000000Z_%08u.json.sig", cycle);
      px__put(pending, file, s);
      free(s);
    }
    char *contents[3], *sigs[3];
    for (int i = 0; i < 3; i++) {
      char c[64];
      snprintf(c, sizeof(c), "{\"cycle\":%u,\"i\":%d}", cycle, i);
      contents[i] = strdup(c);
      sigs[i] = px__sign(w, c);
    }
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(pfd[0]);
      px__child(d, kill_at, contents, sigs, pfd[1]);
    }
    close(pfd[1]);
    char said[8192];
    size_t got = 0;
    for (ssize_t r; got < sizeof(said) - 1 &&
                    (r = read(pfd[0], said + got, sizeof(said) - 1 - got)) != 0;)
      if (r > 0)
        got += (size_t)r;
      else
        assert_int_equal(errno, EINTR);
    said[got] = '\0';
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      assert_int_equal(WTERMSIG(status), SIGKILL);
      killed_at[kill_at]++;
    } else {
      assert_true(WIFEXITED(status));
      assert_int_equal(WEXITSTATUS(status), 0);
      finished++;
    }

    /* The next start of the agent: recovery, then the checks. */
    assert_int_equal(px_spool_open(&sp, d, err, sizeof(err)), 0);
    assert_int_equal(sp.orphaned, 0); /* this version never leaves a half */
    char **seen = NULL;
    size_t nseen = 0;
    px__scan(w, &sp, "pending", &seen, &nseen);
    size_t npending = nseen;
    px__scan(w, &sp, "sent", &seen, &nseen);
    /* Pairs of the old format still pending are whole; counted apart. */
    size_t p, s, r;
    assert_int_equal(px_spool_counts(&sp, &p, &s, &r), 0);
    assert_int_equal(s, nseen - npending);
    if (strstr(said, "S\n") != NULL) {
      assert_true(px__in(seen, nseen, contents[0]));
      assert_true(px__in(seen, nseen, contents[1]));
    }
    if (strstr(said, "A\n") != NULL)
      assert_true(px__in(seen, nseen, contents[2]));
    for (char *m = strchr(said, 'M'); m != NULL; m = strchr(m + 1, 'M')) {
      char name[128], file[200];
      if (sscanf(m + 1, "%127[^\n]", name) != 1)
        continue;
      snprintf(file, sizeof(file), "%s.jsonl", name);
      char sent[4300];
      snprintf(sent, sizeof(sent), "%s/sent", sp.root);
      assert_true(px__there(sent, file));
    }
    /* Nothing committed, in any earlier cycle, has gone missing. */
    for (size_t i = 0; i < w->nknown; i++)
      if (!px__in(seen, nseen, w->known[i].content))
        fail_msg("cycle %u (kill at %lu): %s lost", cycle, kill_at, w->known[i].content);
    for (size_t i = 0; i < nseen; i++)
      free(seen[i]);
    free(seen);
    /* What reached sent/ is checked; prune it (and forget it) so the
     * spool, and the test, stay small. */
    assert_int_equal(px_spool_prune_sent(&sp, 0), 0);
    size_t keep = 0;
    for (size_t i = 0; i < w->nknown; i++) {
      if (w->known[i].sent) {
        free(w->known[i].content);
        free(w->known[i].signature);
      }
      else
        w->known[keep++] = w->known[i];
    }
    w->nknown = keep;
    for (int i = 0; i < 3; i++) {
      free(contents[i]);
      free(sigs[i]);
    }
  }
  /* Every step of a batch (two writes, their sync) was hit, and so were
   * the moves and the add after it: at least one kill point was never
   * reached, i.e. the run got to its end. */
  for (unsigned k = 1; k <= 14; k++)
    if (killed_at[k] == 0)
      fail_msg("kill point %u never reached", k);
  assert_true(finished > 0);
  for (size_t i = 0; i < w->nknown; i++) {
    free(w->known[i].content);
    free(w->known[i].signature);
  }
  EVP_PKEY_free(w->key);
  free(w);
  px_test_rmrf(d);
  free(d);
}

#else

PX_TEST(spool_survives_sigkill_at_every_step) {
  (void)state;
  px_test_skip("needs a test build (-DPX_TEST_HOOKS=ON): kill points are test hooks");
}

#endif
