#include "agent/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/encoding.h"
#include "common/fileio.h"
#include "common/json_util.h"
#include "common/statedir.h"
#include "common/timeutil.h"

static const char *const px__dirs[] = {"pending", "sent", "rejected"};

int px_spool_open(px_spool_t *sp, const char *state_dir, char *err, size_t errlen) {
  char path[4200];
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
  return 0;
}

int px_spool_add(px_spool_t *sp, const char *content, size_t n, const char *signature,
                 char *name, size_t namelen) {
  uint8_t md[32];
  unsigned md_len;
  char hex[65], stamp[PX_TIME_COMPACT_LEN], dir[4200], file[128];
  /* Without SHA-256 (no provider for it, out of memory) there is no name
   * to give the entry: say so rather than name it after a stack buffer. */
  if (EVP_Digest(content, n, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof(md))
    return -EIO;
  px_hex_encode(md, 32, hex);
  px_time_format_compact(time(NULL), stamp);
  snprintf(dir, sizeof(dir), "%s/pending", sp->root);

  snprintf(name, namelen, "%s_%.32s", stamp, hex);
  snprintf(file, sizeof(file), "%s.json.sig", name);
  int rc = px_write_file_atomic(dir, file, signature, strlen(signature), 0600);
  if (rc != 0)
    return rc;
  snprintf(file, sizeof(file), "%s.json", name);
  rc = px_write_file_atomic(dir, file, content, n, 0600);
  if (rc != 0) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s.json.sig", dir, name);
    unlink(path);
  }
  return rc;
}

static int px__cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir that have both NAME.json and NAME.json.sig. */
static int px__list(const char *dir, px_spool_list_t *out) {
  DIR *d = opendir(dir);
  struct dirent *e;
  memset(out, 0, sizeof(*out));
  if (d == NULL)
    return -errno;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
      continue;
    char sig[4400];
    snprintf(sig, sizeof(sig), "%s/%s.sig", dir, e->d_name);
    if (access(sig, F_OK) != 0)
      continue;
    char **names = realloc(out->names, (out->n + 1) * sizeof(char *));
    char *n = strndup(e->d_name, len - 5);
    if (names == NULL || n == NULL) {
      free(n);
      if (names != NULL)
        out->names = names;
      closedir(d);
      px_spool_list_free(out);
      return -ENOMEM;
    }
    out->names = names;
    out->names[out->n++] = n;
  }
  closedir(d);
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

int px_spool_read(px_spool_t *sp, const char *name, char **content, size_t *n,
                  char **signature) {
  char path[4400];
  snprintf(path, sizeof(path), "%s/pending/%s.json", sp->root, name);
  int rc = px_read_file(path, content, n);
  if (rc != 0)
    return rc;
  snprintf(path, sizeof(path), "%s/pending/%s.json.sig", sp->root, name);
  rc = px_read_file(path, signature, NULL);
  if (rc != 0) {
    free(*content);
    *content = NULL;
  }
  return rc;
}

/* Moves NAME.json.sig then NAME.json from pending/ to to/, adding a note
 * file first, so a crash midway leaves the entry pending (it will be sent
 * again, and the collector answers a duplicate with the same uid). */
static int px__move(px_spool_t *sp, const char *name, const char *to, const char *note_ext,
                    const char *note) {
  char from_dir[4200], to_dir[4200], a[4400], b[4400], file[160];
  snprintf(from_dir, sizeof(from_dir), "%s/pending", sp->root);
  snprintf(to_dir, sizeof(to_dir), "%s/%s", sp->root, to);
  snprintf(file, sizeof(file), "%s.%s", name, note_ext);
  int rc = px_write_file_atomic(to_dir, file, note, strlen(note), 0600);
  if (rc != 0)
    return rc;
  const char *exts[2] = {".json.sig", ".json"};
  for (int i = 0; i < 2; i++) {
    snprintf(a, sizeof(a), "%s/%s%s", from_dir, name, exts[i]);
    snprintf(b, sizeof(b), "%s/%s%s", to_dir, name, exts[i]);
    if (rename(a, b) != 0)
      return -errno;
  }
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
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(time(NULL), when);
  json_t *o = json_object();
  json_object_set_new(o, "measurement_uid", px_json_string_or_null(uid));
  json_object_set_new(o, "sent_at", json_string(when));
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

int px_spool_counts(px_spool_t *sp, size_t *pending, size_t *sent, size_t *rejected) {
  size_t *out[3] = {pending, sent, rejected};
  for (size_t i = 0; i < 3; i++) {
    char dir[4200];
    px_spool_list_t l;
    snprintf(dir, sizeof(dir), "%s/%s", sp->root, px__dirs[i]);
    int rc = px__list(dir, &l);
    if (rc != 0)
      return rc;
    *out[i] = l.n;
    px_spool_list_free(&l);
  }
  return 0;
}

int px_spool_prune_sent(px_spool_t *sp, size_t keep) {
  char dir[4200], path[4400];
  px_spool_list_t l;
  snprintf(dir, sizeof(dir), "%s/sent", sp->root);
  int rc = px__list(dir, &l);
  if (rc != 0)
    return rc;
  for (size_t i = 0; i + keep < l.n; i++) {
    const char *exts[3] = {".json", ".json.sig", ".receipt"};
    for (int k = 0; k < 3; k++) {
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
