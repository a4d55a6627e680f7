/* POST /api/v1/submit_measurement: verify, validate, store durably, then
 * answer. Nothing is stored unless every check passed. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "collector/ingest/envelope.h"
#include "collector/metrics.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "collector/ingest/submit.h"
#include "collector/ingest/validate.h"
#include "common/encoding.h"
#include "common/sshsig.h"
#include "common/timeutil.h"

/* An error answer: counted, and the JSON the client gets. */
static unsigned px__reject(json_t **answer, unsigned status, const char *code,
                           const char *detail) {
  px_metrics_rejected(code);
  *answer = px_error_json(code, detail);
  return status;
}

unsigned px_submit_process(px_collector_t *c, const struct sockaddr *client, const char *body,
                           size_t body_len, time_t received_at, json_t **answer) {
  char why[256];
  px_ssh_pubkey_t signer;
  const char *sig_why = NULL;
  px_envelope_t env;

  if (px_envelope_parse(body ? body : "", body_len, &env, why, sizeof(why)) != 0) {
    char detail[320];
    snprintf(detail, sizeof(detail), "malformed request: %s", why);
    return px__reject(answer, MHD_HTTP_BAD_REQUEST, "malformed_request", detail);
  }
  char *canonical = NULL;
  int vrc = px_sshsig_verify_canonical(env.signature, env.signature_len, PX_SSHSIG_NAMESPACE,
                                       (const uint8_t *)env.content, env.content_len, &signer,
                                       &sig_why, &canonical);
  if (vrc != 0) {
    snprintf(why, sizeof(why), "signature: %s", sig_why ? sig_why : "does not verify");
    px_envelope_free(&env);
    return px__reject(answer, MHD_HTTP_BAD_REQUEST, "bad_signature", why);
  }
  /* What is stored and served is the signature as ssh-keygen would have
   * written it: whatever ssh-keygen also tolerates around the blob (text
   * after END, other line widths) never rides along. */
  free(env.signature);
  env.signature = canonical;
  env.signature_len = strlen(canonical);

  px_submission_t sub;
  memset(&sub, 0, sizeof(sub));
  sub.leaf_index = -1;
  sub.received_at = received_at;
  char path[160];
  if (px_validate_measurement(env.content, env.content_len, sub.received_at, &sub.meta, why,
                              sizeof(why), path, sizeof(path)) != 0) {
    px_envelope_free(&env);
    px__reject(answer, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_measurement", why);
    /* Where it failed, for scripts: the same path that starts detail. */
    json_object_set_new(*answer, "path", json_string(path));
    return MHD_HTTP_UNPROCESSABLE_CONTENT;
  }
  unsigned md_len;
  if (EVP_Digest(env.content, env.content_len, sub.sha256, &md_len, EVP_sha256(), NULL) != 1) {
    px_envelope_free(&env);
    return px__reject(answer, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                      "the measurement could not be hashed; send it again later");
  }
  sub.content = env.content;
  sub.content_len = env.content_len;
  sub.signature = env.signature;
  sub.key = &signer;
  px_measurement_uid(&sub.meta, sub.sha256, sub.uid, sizeof(sub.uid));
  /* Where the upload came from, as a country only. Kept as a flag, never
   * a reason to refuse: a volunteer may upload through Tor or a VPN, or
   * travel, and the databases are wrong sometimes. */
  px_geo_t geo;
  px_geoip_lookup(c->cfg.geoip, client, &geo);
  if (geo.cc[0] != '\0' && strcmp(sub.meta.probe_cc, "ZZ") != 0 &&
      strcmp(sub.meta.probe_cc, geo.cc) != 0) {
    sub.geo_mismatch = true;
    memcpy(sub.uploader_cc, geo.cc, sizeof(sub.uploader_cc));
  }

  bool duplicate = false;
  int rc = px_store_put(c->store, &sub, &duplicate);
  if (rc == -EKEYREVOKED) {
    char when[PX_TIME_ISO_LEN];
    px_time_format_iso(sub.key_valid_before, when);
    snprintf(why, sizeof(why),
             "key %s was rotated at %s; it cannot sign measurements that start at or after that",
             signer.key_id, when);
    px_envelope_free(&env);
    return px__reject(answer, MHD_HTTP_BAD_REQUEST, "key_rotated", why);
  }
  if (rc != 0) {
    px_envelope_free(&env);
    return px__reject(answer, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                      "the measurement could not be stored; send it again later");
  }
  if (duplicate) {
    px_metrics_duplicate();
  } else {
    px_metrics_accepted();
    if (sub.geo_mismatch)
      px_metrics_geo_mismatch();
  }
  json_t *resp = json_object();
  json_object_set_new(resp, "measurement_uid", json_string(sub.uid));
  json_object_set_new(resp, "verification_status", json_string("verified"));
  /* For a duplicate: the key of the copy that is stored and served. */
  json_object_set_new(resp, "key_id", json_string(sub.stored_key_id));
  json_object_set_new(resp, "duplicate", json_boolean(duplicate));
  /* Its place in the measurement log, where the store keeps one: with it
   * the agent can ask for the proof that it stays there. */
  if (sub.leaf_index >= 0)
    json_object_set_new(resp, "leaf_index", json_integer(sub.leaf_index));
  px_envelope_free(&env);
  *answer = resp;
  return MHD_HTTP_OK;
}

enum MHD_Result px_api_submit(px_request_t *r) {
  json_t *answer = NULL;
  unsigned status = px_submit_process(r->c, (const struct sockaddr *)&r->client, r->body,
                                      r->body_len, time(NULL), &answer);
  return px_respond_json(r, status, answer);
}
