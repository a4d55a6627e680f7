#include "agent/cli/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  FILE *f;
  unsigned line;
  const char *path;
  px_config_t *cfg;
  px_measure_opts_t *o;
  px_agent_opts_t *agent;
  char *err;
  size_t errlen;
  bool failed;
} px__load_t;

/* Counts lines as libinih reads them, so errors can name the line. */
static char *px__reader(char *str, int num, void *stream) {
  px__load_t *l = stream;
  char *r = fgets(str, num, l->f);
  if (r != NULL) {
    l->line++;
    px_config_strip_comment(str);
  }
  return r;
}

void px_config_strip_comment(char *line) {
  const char *start = line + strspn(line, " \t");
  if (*start == '#' || *start == ';')
    return; /* a whole comment line: libinih skips it */
  /* "# …" or "; …" after a value, as people write them; never a '#'
   * inside a value (a URL's fragment), which has no blank before it. */
  for (char *p = line + 1; *p != '\0'; p++) {
    if ((*p == '#' || *p == ';') && (p[-1] == ' ' || p[-1] == '\t')) {
      bool newline = strchr(p, '\n') != NULL;
      p[0] = newline ? '\n' : '\0';
      if (newline)
        p[1] = '\0';
      return;
    }
  }
}

static int px__bool(const char *v, bool *out) {
  if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
      strcasecmp(v, "on") == 0)
    *out = true;
  else if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
           strcasecmp(v, "off") == 0)
    *out = false;
  else
    return -EINVAL;
  return 0;
}

static char *px__keep(px__load_t *l, const char *s, size_t n) {
  char **grown = realloc(l->cfg->strings, (l->cfg->nstrings + 1) * sizeof(char *));
  if (grown == NULL)
    return NULL;
  l->cfg->strings = grown;
  char *copy = strndup(s, n);
  if (copy != NULL)
    l->cfg->strings[l->cfg->nstrings++] = copy;
  return copy;
}

__attribute__((format(printf, 2, 3)))
static int px__fail(px__load_t *l, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(l->err, l->errlen, "%s:%u: %s", l->path, l->line, what);
  l->failed = true;
  return 0; /* stop libinih */
}

/* One option by its long name (as written: name, normalised: key), with
 * one value. */
static int px__apply(px__load_t *l, const char *name, const char *key, const char *value) {
  const struct option *tables[2] = {px_measure_long_options, px_agent_long_options};
  char err[256];
  for (int t = 0; t < 2; t++) {
    for (const struct option *o = tables[t]; o->name != NULL; o++) {
      if (strcmp(o->name, key) != 0)
        continue;
      int code = o->val;
      if (o->has_arg == no_argument) {
        bool on;
        if (px__bool(value, &on) != 0)
          return px__fail(l, "%s: expected yes or no", key);
        if (!on) {
          /* "system_resolver = no", "upload = no" and "tls = off" mean
           * their --no- flag; "no_upload = no" means --upload; the rest
           * default to off. */
          if (code == PX_OPT_SYSTEM_RESOLVER)
            code = PX_OPT_NO_SYSTEM_RESOLVER;
          else if (code == PX_OPT_NO_SYSTEM_RESOLVER)
            code = PX_OPT_SYSTEM_RESOLVER;
          else if (code == PX_OPT_UPLOAD)
            code = PX_OPT_NO_UPLOAD;
          else if (code == PX_OPT_NO_UPLOAD)
            code = PX_OPT_UPLOAD;
          else if (code == PX_OPT_TLS)
            code = PX_OPT_NO_TLS;
          else if (code == PX_OPT_NO_TLS)
            code = PX_OPT_TLS;
          else
            return 1;
        }
        value = NULL;
      }
      int rc = t == 0 ? px_measure_apply(l->o, code, value, err, sizeof(err))
                      : px_agent_apply(l->agent, code, value, err, sizeof(err));
      if (rc != 0)
        return px__fail(l, "%s", err);
      return 1;
    }
  }
  return px__fail(l, "unknown key '%s' (see parallax.conf(5))", name);
}

static int px__handler(void *user, const char *section, const char *name, const char *value) {
  px__load_t *l = user;
  char key[64];
  if (l->failed)
    return 0;
  if (section[0] != '\0' && strcmp(section, "parallax") != 0)
    return px__fail(l, "unknown section [%s] (keys go in [parallax] or before any section)", section);
  size_t n = strlen(name);
  if (n >= sizeof(key))
    return px__fail(l, "unknown key '%s'", name);
  for (size_t i = 0; i <= n; i++)
    key[i] = (char)(name[i] == '_' ? '-' : tolower((unsigned char)name[i]));
  if (strcmp(key, "config") == 0 || strcmp(key, "help") == 0)
    return px__fail(l, "unknown key '%s'", name);

  bool list = strcmp(key, "resolver") == 0 || strcmp(key, "address") == 0 ||
              strcmp(key, "targets") == 0 || strcmp(key, "collector") == 0;
  if (!list) {
    char *kept = px__keep(l, value, strlen(value));
    return kept ? px__apply(l, name, key, kept) : px__fail(l, "%s", "out of memory");
  }
  for (const char *p = value; *p != '\0';) {
    p += strspn(p, " \t,");
    size_t len = strcspn(p, " \t,");
    if (len == 0)
      break;
    char *item = px__keep(l, p, len);
    if (item == NULL)
      return px__fail(l, "%s", "out of memory");
    if (strcmp(key, "targets") == 0) {
      if (strcmp(item, "from-collector") == 0) {
        p += len;
        continue;
      }
      char **grown = realloc(l->cfg->targets, (l->cfg->ntargets + 1) * sizeof(char *));
      if (grown == NULL)
        return px__fail(l, "%s", "out of memory");
      l->cfg->targets = grown;
      l->cfg->targets[l->cfg->ntargets++] = item;
    } else if (!px__apply(l, name, key, item) || l->failed) {
      return 0;
    }
    p += len;
  }
  return 1;
}

int px_config_load_stream(FILE *f, const char *name, px_config_t *cfg, px_measure_opts_t *o,
                          px_agent_opts_t *agent, char *err, size_t errlen) {
  px__load_t l = {f, 0, name, cfg, o, agent, err, errlen, false};
  int line = ini_parse_stream(px__reader, &l, px__handler, &l);
  if (l.failed)
    return -EINVAL;
  if (line != 0) {
    snprintf(err, errlen, "%s:%d: not an INI line (expected key = value)", name, line);
    return -EINVAL;
  }
  return 0;
}

int px_config_load(const char *path, px_config_t *cfg, px_measure_opts_t *o,
                   px_agent_opts_t *agent, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    int e = errno;
    snprintf(err, errlen, "cannot open config %s: %s", path, strerror(e));
    return -e;
  }
  int rc = px_config_load_stream(f, path, cfg, o, agent, err, errlen);
  fclose(f);
  return rc;
}

void px_config_free(px_config_t *cfg) {
  for (size_t i = 0; i < cfg->nstrings; i++)
    free(cfg->strings[i]);
  free(cfg->strings);
  free(cfg->targets);
  memset(cfg, 0, sizeof(*cfg));
}

bool px_config_is_blank(const char *path) {
  FILE *f = fopen(path, "r");
  char line[1024];
  bool blank = true;
  if (f == NULL)
    return false;
  while (blank && fgets(line, sizeof(line), f) != NULL) {
    const char *p = line + strspn(line, " \t\r\n");
    blank = *p == '\0' || *p == '#' || *p == ';' || *p == '[';
  }
  fclose(f);
  return blank;
}
