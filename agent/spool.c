#include "agent/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/encoding.h"
#include "common/fileio.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/statedir.h"
#include "common/timeutil.h"

#define PX__ENTRY ".jsonl"
#define PX__PAIR ".json"
#define PX__PAIR_SIG ".json.sig"

static const char *const px__dirs[] = {"pending", "sent", "rejected"};

#ifdef PX_TEST_HOOKS
static unsigned long px__kill_countdown;

void px_spool_test_kill_at(unsigned long n) {
  px__kill_countdown = n;
}

/* A point where a crash must leave the spool consistent. */
static void px__step(void) {
  if (px__kill_countdown > 0 && --px__kill_countdown == 0)
    raise(SIGKILL);
}
#else
#define px__step() ((void)0)
#endif

static bool px__has_suffix(const char *s, const char *suffix) {
  size_t len = strlen(s), sl = strlen(suffix);
  return len > sl && strcmp(s + len - sl, suffix) == 0;
}

static bool px__exists(const char *dir, const char *name, const char *ext) {
  char path[4600];
  snprintf(path, sizeof(path), "%s/%s%s", dir, name, ext);
  return access(path, F_OK) == 0;
}

/* ".tmp.<pid>.…" (px_write_file_atomic's and ours) of a process that is
 * gone: nobody will rename it. A live process's, even another agent's
 * (a timer run beside a manual upload), is left alone. */
static bool px__stale_tmp(const char *file) {
  if (strncmp(file, ".tmp.", 5) != 0)
    return false;
  char *end = NULL;
  long pid = strtol(file + 5, &end, 10);
  if (end == file + 5 || *end != '.' || pid <= 0)
    return false;
  return pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* "<UTC time>_<first half of the content's SHA-256>". */
static int px__name(const char *content, size_t n, char *name, size_t namelen) {
  uint8_t md[32];
  unsigned md_len;
  char hex[65], stamp[PX_TIME_COMPACT_LEN];
  /* Without SHA-256 (no provider for it, out of memory) there is no name
   * to give the entry: say so rather than name it after a stack buffer. */
  if (EVP_Digest(content, n, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof(md))
    return -EIO;
  px_hex_encode(md, 32, hex);
  px_time_format_compact(time(NULL), stamp);
  snprintf(name, namelen, "%s_%.32s", stamp, hex);
  return 0;
}

/* The entry's one line, newline included (caller frees). */
static int px__entry_text(const char *content, size_t n, const char *signature, char **text,
                          size_t *len) {
  json_t *o = json_object();
  json_t *c = json_stringn(content, n), *s = json_string(signature);
  if (o == NULL || c == NULL || s == NULL) {
    json_decref(o);
    json_decref(c);
    json_decref(s);
    return o == NULL ? -ENOMEM : -EINVAL; /* jansson refuses what is not UTF-8 */
  }
  json_object_set_new(o, "content", c);
  json_object_set_new(o, "signature", s);
  char *line = px_json_dump(o);
  json_decref(o);
  if (line == NULL)
    return -ENOMEM;
  size_t l = strlen(line);
  char *t = realloc(line, l + 2);
  if (t == NULL) {
    free(line);
    return -ENOMEM;
  }
  t[l] = '\n';
  t[l + 1] = '\0';
  *text = t;
  *len = l + 1;
  return 0;
}

/* dir/file from data: a temporary file written and fsynced, then renamed.
 * The directory is not fsynced (the caller does, once for many). */
static int px__commit(const char *dir, const char *file, const char *data, size_t len) {
  char tmp[4400], final[4400];
  snprintf(tmp, sizeof(tmp), "%s/.tmp.%ld.%s", dir, (long)getpid(), file);
  snprintf(final, sizeof(final), "%s/%s", dir, file);
  unlink(tmp); /* a leftover of a crashed process with our pid */
  px__step();
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  px__step();
  int rc = px_write_all(fd, data, len / 2);
  px__step();
  if (rc == 0)
    rc = px_write_all(fd, data + len / 2, len - len / 2);
  if (rc == 0 && fchmod(fd, 0600) != 0) /* whatever the umask said */
    rc = -errno;
  px__step();
  if (rc == 0)
    rc = px_fsync(fd);
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  px__step();
  if (rc == 0 && rename(tmp, final) != 0)
    rc = -errno;
  if (rc != 0) {
    unlink(tmp);
    return rc;
  }
  px__step();
  return 0;
}

int px_spool_write(px_spool_t *sp, const char *content, size_t n, const char *signature,
                   char *name, size_t namelen) {
  char dir[4200], file[160], *text = NULL;
  size_t len;
  int rc = px__name(content, n, name, namelen);
  if (rc == 0)
    rc = px__entry_text(content, n, signature, &text, &len);
  if (rc != 0)
    return rc;
  snprintf(dir, sizeof(dir), "%s/pending", sp->root);
  snprintf(file, sizeof(file), "%s%s", name, PX__ENTRY);
  rc = px__commit(dir, file, text, len);
  free(text);
  return rc;
}

int px_spool_sync(px_spool_t *sp) {
  char dir[4200];
  snprintf(dir, sizeof(dir), "%s/pending", sp->root);
  px__step();
  int rc = px_fsync_dir(dir);
  px__step();
  return rc;
}

void px_spool_discard(px_spool_t *sp, const char *name) {
  char path[4400];
  snprintf(path, sizeof(path), "%s/pending/%s%s", sp->root, name, PX__ENTRY);
  unlink(path);
}

int px_spool_add(px_spool_t *sp, const char *content, size_t n, const char *signature,
                 char *name, size_t namelen) {
  int rc = px_spool_write(sp, content, n, signature, name, namelen);
  if (rc != 0)
    return rc;
  rc = px_spool_sync(sp);
  if (rc != 0)
    px_spool_discard(sp, name);
  return rc;
}

static int px__cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends a copy of name[0..len) to l. */
static int px__push(px_spool_list_t *l, const char *name, size_t len) {
  char **names = realloc(l->names, (l->n + 1) * sizeof(char *));
  if (names == NULL)
    return -ENOMEM;
  l->names = names;
  if ((names[l->n] = strndup(name, len)) == NULL)
    return -ENOMEM;
  l->n++;
  return 0;
}

/* Every file name of dir that does not start with a dot, or, with
 * dotted, every one but . and .. (unsorted). */
static int px__files(const char *dir, bool dotted, px_spool_list_t *out) {
  DIR *d = opendir(dir);
  memset(out, 0, sizeof(*out));
  if (d == NULL)
    return -errno;
  int rc = 0;
  for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
        (!dotted && e->d_name[0] == '.'))
      continue;
    rc = px__push(out, e->d_name, strlen(e->d_name));
  }
  closedir(d);
  if (rc != 0)
    px_spool_list_free(out);
  return rc;
}

