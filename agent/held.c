#include "agent/held.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/outbox.h"
#include "agent/signer.h"
#include "agent/spool.h"
#include "agent/scrub.h"
#include "common/encoding.h"
#include "common/fileio.h"
#include "common/json_util.h"
#include "common/statedir.h"

int px_held_add(const char *dir, const char *content, size_t n, const char *reason) {
  int rc = px_mkdirs(dir, 0700);
  if (rc != 0)
    return rc;
  /* Named like the spool: time first, so a listing reads in order. */
  unsigned char digest[32];
  char hex[65], name[128], stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  /* Without SHA-256 there is no name to give it (see the spool). */
  if (SHA256((const unsigned char *)content, n, digest) == NULL)
    return -EIO;
  px_hex_encode(digest, 8, hex);
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
  snprintf(name, sizeof(name), "%s_%s.reason", stamp, hex);
  char *why = NULL;
  int len = asprintf(&why, "%s\n", reason);
  if (len < 0)
    return -ENOMEM;
  rc = px_write_file_atomic(dir, name, why, (size_t)len, 0600);
  free(why);
  if (rc != 0)
    return rc;
  snprintf(name, sizeof(name), "%s_%s.json", stamp, hex);
  char *line = malloc(n + 1);
  if (line == NULL)
    return -ENOMEM;
  memcpy(line, content, n);
  line[n] = '\n';
  rc = px_write_file_atomic(dir, name, line, n + 1, 0600);
  free(line);
  return rc;
}

size_t px_held_count(const char *dir) {
  DIR *d = opendir(dir);
  size_t count = 0;
  if (d == NULL)
    return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0)
      count++;
  }
  closedir(d);
  return count;
}

static int px__names(const char *dir, char ***names, size_t *n) {
  DIR *d = opendir(dir);
  *names = NULL;
  *n = 0;
  if (d == NULL)
    return errno == ENOENT ? 0 : -errno;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    if (len <= 7 || strcmp(e->d_name + len - 7, ".reason") != 0)
      continue;
    char **grown = realloc(*names, (*n + 1) * sizeof(char *));
    if (grown == NULL)
      break;
    *names = grown;
    if (((*names)[*n] = strndup(e->d_name, len - 7)) != NULL)
      (*n)++;
  }
  closedir(d);
  return 0;
}

static void px__forget(const char *dir, const char *name) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s.json", dir, name);
  unlink(path);
  snprintf(path, sizeof(path), "%s/%s.reason", dir, name);
  unlink(path);
}

int px_held_release(const char *dir, const px_scrub_t *s, px_signer_t *signer, px_spool_t *spool,
                    size_t *released, char *err, size_t errlen) {
  char **names;
  size_t n;
  int rc = px__names(dir, &names, &n);
  *released = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char path[4200], *reason = NULL, *content = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/%s.reason", dir, names[i]);
    if (px_read_file(path, &reason, &len) != 0 ||
        strncmp(reason, PX_HELD_UNKNOWN_PUBLIC, strlen(PX_HELD_UNKNOWN_PUBLIC)) != 0) {
      free(reason);
      continue;
    }
    free(reason);
    snprintf(path, sizeof(path), "%s/%s.json", dir, names[i]);
    json_t *m = px_read_file(path, &content, &len) == 0 ? json_loadb(content, len, 0, NULL) : NULL;
    free(content);
    if (m == NULL)
      continue; /* damaged: left for the volunteer to look at */
    char why[256];
    int local = px_scrub_measurement(s, m, NULL, why, sizeof(why));
    char *line = local >= 0 ? px_json_dump(m) : NULL;
    json_decref(m);
    if (line == NULL) {
      rc = -ENOMEM;
      break;
    }
    /* The new file first, then the old one goes: a crash between the two
     * leaves a duplicate, never a loss (the collector is idempotent). */
    if (local == 1)
      rc = px_held_add(dir, line, strlen(line), why);
    else
      rc = px_sign_and_spool(signer, spool, line, strlen(line), err, errlen);
    free(line);
    if (rc == 0) {
      px__forget(dir, names[i]);
      if (local == 0)
        (*released)++;
    }
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  if (rc != 0 && err[0] == '\0')
    snprintf(err, errlen, "cannot release held measurements: %s", strerror(-rc));
  return rc;
}

int px_held_mark(const char *dir, px_spool_t *spool, px_held_mark_t *mark) {
  memset(mark, 0, sizeof(*mark));
  px_spool_list_t l = {0};
  int rc = px_spool_pending(spool, &l);
  if (rc != 0)
    return rc;
  mark->pending = l.names;
  mark->npending = l.n;
  return px__names(dir, &mark->held, &mark->nheld);
}

void px_held_mark_free(px_held_mark_t *mark) {
  px_spool_list_t l = {mark->pending, mark->npending};
  px_spool_list_free(&l);
  for (size_t i = 0; i < mark->nheld; i++)
    free(mark->held[i]);
  free(mark->held);
  memset(mark, 0, sizeof(*mark));
}

static bool px__listed(char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0)
      return true;
  return false;
}

int px_held_take_round(const char *dir, px_spool_t *spool, const px_held_mark_t *mark,
                       const char *reason, size_t *moved) {
  px_spool_list_t now = {0};
  *moved = 0;
  int rc = px_spool_pending(spool, &now);
  for (size_t i = 0; rc == 0 && i < now.n; i++) {
    if (px__listed(mark->pending, mark->npending, now.names[i]))
      continue;
    char *content = NULL, *signature = NULL;
    size_t n = 0;
    rc = px_spool_read(spool, now.names[i], &content, &n, &signature);
    if (rc == 0)
      rc = px_held_add(dir, content, n, reason);
    free(content);
    free(signature);
    if (rc == 0) {
      px_spool_discard(spool, now.names[i]);
      (*moved)++;
    }
  }
  px_spool_list_free(&now);
  char **held = NULL;
  size_t nheld = 0;
  if (rc == 0)
    rc = px__names(dir, &held, &nheld);
  for (size_t i = 0; rc == 0 && i < nheld; i++) {
    if (px__listed(mark->held, mark->nheld, held[i]))
      continue;
    char path[4200], *why = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/%s.reason", dir, held[i]);
    if (px_read_file(path, &why, &len) != 0)
      continue;
    bool unknown = strncmp(why, PX_HELD_UNKNOWN_PUBLIC, strlen(PX_HELD_UNKNOWN_PUBLIC)) == 0;
    free(why);
    if (!unknown)
      continue; /* about this machine already: that reason stands */
    char *text = NULL;
    int tl = asprintf(&text, "%s\n", reason);
    if (tl < 0) {
      rc = -ENOMEM;
      break;
    }
    char name[4200];
    snprintf(name, sizeof(name), "%s.reason", held[i]);
    rc = px_write_file_atomic(dir, name, text, (size_t)tl, 0600);
    free(text);
  }
  for (size_t i = 0; i < nheld; i++)
    free(held[i]);
  free(held);
  return rc;
}
