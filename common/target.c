#include "common/target.h"

#include <ctype.h>
#include <errno.h>
#include <idn2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reasons that name the input (a scheme, libidn2's words) are written here:
 * one per thread, as the collector parses inputs on several. */
static _Thread_local char px__why[192];

static int px__fail(const char **reason, const char *why) {
  if (reason != NULL)
    *reason = why;
  return -EINVAL;
}

/* "1".."65535" in [p, p + n); anything else is refused. */
static int px__port(const char *p, size_t n, uint16_t *port, const char **reason) {
  if (n == 0 || *p < '0' || *p > '9')
    return px__fail(reason, "port is not a number");
  unsigned long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return px__fail(reason, "port is not a number");
    v = v * 10 + (unsigned long)(p[i] - '0');
    if (v > 65535)
      return px__fail(reason, "port out of range 1-65535");
  }
  if (v == 0)
    return px__fail(reason, "port out of range 1-65535");
  *port = (uint16_t)v;
  return 0;
}

/* Checks an ASCII host name of n bytes (no trailing dot) as DNS labels. */
static int px__ldh(const char *s, size_t n, const char **reason) {
  if (n == 0)
    return px__fail(reason, "empty host name");
  if (n > PX_HOSTNAME_MAX)
    return px__fail(reason, "host name longer than 253 characters");
  size_t label_len = 0;
  bool last_label_numeric = true;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (label_len == 0)
        return px__fail(reason, "empty label in host name");
      if (s[i - 1] == '-')
        return px__fail(reason, "label ends with a hyphen");
      label_len = 0;
      last_label_numeric = true;
      continue;
    }
    if (c == '/')
      return px__fail(reason, "a target with a path is a URL: give https://host/path");
    if (!(isalnum(c) || c == '-' || c == '_'))
      return px__fail(reason, "invalid character in host name");
    if (c == '-' && label_len == 0)
      return px__fail(reason, "label starts with a hyphen");
    if (!isdigit(c))
      last_label_numeric = false;
    if (++label_len > 63)
      return px__fail(reason, "label longer than 63 characters");
  }
  if (s[n - 1] == '-')
    return px__fail(reason, "label ends with a hyphen");
  /* No top-level domain is all digits; "192.0.2.1" is an address. */
  if (last_label_numeric)
    return px__fail(reason, "a target is a domain name, not an IP address (use --address)");
  return 0;
}

/* Turns the host text [h, h + n) into the name DNS and SNI use: the
 * trailing root dot dropped, U-labels converted to A-labels. ASCII names
 * are kept byte for byte (case included), as before IDNs were read. */
static int px__host(const char *h, size_t n, char out[PX_HOSTNAME_MAX + 1],
                    const char **reason) {
  bool ascii = true;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)h[i] >= 0x80)
      ascii = false;
  if (n > 0 && h[n - 1] == '.')
    n--; /* the root label: "example.com." is "example.com" */
  if (ascii) {
    int rc = px__ldh(h, n, reason);
    if (rc == 0) {
      memcpy(out, h, n);
      out[n] = '\0';
    }
    return rc;
  }
  /* ASCII outside LDH has no IDNA meaning: say so, not libidn2's guess. */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c < 0x80 && !(isalnum(c) || c == '-' || c == '_' || c == '.'))
      return px__fail(reason, c == '/' ? "a target with a path is a URL: give https://host/path"
                                       : "invalid character in host name");
  }
  char u[PX_TARGET_MAX + 1];
  if (n >= sizeof(u))
    return px__fail(reason, "host name too long");
  memcpy(u, h, n);
  u[n] = '\0';
  char *a = NULL;
  int rc = idn2_to_ascii_8z(u, &a, IDN2_NONTRANSITIONAL);
  if (rc != IDN2_OK) {
    snprintf(px__why, sizeof(px__why), "invalid internationalized domain name: %s (libidn2 %s)",
             idn2_strerror(rc), idn2_strerror_name(rc));
    return px__fail(reason, px__why);
  }
  size_t an = strlen(a);
  if (an > 0 && a[an - 1] == '.')
    an--; /* a final U+3002 ideographic full stop maps to a dot too */
  rc = px__ldh(a, an, reason);
  if (rc == 0 && an > PX_HOSTNAME_MAX)
    rc = px__fail(reason, "host name longer than 253 characters as an A-label");
  if (rc == 0) {
    memcpy(out, a, an);
    out[an] = '\0';
  }
  idn2_free(a);
  return rc;
}

/* s is "scheme://..." with the "://" at sep. Only the authority matters
 * for probing; the rest is kept in the input as it was written. */
