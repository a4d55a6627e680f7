#include "agent/scrub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/netaddr.h"

static bool px__ignored(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
    return (a >> 24) == 127 || a == 0;
  }
  const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
  return IN6_IS_ADDR_LOOPBACK(a6) || IN6_IS_ADDR_UNSPECIFIED(a6);
}

static void px__add_sa(px_scrub_t *s, const struct sockaddr *sa) {
  if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) || px__ignored(sa))
    return;
  for (size_t i = 0; i < s->n; i++)
    if (px_addr_same_ip((struct sockaddr *)&s->addrs[i], sa))
      return;
  if (s->n == PX_SCRUB_MAX)
    return;
  memset(&s->addrs[s->n], 0, sizeof(s->addrs[s->n]));
  memcpy(&s->addrs[s->n], sa, px_addr_len(sa));
  s->n++;
}

int px_scrub_add_local(px_scrub_t *s) {
  struct ifaddrs *all;
  if (getifaddrs(&all) != 0)
    return -errno;
  for (struct ifaddrs *i = all; i != NULL; i = i->ifa_next)
    if (i->ifa_addr != NULL)
      px__add_sa(s, i->ifa_addr);
  freeifaddrs(all);
  return 0;
}

int px_scrub_add(px_scrub_t *s, const char *ip) {
  struct sockaddr_storage ss;
  if (px_addr_parse_ip(ip, &ss) != 0)
    return -EINVAL;
  px__add_sa(s, (struct sockaddr *)&ss);
  return 0;
}

/* Fields whose value IS an address: they cannot be rewritten. */
static bool px__structured(const char *key) {
  static const char *const keys[] = {"ip", "address", "ipv4", "ipv6", "resolver_address",
                                     "resolver_ip", "control_addresses", NULL};
  for (int i = 0; key != NULL && keys[i] != NULL; i++)
    if (strcmp(key, keys[i]) == 0)
      return true;
  return false;
}

/* Base64 of bytes from the network. */
static bool px__binary(const char *key) {
  return key != NULL && (strcmp(key, "raw_response") == 0 || strcmp(key, "data") == 0);
}

static const struct sockaddr *px__match_structured(const px_scrub_t *s, const char *v) {
  struct sockaddr_storage ss;
  if (px_addr_parse_ip(v, &ss) != 0 && px_addr_parse_hostport(v, 1, &ss) != 0)
    return NULL;
  for (size_t i = 0; i < s->n; i++)
    if (px_addr_same_ip((struct sockaddr *)&s->addrs[i], (struct sockaddr *)&ss))
      return (struct sockaddr *)&s->addrs[i];
  return NULL;
}

static const void *px__raw(const struct sockaddr *sa, size_t *n) {
  if (sa->sa_family == AF_INET) {
    *n = 4;
    return &((const struct sockaddr_in *)sa)->sin_addr;
  }
  *n = 16;
  return &((const struct sockaddr_in6 *)sa)->sin6_addr;
}

static bool px__match_binary(const px_scrub_t *s, const char *b64) {
  size_t len = strlen(b64), cap = len / 4 * 3 + 3, got;
  uint8_t *bytes = malloc(cap);
  bool found = false;
  if (bytes == NULL || px_base64_decode(b64, len, bytes, cap, &got) != 0) {
    free(bytes);
    return false;
  }
  for (size_t i = 0; i < s->n && !found; i++) {
    size_t rn;
    const void *raw = px__raw((struct sockaddr *)&s->addrs[i], &rn);
    found = memmem(bytes, got, raw, rn) != NULL;
  }
  free(bytes);
  return found;
}

/* An address character of the same family continues the token. */
static bool px__continues(char c, int family) {
  if (c >= '0' && c <= '9')
    return true;
  if (family == AF_INET)
    return c == '.';
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

/* Free text with every whole-token occurrence of our addresses replaced;
 * NULL when nothing matched (or out of memory: *oom set). */
static char *px__scrub_text(const px_scrub_t *s, const char *v, bool *oom) {
  char *cur = NULL;
  for (size_t i = 0; i < s->n; i++) {
    char ip[PX_ADDRSTRLEN];
    const struct sockaddr *sa = (struct sockaddr *)&s->addrs[i];
    px_addr_format_ip(sa, ip, sizeof(ip));
    size_t iplen = strlen(ip);
    const char *text = cur != NULL ? cur : v;
    char *out = NULL;
    size_t outlen = 0;
    FILE *mem = NULL;
    for (const char *p = text, *hit; (hit = strstr(p, ip)) != NULL; p = hit + 1) {
      bool whole = (hit == text || !px__continues(hit[-1], sa->sa_family)) &&
                   !px__continues(hit[iplen], sa->sa_family);
      if (!whole)
        continue;
      if (mem == NULL && (mem = open_memstream(&out, &outlen)) == NULL) {
        *oom = true;
        free(cur);
        return NULL;
      }
      fwrite(p, 1, (size_t)(hit - p), mem);
      fputs(PX_SCRUBBED, mem);
      text = p = hit + iplen;
      hit = p - 1;
    }
    if (mem != NULL) {
      fputs(text, mem);
      fclose(mem);
      free(cur);
      cur = out;
    }
  }
  return cur;
}

typedef struct {
  const px_scrub_t *s;
  size_t scrubbed;
  bool local, oom;
  char *why;
  size_t whylen;
} px__walk_t;

/* Recursion follows the measurement's own nesting, which parallax's
 * serializer fixes at a few levels whatever the network sent. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void px__walk(px__walk_t *w, json_t *v, const char *key) {
  if (json_is_object(v)) {
    const char *k;
    json_t *child;
    json_object_foreach(v, k, child) {
      if (json_is_string(child)) {
        const char *str = json_string_value(child);
        if (px__structured(k) && px__match_structured(w->s, str) != NULL) {
          if (!w->local)
            snprintf(w->why, w->whylen, "an address of this machine is the value of '%s'", k);
          w->local = true;
        } else if (px__binary(k) && px__match_binary(w->s, str)) {
          if (!w->local)
            snprintf(w->why, w->whylen, "an address of this machine is inside '%s'", k);
          w->local = true;
        } else {
          char *clean = px__scrub_text(w->s, str, &w->oom);
          if (clean != NULL) {
            json_object_set_new(v, k, json_string(clean));
            w->scrubbed++;
            free(clean);
          }
        }
      } else {
        px__walk(w, child, k);
      }
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
      if (json_is_string(item)) {
        /* Arrays inherit their key: "control_addresses": [ip…], "san". */
        const char *str = json_string_value(item);
        if (px__structured(key) && px__match_structured(w->s, str) != NULL) {
          if (!w->local)
            snprintf(w->why, w->whylen, "an address of this machine is listed in '%s'", key);
          w->local = true;
          continue;
        }
        char *clean = px__scrub_text(w->s, str, &w->oom);
        if (clean != NULL) {
          json_array_set_new(v, i, json_string(clean));
          w->scrubbed++;
          free(clean);
        }
      } else {
        px__walk(w, item, key);
      }
    }
  }
}

int px_scrub_measurement(const px_scrub_t *s, json_t *m, size_t *nscrubbed, char *why,
                         size_t whylen) {
  px__walk_t w = {s, 0, false, false, why, whylen};
  if (whylen > 0)
    why[0] = '\0';
  if (s->n > 0)
    px__walk(&w, m, NULL);
  if (nscrubbed != NULL)
    *nscrubbed = w.scrubbed;
  if (w.oom)
    return -ENOMEM;
  return w.local ? 1 : 0;
}
