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

#endif
