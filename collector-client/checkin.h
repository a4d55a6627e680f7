#ifndef PX_CHECKIN_H
#define PX_CHECKIN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "collector-client/upload.h"

/* What the collector tells an agent before a round. */
typedef struct px_checkin_target {
  char *input;
  struct sockaddr_storage *controls; /* filtered: public unicast unless allowed */
  size_t ncontrols;
  size_t nrefused;                   /* control addresses dropped by the filter */
} px_checkin_target_t;

typedef struct px_checkin {
  char probe_cc[3];
  char probe_asn[16];
  char probe_network_name[128];  /* "" when the collector did not say */
  char client_address[64];       /* our address as the collector saw it, or "" */
  time_t server_time;
  px_checkin_target_t *targets;
  size_t ntargets;
} px_checkin_t;

/* POST /api/v1/check-in. cc/asn: what the agent is configured with, or
 * NULL. geolocate false (uploads through a proxy or Tor) asks the
 * collector not to look at the address it sees at all. On success *raw is the response text (caller frees; cache it for
 * rounds when the collector is down) and *offset the collector's clock
 * minus ours, in seconds, taking half the round trip as the delay. */
int px_checkin_fetch(const px_upload_config_t *cfg, const char *cc, const char *asn,
                     bool geolocate, char **raw, long *offset, char *err, size_t errlen);

/* Reads a check-in response. Control addresses that are not public
 * unicast are dropped unless allow_nonpublic: a hostile collector must not
 * be able to point volunteers at their own LAN. */
int px_checkin_parse(const char *raw, bool allow_nonpublic, px_checkin_t *out, char *err,
                     size_t errlen);
void px_checkin_free(px_checkin_t *c);

#endif