static int px__url(const char *s, const char *sep, uint16_t default_port, px_target_t *out,
                   const char **reason) {
  size_t scheme_len = (size_t)(sep - s);
  for (size_t i = 0; i < scheme_len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalpha(c) || (i > 0 && (isdigit(c) || c == '+' || c == '-' || c == '.'))))
      return px__fail(reason, "malformed URL: the part before :// is not a scheme");
  }
  if (scheme_len == 0)
    return px__fail(reason, "malformed URL: no scheme before ://");
  if (!((scheme_len == 5 && strncasecmp(s, "https", 5) == 0) ||
        (scheme_len == 4 && strncasecmp(s, "http", 4) == 0))) {
    snprintf(px__why, sizeof(px__why),
             "unsupported URL scheme '%.*s' (give an https:// or http:// URL, or a domain)",
             scheme_len > 16 ? 16 : (int)scheme_len, s);
    return px__fail(reason, px__why);
  }
  for (const char *p = s; *p != '\0'; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return px__fail(reason, "a URL cannot contain spaces or control characters "
                              "(percent-encode them)");

  const char *auth = sep + 3;
  const char *auth_end = auth + strcspn(auth, "/?#");
  const char *host = auth;
  for (const char *p = auth; p < auth_end; p++)
    if (*p == '@')
      host = p + 1; /* userinfo: never recorded, it may be a password */
  if (host == auth_end)
    return px__fail(reason, "URL has no host");
  if (*host == '[')
    return px__fail(reason, "a target is a domain name, not an IP address (use --address)");
  const char *colon = memchr(host, ':', (size_t)(auth_end - host));
  const char *host_end = colon != NULL ? colon : auth_end;
  out->port = default_port;
  /* "host:" is the default port (RFC 3986, 3.2.3). */
  if (colon != NULL && colon + 1 < auth_end &&
      px__port(colon + 1, (size_t)(auth_end - colon - 1), &out->port, reason) != 0)
    return -EINVAL;
  if (px__host(host, (size_t)(host_end - host), out->hostname, reason) != 0)
    return -EINVAL;

  size_t head = (size_t)(auth - s), tail = strlen(host);
  if (head + tail > PX_TARGET_MAX)
    return px__fail(reason, "URL longer than 260 bytes (the longest input a measurement records)");
  memcpy(out->input, s, head);
  memcpy(out->input + head, host, tail + 1);
  return 0;
}

int px_target_parse(const char *s, uint16_t default_port, px_target_t *out,
                    const char **reason) {
  memset(out, 0, sizeof(*out));
  size_t n = strlen(s);
  if (n == 0)
    return px__fail(reason, "empty target");
  const char *sep = strstr(s, "://");
  if (sep != NULL)
    return px__url(s, sep, default_port, out, reason);
  if (n > PX_TARGET_MAX)
    return px__fail(reason, "target too long");
  if (strncasecmp(s, "http:", 5) == 0 || strncasecmp(s, "https:", 6) == 0)
    return px__fail(reason, "malformed URL: write https://host/path");

  const char *colon = strrchr(s, ':');
  size_t host_len = colon ? (size_t)(colon - s) : n;
  if (s[0] == '[' || (colon != NULL && memchr(s, ':', host_len) != NULL))
    return px__fail(reason, "a target is a domain name, not an IP address (use --address)");
  out->port = default_port;
  if (colon != NULL && px__port(colon + 1, n - host_len - 1, &out->port, reason) != 0)
    return -EINVAL;
  if (px__host(s, host_len, out->hostname, reason) != 0)
    return -EINVAL;
  memcpy(out->input, s, n + 1);
  return 0;
}

/* ---- targets files ------------------------------------------------------ */

typedef struct px__csv {
  char *p, *end;
  unsigned line; /* of p */
} px__csv_t;

/* Reads the CSV field at c->p, unquoted in place and NUL-terminated, into
 * *field; *last says the record ended with it. The text after the field's
 * separator is untouched, so a caller may stop after any field. */
static int px__csv_field(px__csv_t *c, char **field, bool *last, const char **reason) {
  char *w = c->p, *r = c->p;
  *field = w;
  if (r < c->end && *r == '"') {
    unsigned opened = c->line;
    for (r++;; r++) {
      if (r >= c->end) {
        c->line = opened;
        return px__fail(reason, "unterminated quoted field (a \" without its closing \")");
      }
      if (*r == '"') {
        if (r + 1 < c->end && r[1] == '"') {
          *w++ = '"';
          r++;
          continue;
        }
        r++;
        break;
      }
      if (*r == '\n')
        c->line++;
      *w++ = *r;
    }
    while (r < c->end && (*r == ' ' || *r == '\t'))
      r++;
    if (r < c->end && *r == '\r' && r + 1 < c->end && r[1] == '\n')
      r++;
    if (r < c->end && *r != ',' && *r != '\n')
      return px__fail(reason, "text after a closing quote (quote the whole field)");
  } else {
    while (r < c->end && *r != ',' && *r != '\n')
      *w++ = *r++;
    if (w > *field && w[-1] == '\r')
      w--;
  }
  *last = r >= c->end || *r == '\n';
  if (r < c->end && *r == '\n')
    c->line++;
  c->p = r < c->end ? r + 1 : r;
  *w = '\0';
  return 0;
}

