/* POST /api/v1/check-in: what an agent needs before a round (its country
 * and network, the targets with their control addresses, the time). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/analysis/analysis.h"
#include "collector/analysis/vantages.h"
#include "collector/analysis/verdict.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "common/json_util.h"
#include "common/measurement.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"

/* The client address as text, an IPv4 client of a dual-stack listener in
 * its IPv4 form (what the agent compares its measurements against). False
 * when there is none. */
static bool px__client_text(const struct sockaddr_storage *ss, char *out, size_t n) {
  struct sockaddr_in v4;
  const struct sockaddr *sa = (const struct sockaddr *)ss;
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      memset(&v4, 0, sizeof(v4));
      v4.sin_family = AF_INET;
      memcpy(&v4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
      sa = (const struct sockaddr *)&v4;
    }
  } else if (ss->ss_family != AF_INET) {
    return false;
  }
  px_addr_format_ip(sa, out, n);
  return out[0] != '\0';
}

/* probe_cc/probe_asn the agent sent win over the databases (a volunteer
 * who configured them knows better, e.g. behind a VPN); what neither
 * knows is ZZ/AS0. The network name is only given when it belongs to the
 * ASN answered. With "geolocate": false (uploads through a proxy or Tor,
 * where the address says nothing about the volunteer) the address is
 * neither looked up nor echoed. The address is never stored or logged. */
enum MHD_Result px_api_checkin(px_request_t *r) {
  json_error_t jerr;
  json_t *req = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(req) || !json_is_string(json_object_get(req, "software_name")) ||
      !json_is_string(json_object_get(req, "software_version"))) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                            "expected {\"software_name\", \"software_version\", \"probe_cc\"?, "
                            "\"probe_asn\"?, \"geolocate\"?}");
  }
  char cc[3] = "ZZ", asn[16] = "AS0";
  json_t *jcc = json_object_get(req, "probe_cc"), *jasn = json_object_get(req, "probe_asn"),
         *jgeo = json_object_get(req, "geolocate");
  if ((jcc != NULL && !json_is_null(jcc) &&
       (!json_is_string(jcc) || px_probe_cc_normalize(json_string_value(jcc), cc) != 0))) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", "probe_cc: two letters");
  }
  if ((jasn != NULL && !json_is_null(jasn) &&
       (!json_is_string(jasn) || px_probe_asn_normalize(json_string_value(jasn), asn) != 0))) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", "probe_asn: AS1234");
  }
  if (jgeo != NULL && !json_is_boolean(jgeo)) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                            "geolocate: true or false");
  }
  bool cc_given = json_is_string(jcc), asn_given = json_is_string(jasn);
  bool geolocate = jgeo == NULL || json_is_true(jgeo);
  json_decref(req);

  px_geo_t geo;
  char client[PX_ADDRSTRLEN] = "", geo_asn[16] = "";
  memset(&geo, 0, sizeof(geo));
  if (geolocate) {
    px_geoip_lookup(r->c->cfg.geoip, (const struct sockaddr *)&r->client, &geo);
    if (!px__client_text(&r->client, client, sizeof(client)))
      client[0] = '\0';
  }
  if (!cc_given && geo.cc[0] != '\0')
    memcpy(cc, geo.cc, sizeof(cc));
  if (geo.asn != 0)
    snprintf(geo_asn, sizeof(geo_asn), "AS%u", (unsigned)geo.asn);
  if (!asn_given && geo.asn != 0)
    memcpy(asn, geo_asn, sizeof(asn));
  bool named = geo.network_name[0] != '\0' && strcmp(asn, geo_asn) == 0;

  px_analysis_catch_up(r->c->analysis, 2000, NULL);
  time_t now = time(NULL);
  json_t *targets = json_array();
  for (size_t i = 0; i < r->c->cfg.ntargets; i++) {
    char domain[PX_HOSTNAME_MAX + 1];
    json_t *controls = json_array();
    px_vantages_t vs;
    memset(&vs, 0, sizeof(vs));
    if (px_query_domain(r->c->cfg.targets[i], domain) &&
        px_vantages_load(r->c->store, domain, now - PX_COMPARE_WINDOW_S, now + 60, true, &vs) == 0) {
      json_decref(controls);
      controls = px_control_addresses(vs.v, vs.n, PX_QUORUM, r->c->cfg.allow_nonpublic);
    }
    px_vantages_free(&vs);
    json_t *t = json_object();
    json_object_set_new(t, "input", json_string(r->c->cfg.targets[i]));
    json_object_set_new(t, "control_addresses", controls);
    json_array_append_new(targets, t);
  }
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(now, when);
  json_t *resp = json_object();
  json_object_set_new(resp, "probe_cc", json_string(cc));
  json_object_set_new(resp, "probe_asn", json_string(asn));
  json_object_set_new(resp, "probe_network_name",
                      named ? px_json_string_lossy(geo.network_name, strlen(geo.network_name))
                            : json_null());
  json_object_set_new(resp, "utc_time", json_string(when));
  json_object_set_new(resp, "targets", targets);
  /* Echoed so an agent behind NAT learns its public address and scrubs it
   * from what it uploads; it goes nowhere else. */
  if (client[0] != '\0')
    json_object_set_new(resp, "client_address", json_string(client));
  return px_respond_json(r, MHD_HTTP_OK, resp);
}
