#include "common/allowed_signers.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int px_allowed_signers_parse_time(const char *s, time_t *out) {
  struct tm tm;
  size_t n = strlen(s);
  bool utc = n > 0 && (s[n - 1] == 'Z' || s[n - 1] == 'z');
  if (utc)
    n--;
  if (n != 8 && n != 12 && n != 14)
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i]))
      return -EINVAL;
  memset(&tm, 0, sizeof(tm));
  int v[6] = {0};
  const int widths[6] = {4, 2, 2, 2, 2, 2};
  size_t off = 0;
  for (int f = 0; f < 6 && off < n; f++) {
    for (int k = 0; k < widths[f]; k++)
      v[f] = v[f] * 10 + (s[off + (size_t)k] - '0');
    off += (size_t)widths[f];
  }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
    return -EINVAL;
  tm.tm_year = v[0] - 1900;
  tm.tm_mon = v[1] - 1;
  tm.tm_mday = v[2];
  tm.tm_hour = v[3];
  tm.tm_min = v[4];
  tm.tm_sec = v[5];
  tm.tm_isdst = -1;
  *out = utc ? timegm(&tm) : mktime(&tm);
  return 0;
}

/* Next whitespace-separated token; options may quote spaces and commas. */
static char *px__token(char **p) {
  char *s = *p;
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s == '\0')
    return NULL;
  char *start = s;
  bool quoted = false;
  while (*s != '\0' && (quoted || (*s != ' ' && *s != '\t'))) {
    if (*s == '"')
      quoted = !quoted;
    s++;
  }
  if (*s != '\0')
    *s++ = '\0';
  *p = s;
  return start;
}

/* Applies one comma-separated option list; returns 0 or -EINVAL. */
static int px__options(char *opts, px_allowed_signer_t *e) {
  char *p = opts;
  while (*p != '\0') {
    char *name = p, *value = NULL;
    bool quoted = false;
    while (*p != '\0' && (quoted || *p != ',')) {
      if (*p == '"')
        quoted = !quoted;
      if (*p == '=' && value == NULL && !quoted) {
        *p = '\0';
        value = p + 1;
      }
      p++;
    }
    if (*p == ',')
      *p++ = '\0';
    if (value != NULL && value[0] == '"') {
      value++;
      size_t n = strlen(value);
      if (n == 0 || value[n - 1] != '"')
        return -EINVAL;
      value[n - 1] = '\0';
    }
    if (strcasecmp(name, "namespaces") == 0 && value != NULL) {
      free(e->namespaces);
      e->namespaces = strdup(value);
    } else if (strcasecmp(name, "valid-after") == 0 && value != NULL) {
      if (px_allowed_signers_parse_time(value, &e->valid_after) != 0)
        return -EINVAL;
    } else if (strcasecmp(name, "valid-before") == 0 && value != NULL) {
      if (px_allowed_signers_parse_time(value, &e->valid_before) != 0)
        return -EINVAL;
    } else if (strcasecmp(name, "cert-authority") == 0) {
      return -ENOTSUP; /* certificates are not used by parallax */
    }
  }
  return 0;
}

int px_allowed_signers_load(const char *path, px_allowed_signers_t *out,
                            char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    int e = errno;
    memset(out, 0, sizeof(*out));
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  int rc = px_allowed_signers_load_stream(f, path, out, err, errlen);
  fclose(f);
  return rc;
}

int px_allowed_signers_load_stream(FILE *f, const char *path, px_allowed_signers_t *out,
                                   char *err, size_t errlen) {
  char *line = NULL;
  size_t cap = 0;
  unsigned lineno = 0;
  int rc = 0;

  memset(out, 0, sizeof(*out));
  while (getline(&line, &cap, f) >= 0) {
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0' || *p == '#')
      continue;
    px_allowed_signer_t e;
    memset(&e, 0, sizeof(e));
    char *principals = px__token(&p);
    char *next = px__token(&p);
    if (next != NULL && strncmp(next, "ssh-", 4) != 0 && strncmp(next, "ecdsa-", 6) != 0 &&
        strncmp(next, "sk-", 3) != 0) {
      int orc = px__options(next, &e);
      if (orc == -ENOTSUP) {
        free(e.namespaces);
        continue;
      }
      if (orc != 0) {
        snprintf(err, errlen, "%s:%u: bad options", path, lineno);
        free(e.namespaces);
        rc = -EINVAL;
        break;
      }
      next = px__token(&p);
    }
    char *b64 = px__token(&p);
    if (principals == NULL || next == NULL || b64 == NULL) {
      snprintf(err, errlen, "%s:%u: expected 'principals [options] keytype key'", path, lineno);
      free(e.namespaces);
      rc = -EINVAL;
      break;
    }
    if (strcmp(next, "ssh-ed25519") != 0) {
      free(e.namespaces);
      continue;
    }
    if (px_ssh_pubkey_parse(b64, &e.key) != 0) {
      snprintf(err, errlen, "%s:%u: bad ssh-ed25519 key", path, lineno);
      free(e.namespaces);
      rc = -EINVAL;
      break;
    }
    e.principals = strdup(principals);
    px_allowed_signer_t *v = realloc(out->v, (out->n + 1) * sizeof(*v));
    /* A successful realloc has already released the old array: keep the
     * new one even when strdup failed, or the cleanup below frees it twice. */
    if (v != NULL)
      out->v = v;
    if (v == NULL || e.principals == NULL) {
      free(e.principals);
      free(e.namespaces);
      rc = -ENOMEM;
      snprintf(err, errlen, "out of memory");
      break;
    }
    out->v[out->n++] = e;
  }
  free(line);
  if (rc != 0)
    px_allowed_signers_free(out);
  return rc;
}

void px_allowed_signers_free(px_allowed_signers_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->v[i].principals);
    free(s->v[i].namespaces);
  }
  free(s->v);
  memset(s, 0, sizeof(*s));
}

static bool px__ns_allowed(const char *list, const char *ns) {
  if (list == NULL)
    return true;
  size_t n = strlen(ns);
  for (const char *p = list; *p != '\0';) {
    size_t len = strcspn(p, ",");
    if ((len == 1 && *p == '*') || (len == n && memcmp(p, ns, n) == 0))
      return true;
    p += len;
    if (*p == ',')
      p++;
  }
  return false;
}

const px_allowed_signer_t *px_allowed_signers_find(const px_allowed_signers_t *s,
                                                   const px_ssh_pubkey_t *key,
                                                   const char *ns, time_t at) {
  for (size_t i = 0; i < s->n; i++) {
    const px_allowed_signer_t *e = &s->v[i];
    if (memcmp(e->key.blob, key->blob, sizeof(key->blob)) != 0)
      continue;
    if (!px__ns_allowed(e->namespaces, ns))
      continue;
    if (e->valid_after != 0 && at < e->valid_after)
      continue;
    if (e->valid_before != 0 && at > e->valid_before)
      continue;
    return e;
  }
  return NULL;
}