static char *px__trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

/* The column named "url" of the CSV header at line's start, or -1 when the
 * line is not such a header. Reads a copy: a plain list's first line is a
 * target, left as it was. */
static long px__csv_url_column(const char *line, size_t n) {
  char *copy = malloc(n + 1);
  if (copy == NULL)
    return -1;
  memcpy(copy, line, n);
  copy[n] = '\0';
  px__csv_t c = {copy, copy + n, 1};
  long col = -1;
  bool last = false;
  const char *why;
  for (long i = 0; !last && col < 0; i++) {
    char *f;
    if (px__csv_field(&c, &f, &last, &why) != 0)
      break;
    if (strcasecmp(px__trim(f), "url") == 0)
      col = i;
  }
  free(copy);
  return col;
}

static int px__list_csv(px__csv_t *c, long col, px_target_list_add_fn add, void *ctx,
                        unsigned *line, const char **reason) {
  while (c->p < c->end) {
    unsigned start = c->line;
    char *rest = c->p + strspn(c->p, " \t\r");
    if (rest >= c->end || *rest == '\n' || *rest == '#') { /* blank or a comment */
      char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
      c->p = nl != NULL ? nl + 1 : c->end;
      c->line++;
      continue;
    }
    char *url = NULL, *f;
    bool last = false;
    for (long i = 0; !last; i++) {
      int rc = px__csv_field(c, &f, &last, reason);
      if (rc != 0) {
        *line = c->line;
        return rc;
      }
      if (i == col)
        url = px__trim(f);
    }
    *line = start;
    if (url == NULL)
      return px__fail(reason, "this record has no url field (fewer fields than the header)");
    if (*url == '\0')
      return px__fail(reason, "empty url field");
    int rc = add(ctx, url, start);
    if (rc != 0) {
      *reason = NULL;
      return rc;
    }
  }
  return 0;
}

static int px__list_lines(char *p, char *end, unsigned first, px_target_list_add_fn add,
                          void *ctx, unsigned *line, const char **reason) {
  for (unsigned l = first; p < end; l++) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *e = nl != NULL ? nl : end;
    for (char *h = p; h < e; h++)
      if (*h == '#' && (h == p || h[-1] == ' ' || h[-1] == '\t')) {
        e = h;
        break;
      }
    *e = '\0';
    char *s = px__trim(p);
    if (*s != '\0') {
      int rc = add(ctx, s, l);
      if (rc != 0) {
        *line = l;
        *reason = NULL;
        return rc;
      }
    }
    p = nl != NULL ? nl + 1 : end;
  }
  return 0;
}

int px_target_list_parse(char *text, size_t n, px_target_list_add_fn add, void *ctx,
                         bool *csv, unsigned *line, const char **reason) {
  char *p = text, *end = text + n;
  *line = 1;
  if (csv != NULL)
    *csv = false;
  if (n >= 2 && ((unsigned char)p[0] == 0xff || (unsigned char)p[0] == 0xfe) &&
      ((unsigned char)p[1] == 0xff || (unsigned char)p[1] == 0xfe) && p[0] != p[1])
    return px__fail(reason, "the file is UTF-16 text: save it as UTF-8");
  const char *nul = memchr(p, '\0', n);
  if (nul != NULL) {
    for (const char *q = p; q < nul; q++)
      *line += *q == '\n';
    return px__fail(reason, "the file contains NUL bytes: not a text file of targets");
  }
  if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
    p += 3; /* spreadsheets and Windows editors write one */

  /* The first line that says anything decides the form. */
  unsigned l = 1;
  char *q = p;
  while (q < end) {
    char *nl = memchr(q, '\n', (size_t)(end - q));
    char *e = nl != NULL ? nl : end;
    char *s = q + strspn(q, " \t\r");
    if (s < e && *s != '#' && *s != '\n') {
      long col = px__csv_url_column(q, (size_t)(e - q));
      if (col >= 0) {
        if (csv != NULL)
          *csv = true;
        px__csv_t c = {nl != NULL ? nl + 1 : end, end, l + 1};
        return px__list_csv(&c, col, add, ctx, line, reason);
      }
      break;
    }
    q = nl != NULL ? nl + 1 : end;
    l++;
  }
  return px__list_lines(p, end, 1, add, ctx, line, reason);
}
