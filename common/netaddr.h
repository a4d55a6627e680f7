#ifndef PX_NETADDR_H
#define PX_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "[ffff:...:ffff]:65535" plus NUL fits with room to spare. */
#define PX_ADDRSTRLEN 64

/* An IP literal (IPv4 dotted quad or IPv6 text, no brackets, no port, no
 * zone) into out with port 0. Returns 0 or -EINVAL. */
int px_addr_parse_ip(const char *s, struct sockaddr_storage *out);

/* "IP", "IP:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 literal. A missing
 * port becomes default_port; port 0 is refused. Returns 0 or -EINVAL. */
int px_addr_parse_hostport(const char *s, uint16_t default_port,
                           struct sockaddr_storage *out);

/* The IP as text, without port. */
void px_addr_format_ip(const struct sockaddr *sa, char *out, size_t n);
/* "ip:port" or "[ipv6]:port", the form OONI uses for resolver_address and
 * tls_handshakes[].address. */
void px_addr_format(const struct sockaddr *sa, char *out, size_t n);

uint16_t px_addr_port(const struct sockaddr *sa);
void px_addr_set_port(struct sockaddr_storage *ss, uint16_t port);
socklen_t px_addr_len(const struct sockaddr *sa);

/* Same family and same IP (ports ignored). */
bool px_addr_same_ip(const struct sockaddr *a, const struct sockaddr *b);

/* True for public unicast addresses only: not loopback, private, shared
 * (CGNAT), link-local, documentation, benchmarking, multicast, reserved or
 * any other special-purpose block of the IANA registries. Names the block
 * in *why (static string) when it is not public and why is not NULL. */
bool px_addr_is_public(const struct sockaddr *sa, const char **why);

#endif
