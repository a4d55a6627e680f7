#ifndef PX_COLLECTOR_H
#define PX_COLLECTOR_H

/* The collector's state, shared by its stages (collector/http/,
 * collector/ingest/, collector/store/, collector/analysis/): its
 * configuration, its store, its analysis and the HTTP server's limits. */

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "collector/http/conn_list.h"
#include "collector/http/netacl.h"
#include "collector/ingest/geoip.h"
#include "collector/log/sth.h"
#include "collector/store/store.h"

typedef struct px_collector_config {
  struct sockaddr_storage listen;
  size_t max_body;
  unsigned max_connections;
  unsigned per_ip_limit;
  unsigned ipv6_prefix_len; /* IPv6 clients are counted by this prefix */
  unsigned max_exports;     /* concurrent GET /api/v1/export.jsonl */
  unsigned timeout_s;
  px_cidr_t *trusted;
  size_t ntrusted;
  const char *public_url; /* NULL: http://<Host header> */
  char **targets;         /* what check-in hands out */
  size_t ntargets;
  bool allow_nonpublic;   /* control addresses may be documentation ranges */
  px_geoip_t *geoip;      /* --geoip-db files; NULL: nothing is geolocated */
} px_collector_config_t;

typedef struct px__conn px__conn_t;
typedef struct px__ipcount px__ipcount_t;

struct px_analysis;

typedef struct px_collector {
  px_collector_config_t cfg;
  px_store_t *store;
  struct px_analysis *analysis;
  struct MHD_Daemon *daemon;
  atomic_int active;   /* requests between first byte and completion */

  /* Limits MHD does not have: a deadline for receiving each request, and
   * per-client counts that see through trusted proxies (server.c). */
  pthread_mutex_t mu;
  pthread_cond_t watchdog_cv;
  pthread_t watchdog;
  bool watchdog_running, stopping;
  px_conn_link_t *conns;    /* px__conn_t entries (conn_list.h) */
  unsigned nconns;          /* admitted connections (the --max-connections count) */
  px__ipcount_t **ipcounts; /* hash buckets */
  atomic_uint exports;      /* exports being streamed (api_read.c) */
  px_sth_signer_t sth;      /* signs the log's tree heads (collector/log/sth.h) */
} px_collector_t;

/* The peer is one of --trusted-proxy's networks: its forwarding headers
 * count. */
static inline bool px_collector_trusts(const px_collector_t *c, const struct sockaddr *sa) {
  for (size_t i = 0; i < c->cfg.ntrusted; i++)
    if (px_cidr_contains(&c->cfg.trusted[i], sa))
      return true;
  return false;
}

#endif
