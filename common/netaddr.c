#include "common/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int px_addr_parse_ip(const char *s, struct sockaddr_storage *out) {
  memset(out, 0, sizeof(*out));
  struct sockaddr_in *in4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;

  if (inet_pton(AF_INET, s, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    return 0;
  }
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    return 0;
  }
  return -EINVAL;
}

static int px__parse_port(const char *s, uint16_t *port) {
  char *end;
  if (*s < '0' || *s > '9')
    return -EINVAL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
    return -EINVAL;
  *port = (uint16_t)v;
  return 0;
}

int px_addr_parse_hostport(const char *s, uint16_t default_port,
                           struct sockaddr_storage *out) {
  char host[INET6_ADDRSTRLEN + 1];
  const char *port_text = NULL;
  size_t host_len;
  uint16_t port = default_port;

  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL)
      return -EINVAL;
    host_len = (size_t)(close - s - 1);
    if (host_len >= sizeof(host))
      return -EINVAL;
    memcpy(host, s + 1, host_len);
    host[host_len] = '\0';
    if (close[1] == ':')
      port_text = close + 2;
    else if (close[1] != '\0')
      return -EINVAL;
    if (px_addr_parse_ip(host, out) != 0 || out->ss_family != AF_INET6)
      return -EINVAL;
  } else {
    const char *colon = strchr(s, ':');
    if (colon != NULL && strchr(colon + 1, ':') != NULL) {
      /* Two colons: only a bare IPv6 literal fits, and it cannot carry a
       * port without brackets. */
      if (px_addr_parse_ip(s, out) != 0 || out->ss_family != AF_INET6)
        return -EINVAL;
    } else {
      host_len = colon ? (size_t)(colon - s) : strlen(s);
      if (host_len >= sizeof(host))
        return -EINVAL;
      memcpy(host, s, host_len);
      host[host_len] = '\0';
      if (colon != NULL)
        port_text = colon + 1;
      if (px_addr_parse_ip(host, out) != 0 || out->ss_family != AF_INET)
        return -EINVAL;
    }
  }
  if (port_text != NULL && px__parse_port(port_text, &port) != 0)
    return -EINVAL;
  if (port == 0)
    return -EINVAL;
  px_addr_set_port(out, port);
  return 0;
}

void px_addr_format_ip(const struct sockaddr *sa, char *out, size_t n) {
  const void *src = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
  if (inet_ntop(sa->sa_family, src, out, (socklen_t)n) == NULL && n > 0)
    out[0] = '\0';
}

void px_addr_format(const struct sockaddr *sa, char *out, size_t n) {
  char ip[INET6_ADDRSTRLEN];
  px_addr_format_ip(sa, ip, sizeof(ip));
  if (sa->sa_family == AF_INET6)
    snprintf(out, n, "[%s]:%u", ip, (unsigned)px_addr_port(sa));
  else
    snprintf(out, n, "%s:%u", ip, (unsigned)px_addr_port(sa));
}

uint16_t px_addr_port(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

void px_addr_set_port(struct sockaddr_storage *ss, uint16_t port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

socklen_t px_addr_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in);
}

bool px_addr_same_ip(const struct sockaddr *a, const struct sockaddr *b) {
  if (a->sa_family != b->sa_family)
    return false;
  if (a->sa_family == AF_INET6)
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
  return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
         ((const struct sockaddr_in *)b)->sin_addr.s_addr;
}

/* A special-purpose block: prefix bytes, prefix length, the name we report.
 * Sources: IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890 and
 * successors), RFC 5737 and RFC 3849/9637 documentation ranges. */
struct px__block {
  uint8_t prefix[16];
  unsigned bits;
  const char *name;
};

static const struct px__block px__v4_blocks[] = {
    {{0}, 8, "this-network"},
    {{10}, 8, "private"},
    {{100, 64}, 10, "shared"},
    {{127}, 8, "loopback"},
    {{169, 254}, 16, "link-local"},
    {{172, 16}, 12, "private"},
    {{192, 0, 0}, 24, "ietf-protocol"},
    {{192, 0, 2}, 24, "documentation"},
    {{192, 31, 196}, 24, "as112"},
    {{192, 52, 193}, 24, "amt"},
    {{192, 88, 99}, 24, "6to4-relay"},
    {{192, 168}, 16, "private"},
    {{192, 175, 48}, 24, "as112"},
    {{198, 18}, 15, "benchmarking"},
    {{198, 51, 100}, 24, "documentation"},
    {{203, 0, 113}, 24, "documentation"},
    {{224}, 4, "multicast"},
    {{240}, 4, "reserved"},
};

static const struct px__block px__v6_blocks[] = {
    {{0}, 128, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, "ipv4-mapped"},
    {{0x01, 0x00}, 64, "discard"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation"},
    {{0x20, 0x01, 0x00, 0x00}, 23, "ietf-protocol"},
    {{0x3f, 0xff}, 20, "documentation"},
    {{0xfc}, 7, "unique-local"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "site-local"},
    {{0xff}, 8, "multicast"},
};

static bool px__in_block(const uint8_t *addr, const struct px__block *b) {
  unsigned full = b->bits / 8, rest = b->bits % 8;
  if (memcmp(addr, b->prefix, full) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (addr[full] & mask) == (b->prefix[full] & mask);
}

bool px_addr_is_public(const struct sockaddr *sa, const char **why) {
  const char *unused;
  if (why == NULL)
    why = &unused;

  if (sa->sa_family == AF_INET) {
    const uint8_t *a =
        (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr.s_addr;
    for (size_t i = 0; i < sizeof(px__v4_blocks) / sizeof(px__v4_blocks[0]); i++) {
      if (px__in_block(a, &px__v4_blocks[i])) {
        *why = px__v4_blocks[i].name;
        return false;
      }
    }
    *why = NULL;
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    for (size_t i = 0; i < sizeof(px__v6_blocks) / sizeof(px__v6_blocks[0]); i++) {
      if (px__in_block(a, &px__v6_blocks[i])) {
        *why = px__v6_blocks[i].name;
        return false;
      }
    }
    /* Only 2000::/3 is allocated as global unicast today. */
    if ((a[0] & 0xe0) != 0x20) {
      *why = "reserved";
      return false;
    }
    *why = NULL;
    return true;
  }
  *why = "not-ip";
  return false;
}