/* Names in dir that are complete: NAME.jsonl, or a pair of an older
 * version (NAME.json with NAME.json.sig), listed once when both are there
 * (a conversion was interrupted). Sorted, so oldest first. */
static int px__list(const char *dir, px_spool_list_t *out) {
  px_spool_list_t files;
  int rc = px__files(dir, false, &files);
  memset(out, 0, sizeof(*out));
  if (rc != 0)
    return rc;
  for (size_t i = 0; i < files.n && rc == 0; i++) {
    const char *f = files.names[i];
    size_t len = strlen(f);
    if (px__has_suffix(f, PX__ENTRY)) {
      rc = px__push(out, f, len - strlen(PX__ENTRY));
    } else if (px__has_suffix(f, PX__PAIR)) {
      char base[256];
      snprintf(base, sizeof(base), "%.*s", (int)(len - strlen(PX__PAIR)), f);
      if (px__exists(dir, base, PX__PAIR_SIG) && !px__exists(dir, base, PX__ENTRY))
        rc = px__push(out, base, strlen(base));
    }
  }
  px_spool_list_free(&files);
  if (rc != 0) {
    px_spool_list_free(out);
    return rc;
  }
  if (out->n > 1)
    qsort(out->names, out->n, sizeof(char *), px__cmp);
  return 0;
}

int px_spool_pending(px_spool_t *sp, px_spool_list_t *out) {
  char dir[4200];
  snprintf(dir, sizeof(dir), "%s/pending", sp->root);
  return px__list(dir, out);
}

void px_spool_list_free(px_spool_list_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->names[i]);
  free(l->names);
  memset(l, 0, sizeof(*l));
}

