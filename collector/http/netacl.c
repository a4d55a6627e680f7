#include "collector/http/netacl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/netaddr.h"

int px_cidr_parse(const char *s, px_cidr_t *out) {
  char ip[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  struct sockaddr_storage ss;
  if (n == 0 || n >= sizeof(ip))
    return -EINVAL;
  memcpy(ip, s, n);
  ip[n] = '\0';
  if (px_addr_parse_ip(ip, &ss) != 0)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  out->family = ss.ss_family;
  unsigned max = ss.ss_family == AF_INET ? 32 : 128;
  if (ss.ss_family == AF_INET)
    memcpy(out->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
  else
    memcpy(out->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
  out->bits = max;
  if (slash != NULL) {
    char *end;
    if (slash[1] < '0' || slash[1] > '9')
      return -EINVAL;
    unsigned long b = strtoul(slash + 1, &end, 10);
    if (*end != '\0' || b > max)
      return -EINVAL;
    out->bits = (unsigned)b;
  }
  return 0;
}

bool px_cidr_contains(const px_cidr_t *c, const struct sockaddr *sa) {
  const unsigned char *a;
  if (sa->sa_family != c->family)
    return false;
  if (sa->sa_family == AF_INET)
    a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
  else
    a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
  unsigned full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(a, c->addr, full) != 0)
    return false;
  if (rest == 0)
    return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (a[full] & mask) == (c->addr[full] & mask);
}

static bool px__trusted(const struct sockaddr *sa, const px_cidr_t *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (px_cidr_contains(&t[i], sa))
      return true;
  return false;
}

void px_client_address(const struct sockaddr *peer, const char *xff,
                       const px_cidr_t *trusted, size_t ntrusted,
                       struct sockaddr_storage *out) {
  memset(out, 0, sizeof(*out));
  memcpy(out, peer, px_addr_len(peer));
  px_addr_set_port(out, 0);
  if (xff == NULL || !px__trusted(peer, trusted, ntrusted))
    return;
  /* Walk from the right: each hop was appended by the proxy before it. */
  const char *end = xff + strlen(xff);
  while (end > xff) {
    const char *start = end;
    while (start > xff && start[-1] != ',')
      start--;
    char hop[64];
    const char *a = start, *b = end;
    while (a < b && (*a == ' ' || *a == '\t'))
      a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
      b--;
    size_t n = (size_t)(b - a);
    struct sockaddr_storage ss;
    /* n is 0 for an empty hop (",,"); cppcheck 2.10 drops the loop's
     * second condition and believes it always is. */
    /* cppcheck-suppress knownConditionTrueFalse */
    if (n == 0 || n >= sizeof(hop))
      return; /* garbage: keep the last address we could believe */
    memcpy(hop, a, n);
    hop[n] = '\0';
    if (px_addr_parse_ip(hop, &ss) != 0)
      return;
    memcpy(out, &ss, sizeof(ss));
    if (!px__trusted((struct sockaddr *)&ss, trusted, ntrusted))
      return;
    end = start > xff ? start - 1 : xff;
  }
}

void px_limit_key(const struct sockaddr *sa, unsigned v6_prefix, int *family,
                  unsigned char key[16]) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  memset(key, 0, 16);
  if (sa->sa_family != AF_INET6) {
    *family = AF_INET;
    memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return;
  }
  const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
  if (memcmp(a, mapped, sizeof(mapped)) == 0) {
    /* Masking these to /64 would put every IPv4 client in one bucket. */
    *family = AF_INET;
    memcpy(key, a + 12, 4);
    return;
  }
  *family = AF_INET6;
  unsigned bits = v6_prefix < 128 ? v6_prefix : 128, full = bits / 8, rest = bits % 8;
  memcpy(key, a, full);
  if (rest != 0)
    key[full] = (unsigned char)(a[full] & (0xff << (8 - rest)));
}
