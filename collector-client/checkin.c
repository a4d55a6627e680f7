#include "collector-client/checkin.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector-client/http.h"
#include "common/json_util.h"
#include "common/measurement.h"
#include "common/netaddr.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "px_version.h"

static double px__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int px_checkin_fetch(const px_upload_config_t *cfg, const char *cc, const char *asn,
                     bool geolocate, char **raw, long *offset, char *err, size_t errlen) {
  json_t *req = json_object();
  json_object_set_new(req, "software_name", json_string(PX_SOFTWARE_NAME));
  json_object_set_new(req, "software_version", json_string(PX_SOFTWARE_VERSION));
  if (cc != NULL)
    json_object_set_new(req, "probe_cc", json_string(cc));
  if (asn != NULL)
    json_object_set_new(req, "probe_asn", json_string(asn));
  if (!geolocate)
    json_object_set_new(req, "geolocate", json_false());
  char *body = px_json_dump(req);
  json_decref(req);
  if (body == NULL)
    return -ENOMEM;
  long status;
  double before = px__now();
  int rc = px_http_request(cfg, "/api/v1/check-in", body, &status, raw, err, errlen);
  double after = px__now();
  free(body);
  if (rc != 0)
    return rc;
  if (status != 200) {
    snprintf(err, errlen, "check-in answered HTTP %ld", status);
    free(*raw);
    *raw = NULL;
    return -EIO;
  }
  json_t *resp = json_loads(*raw, 0, NULL);
  const char *utc = json_string_value(json_object_get(resp, "utc_time"));
  time_t server;
  if (utc != NULL && px_time_parse_utc(utc, &server) == 0)
    /* utc_time has whole seconds: the offset is good to about a second,
     * plenty for certificate validity. */
    *offset = (long)((double)server + 0.5 - (before + after) / 2.0);
  else
    *offset = 0;
  json_decref(resp);
  return 0;
}

int px_checkin_parse(const char *raw, bool allow_nonpublic, px_checkin_t *out, char *err,
                     size_t errlen) {
  memset(out, 0, sizeof(*out));
  json_t *doc = json_loads(raw, 0, NULL);
  json_t *targets = json_object_get(doc, "targets");
  if (!json_is_object(doc) || !json_is_array(targets)) {
    json_decref(doc);
    snprintf(err, errlen, "the check-in answer is not what the API promises");
    return -EINVAL;
  }
  const char *cc = json_string_value(json_object_get(doc, "probe_cc"));
  const char *asn = json_string_value(json_object_get(doc, "probe_asn"));
  if (cc == NULL || px_probe_cc_normalize(cc, out->probe_cc) != 0)
    strcpy(out->probe_cc, "ZZ");
  if (asn == NULL || px_probe_asn_normalize(asn, out->probe_asn) != 0)
    strcpy(out->probe_asn, "AS0");
  const char *utc = json_string_value(json_object_get(doc, "utc_time"));
  if (utc != NULL)
    px_time_parse_utc(utc, &out->server_time);
  const char *name = json_string_value(json_object_get(doc, "probe_network_name"));
  if (name != NULL)
    snprintf(out->probe_network_name, sizeof(out->probe_network_name), "%s", name);
  /* Only a real address: it is scrubbed from measurements, never sent. */
  const char *seen = json_string_value(json_object_get(doc, "client_address"));
  struct sockaddr_storage seen_ss;
  if (seen != NULL && px_addr_parse_ip(seen, &seen_ss) == 0)
    px_addr_format_ip((struct sockaddr *)&seen_ss, out->client_address,
                      sizeof(out->client_address));

  out->targets = calloc(json_array_size(targets) + 1, sizeof(*out->targets));
  if (out->targets == NULL) {
    json_decref(doc);
    return -ENOMEM;
  }
  size_t i;
  json_t *t;
  json_array_foreach(targets, i, t) {
    const char *input = json_string_value(json_object_get(t, "input"));
    px_target_t parsed;
    const char *reason;
    /* A target the agent could not measure is skipped, not obeyed. */
    if (input == NULL || px_target_parse(input, 443, &parsed, &reason) != 0)
      continue;
    px_checkin_target_t *ct = &out->targets[out->ntargets++];
    ct->input = strdup(input);
    json_t *controls = json_object_get(t, "control_addresses");
    ct->controls = calloc(json_array_size(controls) + 1, sizeof(*ct->controls));
    if (ct->input == NULL || ct->controls == NULL) {
      json_decref(doc);
      px_checkin_free(out);
      return -ENOMEM;
    }
    size_t k;
    json_t *c;
    json_array_foreach(controls, k, c) {
      struct sockaddr_storage ss;
      const char *ip = json_string_value(c);
      if (ip == NULL || px_addr_parse_ip(ip, &ss) != 0 ||
          (!allow_nonpublic && !px_addr_is_public((struct sockaddr *)&ss, NULL))) {
        ct->nrefused++;
        continue;
      }
      ct->controls[ct->ncontrols++] = ss;
    }
  }
  json_decref(doc);
  return 0;
}

void px_checkin_free(px_checkin_t *c) {
  for (size_t i = 0; i < c->ntargets; i++) {
    free(c->targets[i].input);
    free(c->targets[i].controls);
  }
  free(c->targets);
  memset(c, 0, sizeof(*c));
}