/* The old pair dir/NAME.json + NAME.json.sig. */
static int px__read_pair(const char *dir, const char *name, char **content, size_t *n,
                         char **signature) {
  char path[4400];
  snprintf(path, sizeof(path), "%s/%s%s", dir, name, PX__PAIR);
  int rc = px_read_file(path, content, n);
  if (rc != 0)
    return rc;
  snprintf(path, sizeof(path), "%s/%s%s", dir, name, PX__PAIR_SIG);
  rc = px_read_file(path, signature, NULL);
  if (rc != 0) {
    free(*content);
    *content = NULL;
  }
  return rc;
}

/* dir/NAME.jsonl, else the old pair. */
static int px__read(const char *dir, const char *name, char **content, size_t *n,
                    char **signature) {
  char path[4400], *text = NULL;
  size_t len;
  snprintf(path, sizeof(path), "%s/%s%s", dir, name, PX__ENTRY);
  int rc = px_read_file(path, &text, &len);
  if (rc == -ENOENT)
    return px__read_pair(dir, name, content, n, signature);
  if (rc != 0)
    return rc;
  json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
  free(text);
  json_t *c = json_object_get(o, "content");
  const char *s = json_string_value(json_object_get(o, "signature"));
  rc = json_is_string(c) && s != NULL ? 0 : -EBADMSG;
  if (rc == 0) {
    size_t cl = json_string_length(c);
    *content = malloc(cl + 1);
    *signature = strdup(s);
    if (*content == NULL || *signature == NULL) {
      free(*content);
      free(*signature);
      rc = -ENOMEM;
    } else {
      memcpy(*content, json_string_value(c), cl);
      (*content)[cl] = '\0';
      *n = cl;
    }
  }
  json_decref(o);
  if (rc != 0) {
    *content = NULL;
    *signature = NULL;
  }
  return rc;
}

int px_spool_read(px_spool_t *sp, const char *name, char **content, size_t *n,
                  char **signature) {
  char dir[4200];
  snprintf(dir, sizeof(dir), "%s/pending", sp->root);
  return px__read(dir, name, content, n, signature);
}

/* The old pair pending/NAME.json + .sig becomes pending/NAME.jsonl: the
 * entry is committed first, then the pair unlinked, so a crash leaves the
 * entry with a redundant copy, which px_spool_open removes. -EINVAL when
 * the pair cannot be an entry (not UTF-8). */
static int px__convert(const char *dir, const char *name) {
  char *content = NULL, *sig = NULL, *text = NULL, file[160], path[4400];
  size_t n, len;
  int rc = px__read_pair(dir, name, &content, &n, &sig);
  if (rc != 0)
    return rc;
  rc = px__entry_text(content, n, sig, &text, &len);
  free(content);
  free(sig);
  if (rc != 0)
    return rc;
  snprintf(file, sizeof(file), "%s%s", name, PX__ENTRY);
  rc = px__commit(dir, file, text, len);
  free(text);
  if (rc == 0)
    rc = px_fsync_dir(dir);
  if (rc != 0)
    return rc;
  px__step();
  /* The .sig first: a lone NAME.json beside NAME.jsonl is then what an
   * interrupted conversion leaves, never a lone signature. */
  snprintf(path, sizeof(path), "%s/%s%s", dir, name, PX__PAIR_SIG);
  unlink(path);
  px__step();
  snprintf(path, sizeof(path), "%s/%s%s", dir, name, PX__PAIR);
  unlink(path);
  px__step();
  return 0;
}

/* Renames from/NAME+ext to to/NAME+ext. */
static int px__rename(const char *from, const char *to, const char *name, const char *ext) {
  char a[4400], b[4400];
  snprintf(a, sizeof(a), "%s/%s%s", from, name, ext);
  snprintf(b, sizeof(b), "%s/%s%s", to, name, ext);
  return rename(a, b) == 0 ? 0 : -errno;
}

/* Moves an entry from pending/ to to/, the note file first, so a crash
 * midway leaves it pending (a stale note beside nothing is harmless and
 * replaced by the next move). */
