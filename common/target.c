#include "common/target.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int px__fail(const char **reason, const char *why) {
  if (reason != NULL)
    *reason = why;
  return -EINVAL;
}

int px_target_parse(const char *s, uint16_t default_port, px_target_t *out,
                    const char **reason) {
  size_t n = strlen(s);
  const char *colon = strrchr(s, ':');
  size_t host_len = colon ? (size_t)(colon - s) : n;

  memset(out, 0, sizeof(*out));
  if (n == 0)
    return px__fail(reason, "empty target");
  if (n > PX_TARGET_MAX)
    return px__fail(reason, "target too long");
  if (s[0] == '[' || (colon != NULL && memchr(s, ':', host_len) != NULL))
    return px__fail(reason, "a target is a domain name, not an IP address (use --address)");

  out->port = default_port;
  if (colon != NULL) {
    char *end;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
      return px__fail(reason, "port is not a number");
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
      return px__fail(reason, "port out of range 1-65535");
    out->port = (uint16_t)v;
  }

  if (host_len > 0 && s[host_len - 1] == '.')
    host_len--; /* the root label: "example.com." is "example.com" */
  if (host_len == 0)
    return px__fail(reason, "empty host name");
  if (host_len > PX_HOSTNAME_MAX)
    return px__fail(reason, "host name longer than 253 characters");

  size_t label_len = 0;
  bool last_label_numeric = true;
  for (size_t i = 0; i < host_len; i++) {
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
    if (!(isalnum(c) || c == '-' || c == '_'))
      return px__fail(reason, "invalid character in host name");
    if (c == '-' && label_len == 0)
      return px__fail(reason, "label starts with a hyphen");
    if (!isdigit(c))
      last_label_numeric = false;
    if (++label_len > 63)
      return px__fail(reason, "label longer than 63 characters");
  }
  if (s[host_len - 1] == '-')
    return px__fail(reason, "label ends with a hyphen");
  /* No top-level domain is all digits; "192.0.2.1" is an address. */
  if (last_label_numeric)
    return px__fail(reason, "a target is a domain name, not an IP address (use --address)");

  memcpy(out->input, s, n);
  memcpy(out->hostname, s, host_len);
  return 0;
}
