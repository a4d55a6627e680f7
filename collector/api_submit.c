/* POST /api/v1/submit_measurement: verify, validate, store durably, then
 * answer. Nothing is stored unless every check passed. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "collector/metrics.h"
#include "collector/server.h"
#include "collector/validate.h"
#include "common/encoding.h"
#include "common/sshsig.h"

static enum MHD_Result px__reject(px_request_t *r, unsigned status, const char *code,
                                  const char *detail) {
  px_metrics_rejected(code);
  return px_respond_error(r, status, code, detail);
}

/* OONI-like and a function of the content: equal content, equal uid. */
static void px__uid(const px_measurement_meta_t *meta, const uint8_t sha[32], char *out,
                    size_t n) {
  char hex[65], stamp[20];
  struct tm tm;
  px_hex_encode(sha, 32, hex);
  gmtime_r(&meta->measurement_start_time, &tm);
  strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
  snprintf(out, n, "%s_%s_tlscertconsistency_%.16s", stamp, meta->probe_cc, hex);
}

enum MHD_Result px_api_submit(px_request_t *r) {
  json_error_t jerr;
  char why[256];
  px_ssh_pubkey_t signer;
  const char *sig_why = NULL;

  json_t *req = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (req == NULL || !json_is_object(req)) {
    json_decref(req);
    return px__reject(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                      "the body must be a JSON object {\"format\", \"content\", \"signature\"}");
  }
  const char *format = json_string_value(json_object_get(req, "format"));
  json_t *content_v = json_object_get(req, "content");
  const char *sig = json_string_value(json_object_get(req, "signature"));
  if (format == NULL || strcmp(format, "json") != 0 || !json_is_string(content_v) || sig == NULL) {
    json_decref(req);
    return px__reject(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                      "expected \"format\": \"json\", a \"content\" string and a \"signature\" string");
  }
  const char *content = json_string_value(content_v);
  size_t content_len = json_string_length(content_v);

  int vrc = px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE, (const uint8_t *)content,
                             content_len, &signer, &sig_why);
  if (vrc != 0) {
    snprintf(why, sizeof(why), "signature: %s", sig_why ? sig_why : "does not verify");
    json_decref(req);
    return px__reject(r, MHD_HTTP_BAD_REQUEST, "bad_signature", why);
  }

  px_submission_t sub;
  memset(&sub, 0, sizeof(sub));
  if (px_validate_measurement(content, content_len, &sub.meta, why, sizeof(why)) != 0) {
    json_decref(req);
    return px__reject(r, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_measurement", why);
  }
  unsigned md_len;
  EVP_Digest(content, content_len, sub.sha256, &md_len, EVP_sha256(), NULL);
  sub.content = content;
  sub.content_len = content_len;
  sub.signature = sig;
  sub.key = &signer;
  sub.received_at = time(NULL);
  px__uid(&sub.meta, sub.sha256, sub.uid, sizeof(sub.uid));

  bool duplicate = false;
  int rc = px_store_put(r->c->store, &sub, &duplicate);
  if (rc != 0) {
    json_decref(req);
    return px__reject(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                      "the measurement could not be stored; send it again later");
  }
  if (duplicate)
    px_metrics_duplicate();
  else
    px_metrics_accepted();
  json_t *resp = json_object();
  json_object_set_new(resp, "measurement_uid", json_string(sub.uid));
  json_object_set_new(resp, "verification_status", json_string("verified"));
  json_object_set_new(resp, "key_id", json_string(signer.key_id));
  json_object_set_new(resp, "duplicate", json_boolean(duplicate));
  json_decref(req);
  return px_respond_json(r, MHD_HTTP_OK, resp);
}