static int px__move(px_spool_t *sp, const char *name, const char *to, const char *note_ext,
                    const char *note) {
  char from_dir[4200], to_dir[4200], file[160];
  snprintf(from_dir, sizeof(from_dir), "%s/pending", sp->root);
  snprintf(to_dir, sizeof(to_dir), "%s/%s", sp->root, to);
  bool pair = false;
  if (!px__exists(from_dir, name, PX__ENTRY)) {
    int rc = px__convert(from_dir, name);
    if (rc == -EINVAL)
      pair = true; /* bytes that cannot be an entry: moved as a pair below */
    else if (rc != 0)
      return rc;
  }
  snprintf(file, sizeof(file), "%s.%s", name, note_ext);
  int rc = px_write_file_atomic(to_dir, file, note, strlen(note), 0600);
  if (rc != 0)
    return rc;
  px__step();
  if (!pair) {
    rc = px__rename(from_dir, to_dir, name, PX__ENTRY);
  } else {
    /* As older versions did, the .sig first: px_spool_open completes a
     * move interrupted between the two. */
    rc = px__rename(from_dir, to_dir, name, PX__PAIR_SIG);
    px__step();
    if (rc == 0)
      rc = px__rename(from_dir, to_dir, name, PX__PAIR);
  }
  if (rc != 0)
    return rc;
  px__step();
  rc = px_fsync_dir(to_dir);
  if (rc == 0)
    rc = px_fsync_dir(from_dir);
  return rc;
}

static char *px__note(json_t *obj) {
  char *s = px_json_dump(obj);
  json_decref(obj);
  if (s == NULL)
    return NULL;
  size_t n = strlen(s);
  char *t = realloc(s, n + 2);
  if (t == NULL) {
    free(s);
    return NULL;
  }
  t[n] = '\n';
  t[n + 1] = '\0';
  return t;
}

int px_spool_mark_sent(px_spool_t *sp, const char *name, const char *uid) {
  return px_spool_mark_sent_logged(sp, name, uid, -1);
}

int px_spool_mark_sent_logged(px_spool_t *sp, const char *name, const char *uid,
                              long long leaf_index) {
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(time(NULL), when);
  json_t *o = json_object();
  json_object_set_new(o, "measurement_uid", px_json_string_or_null(uid));
  json_object_set_new(o, "sent_at", json_string(when));
  if (leaf_index >= 0)
    json_object_set_new(o, "leaf_index", json_integer(leaf_index));
  char *note = px__note(o);
  if (note == NULL)
    return -ENOMEM;
  int rc = px__move(sp, name, "sent", "receipt", note);
  free(note);
  return rc;
}

int px_spool_mark_rejected(px_spool_t *sp, const char *name, long status,
                           const char *reason) {
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(time(NULL), when);
  json_t *o = json_object();
  json_object_set_new(o, "http_status", json_integer(status));
  json_object_set_new(o, "reason", px_json_string_lossy(reason, strlen(reason)));
  json_object_set_new(o, "rejected_at", json_string(when));
  char *note = px__note(o);
  if (note == NULL)
    return -ENOMEM;
  int rc = px__move(sp, name, "rejected", "reason", note);
  free(note);
  return rc;
}

/* ---- recovery ---------------------------------------------------------- */

/* pending/FILE to orphaned/FILE, with FILE.reason saying why. */
static int px__orphan(px_spool_t *sp, const char *pending, const char *file, const char *why) {
  char dir[4200], note[160], a[4400], b[4400];
  snprintf(dir, sizeof(dir), "%s/orphaned", sp->root);
  int rc = px_mkdirs(dir, 0700);
  if (rc != 0)
    return rc;
  snprintf(note, sizeof(note), "%s.reason", file);
  rc = px_write_file_atomic(dir, note, why, strlen(why), 0600);
  if (rc != 0)
    return rc;
  snprintf(a, sizeof(a), "%s/%s", pending, file);
  snprintf(b, sizeof(b), "%s/%s", dir, file);
  if (rename(a, b) != 0)
    return -errno;
  rc = px_fsync_dir(dir);
  if (rc == 0)
    rc = px_fsync_dir(pending);
  if (rc == 0)
    sp->orphaned++;
  return rc;
}

/* One file of an older version's pair in pending/ whose other half is not
 * beside it (see px_spool_open). */
