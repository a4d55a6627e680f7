#ifndef PX_NETACL_H
#define PX_NETACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* CIDR ranges (--trusted-proxy) and the client address behind them. */
typedef struct px_cidr {
  int family;
  unsigned char addr[16];
  unsigned bits;
} px_cidr_t;

/* "192.0.2.0/24", "2001:db8::/32", or a bare address (/32, /128). */
int px_cidr_parse(const char *s, px_cidr_t *out);
bool px_cidr_contains(const px_cidr_t *c, const struct sockaddr *sa);

/* The address to attribute a request to: the TCP peer, unless the peer is
 * a trusted proxy, in which case the right-most address of xff that is not
 * itself a trusted proxy (the hops a client writes itself come first and
 * are not believed). Writes the address to out (port 0). */
void px_client_address(const struct sockaddr *peer, const char *xff,
                       const px_cidr_t *trusted, size_t ntrusted,
                       struct sockaddr_storage *out);

/* The key a client's allowance (--per-ip-limit) is counted under: an IPv4
 * address whole, also when it comes IPv4-mapped (::ffff:192.0.2.1, a
 * dual-stack listener's view of IPv4 clients); an IPv6 address cut to its
 * first v6_prefix bits (1 to 128; larger is taken as 128), because one
 * subscriber is routinely handed a whole /64 or more and would otherwise
 * hold an allowance per address. *family is AF_INET or AF_INET6, key the
 * (masked) address bytes, zero-padded to 16. */
void px_limit_key(const struct sockaddr *sa, unsigned v6_prefix, int *family,
                  unsigned char key[16]);

#endif
