#include "agent/sysresolver.h"

#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/netaddr.h"

int px_sysresolver_servers(const char *path, struct sockaddr_storage **out,
                           size_t *n, char *err, size_t errlen) {
  ares_channel ch;
  struct ares_options o;
  struct ares_addr_port_node *servers = NULL;
  int mask = 0;

  memset(&o, 0, sizeof(o));
  if (path != NULL) {
    o.resolvconf_path = (char *)path;
    mask |= ARES_OPT_RESOLVCONF;
  }
  int rc = ares_init_options(&ch, &o, mask);
  if (rc != ARES_SUCCESS) {
    snprintf(err, errlen, "cannot read the system resolver configuration: %s",
             ares_strerror(rc));
    return -EINVAL;
  }
  rc = ares_get_servers_ports(ch, &servers);
  ares_destroy(ch);
  if (rc != ARES_SUCCESS) {
    snprintf(err, errlen, "cannot list the system resolvers: %s", ares_strerror(rc));
    return -EINVAL;
  }

  size_t count = 0;
  for (struct ares_addr_port_node *s = servers; s != NULL; s = s->next)
    count++;
  *out = calloc(count > 0 ? count : 1, sizeof(**out));
  if (*out == NULL) {
    ares_free_data(servers);
    return -ENOMEM;
  }
  *n = 0;
  for (struct ares_addr_port_node *s = servers; s != NULL; s = s->next) {
    struct sockaddr_storage *ss = &(*out)[*n];
    uint16_t port = s->udp_port ? (uint16_t)s->udp_port : 53;
    if (s->family == AF_INET) {
      struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
      in4->sin_family = AF_INET;
      memcpy(&in4->sin_addr, &s->addr.addr4, 4);
    } else if (s->family == AF_INET6) {
      struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
      in6->sin6_family = AF_INET6;
      memcpy(&in6->sin6_addr, &s->addr.addr6, 16);
    } else {
      continue;
    }
    px_addr_set_port(ss, port);
    (*n)++;
  }
  ares_free_data(servers);
  if (*n == 0) {
    free(*out);
    *out = NULL;
    snprintf(err, errlen, "the system resolver configuration names no nameserver");
    return -ENOENT;
  }
  return 0;
}