static void px__recover_half(px_spool_t *sp, const char *pending, const char *file) {
  char base[256];
  bool is_sig = px__has_suffix(file, PX__PAIR_SIG);
  const char *ext = is_sig ? PX__PAIR_SIG : PX__PAIR;
  snprintf(base, sizeof(base), "%.*s", (int)(strlen(file) - strlen(ext)), file);
  /* The entry is looked for again after the other half: a conversion
   * under way in another process commits the entry before it unlinks the
   * pair, so a half that lost its other half meanwhile has an entry. */
  bool whole = false;
  if (px__exists(pending, base, PX__ENTRY) ||
      (!(whole = px__exists(pending, base, is_sig ? PX__PAIR : PX__PAIR_SIG)) &&
       px__exists(pending, base, PX__ENTRY))) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", pending, file);
    unlink(path); /* a copy of what the entry holds */
    return;
  }
  if (whole)
    return; /* a complete pair: pending as it is */
  if (!is_sig) {
    for (size_t i = 1; i < 3; i++) {
      char to[4200];
      snprintf(to, sizeof(to), "%s/%s", sp->root, px__dirs[i]);
      if (px__exists(to, base, PX__PAIR_SIG)) {
        /* A move of an older version, interrupted between its renames:
         * the collector's verdict is in the note; finish it. */
        if (px__rename(pending, to, base, PX__PAIR) == 0 && px_fsync_dir(to) == 0)
          px_fsync_dir(pending);
        return;
      }
    }
  }
  int rc = px__orphan(sp, pending, file,
                      is_sig ? "A signature without its measurement: an older parallax was "
                               "interrupted while spooling it, and the measurement never "
                               "reached the spool. Nothing to upload.\n"
                             : "A measurement without its signature: an older parallax was "
                               "interrupted while spooling it. It cannot be uploaded as it is; "
                               "`parallax submit FILE` signs it with the agent's key now and "
                               "spools it.\n");
  if (rc != 0)
    px_log(PX_LOG_WARNING, "cannot move %s/%s aside: %s", pending, file, strerror(-rc));
}

/* What a crash left in the spool (see px_spool_open). */
static void px__recover(px_spool_t *sp) {
  char dir[4200], path[4400];
  px_spool_list_t files;
  for (size_t i = 0; i < 4; i++) {
    if (i < 3)
      snprintf(dir, sizeof(dir), "%s/%s", sp->root, px__dirs[i]);
    else
      snprintf(dir, sizeof(dir), "%s", sp->root); /* upload-state.json's */
    if (px__files(dir, true, &files) != 0)
      continue;
    for (size_t k = 0; k < files.n; k++) {
      const char *f = files.names[k];
      if (px__stale_tmp(f)) {
        snprintf(path, sizeof(path), "%s/%s", dir, f);
        unlink(path);
      } else if (i == 0 && (px__has_suffix(f, PX__PAIR) || px__has_suffix(f, PX__PAIR_SIG))) {
        px__recover_half(sp, dir, f);
      }
    }
    px_spool_list_free(&files);
  }
  if (sp->orphaned > 0)
    px_log(PX_LOG_WARNING,
           "%zu half-written spool file(s) of an older parallax moved to %s/orphaned (a "
           ".reason file beside each says what it is)",
           sp->orphaned, sp->root);
}

int px_spool_open(px_spool_t *sp, const char *state_dir, char *err, size_t errlen) {
  char path[4200];
  sp->orphaned = 0;
  if (snprintf(sp->root, sizeof(sp->root), "%s/spool", state_dir) >= (int)sizeof(sp->root)) {
    snprintf(err, errlen, "state directory path too long");
    return -ENAMETOOLONG;
  }
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", sp->root, px__dirs[i]);
    int rc = px_mkdirs(path, 0700);
    if (rc != 0) {
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
      return rc;
    }
  }
#ifdef PX_TEST_HOOKS
  const char *kill_at = getenv("PX_TEST_SPOOL_KILL_AT");
  if (kill_at != NULL && kill_at[0] != '\0')
    px_spool_test_kill_at(strtoul(kill_at, NULL, 10));
#endif
  /* Root looking at the service's spool (`status`) leaves it as it is:
   * files root made there would lock the service out. */
  struct stat st;
  if (stat(sp->root, &st) == 0 && st.st_uid == geteuid())
    px__recover(sp);
  return 0;
}

int px_spool_open_readonly(px_spool_t *sp, const char *state_dir, char *err, size_t errlen) {
  sp->orphaned = 0;
  if (snprintf(sp->root, sizeof(sp->root), "%s/spool", state_dir) >= (int)sizeof(sp->root)) {
    snprintf(err, errlen, "state directory path too long");
    return -ENAMETOOLONG;
  }
  return 0;
}

int px_spool_counts(px_spool_t *sp, size_t *pending, size_t *sent, size_t *rejected) {
  size_t *out[3] = {pending, sent, rejected};
  for (size_t i = 0; i < 3; i++) {
    char dir[4200];
    px_spool_list_t l;
    snprintf(dir, sizeof(dir), "%s/%s", sp->root, px__dirs[i]);
    int rc = px__list(dir, &l);
    if (rc == -ENOENT) {
      *out[i] = 0; /* opened read-only before anything was spooled */
      continue;
    }
    if (rc != 0)
      return rc;
    *out[i] = l.n;
    px_spool_list_free(&l);
  }
  return 0;
}

int px_dir_bytes(const char *dir, uint64_t *bytes) {
  *bytes = 0;
  DIR *d = opendir(dir);
  if (d == NULL)
    return errno == ENOENT ? 0 : -errno;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    /* Temporaries (".NAME") are a write in progress, not yet kept. */
    if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode))
      continue;
    *bytes += (uint64_t)st.st_size;
  }
  closedir(d);
  return 0;
}

int px_spool_unsent_bytes(px_spool_t *sp, const char *held_dir, uint64_t *pending,
                          uint64_t *held) {
  char dir[4200];
  snprintf(dir, sizeof(dir), "%s/pending", sp->root);
  int rc = px_dir_bytes(dir, pending);
  if (rc == 0)
    rc = px_dir_bytes(held_dir, held);
  return rc;
}

int px_spool_prune_sent(px_spool_t *sp, size_t keep) {
  char dir[4200], path[4400];
  px_spool_list_t l;
  snprintf(dir, sizeof(dir), "%s/sent", sp->root);
  int rc = px__list(dir, &l);
  if (rc != 0)
    return rc;
  for (size_t i = 0; i + keep < l.n; i++) {
    const char *exts[4] = {PX__ENTRY, PX__PAIR, PX__PAIR_SIG, ".receipt"};
    for (int k = 0; k < 4; k++) {
      snprintf(path, sizeof(path), "%s/%s%s", dir, l.names[i], exts[k]);
      unlink(path);
    }
  }
  px_spool_list_free(&l);
  return 0;
}

int px_spool_state_load(px_spool_t *sp, px_upload_state_t *st) {
  char path[4400];
  memset(st, 0, sizeof(*st));
  snprintf(path, sizeof(path), "%s/upload-state.json", sp->root);
  json_t *o = json_load_file(path, 0, NULL);
  if (o == NULL)
    return 0; /* never uploaded yet, or unreadable: start afresh */
  st->failures = (unsigned)json_integer_value(json_object_get(o, "failures"));
  st->next_attempt = (time_t)json_integer_value(json_object_get(o, "next_attempt"));
  st->last_success = (time_t)json_integer_value(json_object_get(o, "last_success"));
  st->last_error_at = (time_t)json_integer_value(json_object_get(o, "last_error_at"));
  const char *e = json_string_value(json_object_get(o, "last_error"));
  snprintf(st->last_error, sizeof(st->last_error), "%s", e ? e : "");
  json_decref(o);
  return 0;
}

int px_spool_state_save(px_spool_t *sp, const px_upload_state_t *st) {
  json_t *o = json_object();
  json_object_set_new(o, "failures", json_integer(st->failures));
  json_object_set_new(o, "next_attempt", json_integer(st->next_attempt));
  json_object_set_new(o, "last_success", json_integer(st->last_success));
  json_object_set_new(o, "last_error_at", json_integer(st->last_error_at));
  json_object_set_new(o, "last_error", px_json_string_lossy(st->last_error, strlen(st->last_error)));
  char *note = px__note(o);
  if (note == NULL)
    return -ENOMEM;
  int rc = px_write_file_atomic(sp->root, "upload-state.json", note, strlen(note), 0600);
  free(note);
  return rc;
}
